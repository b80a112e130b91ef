"""The pure parts of the lean HTTP/1.1 upstream client: origins, request heads, response
headers, the reuse decision, the idle stack and the chunked-body decoder (no event loop)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.http1 import (
    MAX_CHUNK_LINE,
    ChunkedBody,
    IdleStack,
    Origin,
    keeps_alive,
    origin,
    request_head,
    response_headers,
    reusable,
    uses_lean_client,
)
from customer_service.errors import AiConnectionError, AiError


def test_origin_of_a_plain_http_base_url() -> None:
    assert origin("http://127.0.0.1:8000/v1") == Origin("127.0.0.1", 8000, "/v1/")
    assert origin("http://vllm/v1/") == Origin("vllm", 80, "/v1/")
    assert origin("http://llama:8080") == Origin("llama", 8080, "/")
    assert origin("http://[::1]:11434/v1").host_header == b"[::1]:11434"
    assert origin("http://ollama/v1").host_header == b"ollama"
    assert origin("http://x:1/v1").target("chat/completions") == b"/v1/chat/completions"


def test_origin_encodes_what_a_request_line_and_host_header_cannot_carry() -> None:
    # As httpx does: a non-ASCII or spaced path is percent-encoded (not a
    # UnicodeEncodeError out of every reply), an internationalised host IDNA-encoded.
    assert origin("http://x/v1/模 x").target("chat/completions") == (
        b"/v1/%E6%A8%A1%20x/chat/completions")
    assert origin("http://x/a%20b/").target("models") == b"/a%20b/models"
    assert origin("http://例え.jp:8000/v1").host_header == b"xn--r8jz45g.jp:8000"


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "http://u:p@host/v1",
                                 "http://host:99999/v1", "ftp://host/"])
def test_origin_refuses_what_the_lean_client_does_not_take(url: str) -> None:
    with pytest.raises(AiError):
        origin(url)


def test_auto_takes_the_lean_client_for_plain_http_only() -> None:
    assert uses_lean_client("http://127.0.0.1:8000/v1", "auto")
    assert not uses_lean_client("https://api.openai.com/v1", "auto")
    assert not uses_lean_client("http://user:secret@vllm/v1", "auto")
    assert not uses_lean_client("http://127.0.0.1:8000/v1", "httpx")


def test_request_head_has_host_first_then_headers_then_length() -> None:
    method, target, head = request_head(origin("http://vllm:8000/v1"), "POST",
                                        "chat/completions",
                                        [("Accept", "text/event-stream")], 12)
    assert (method, target) == (b"POST", b"/v1/chat/completions")
    assert head == [(b"host", b"vllm:8000"), (b"accept", b"text/event-stream"),
                    (b"content-length", b"12")]
    assert request_head(origin("http://vllm/v1"), "GET", "models", [], None)[2] == [
        (b"host", b"vllm")]


def test_response_headers_lower_case_and_repeated_names_joined() -> None:
    assert response_headers([(b"Content-Type", b"text/event-stream"),
                             (b"x-a", b"1"), (b"X-A", b"2")]) == {
        "content-type": "text/event-stream", "x-a": "1, 2"}


def test_a_connection_is_reused_only_after_a_whole_response_both_sides_done() -> None:
    assert reusable("DONE", "DONE", True)
    assert not reusable("DONE", "DONE", False)  # cancelled mid-body
    assert not reusable("DONE", "MUST_CLOSE", True)  # Connection: close / HTTP/1.0
    assert not reusable("MUST_CLOSE", "DONE", True)
    assert not reusable("DONE", "SEND_BODY", False)
    assert not reusable("DONE", "DONE", True, unread=5)  # bytes past the response's end


def test_idle_stack_gives_the_newest_and_expires_from_the_cold_end() -> None:
    stack: IdleStack[str] = IdleStack(expiry=10, limit=3)
    assert stack.take(0) == (None, 0.0, [])
    assert stack.put("a", 0) == []
    assert stack.put("b", 5) == []
    assert stack.put("c", 8) == []
    assert stack.take(12) == ("c", 4.0, ["a"])  # a idle 12 s > 10: closed; c the newest
    assert len(stack) == 1
    assert stack.take(100) == (None, 0.0, ["b"])


def test_idle_stack_closes_the_coldest_beyond_its_limit_and_drains() -> None:
    stack: IdleStack[int] = IdleStack(expiry=60, limit=2)
    stack.put(1, 0)
    stack.put(2, 1)
    assert stack.put(3, 2) == [1]
    assert stack.drain() == [2, 3]
    assert len(stack) == 0



# --------------------------------------------------------------------------- ChunkedBody

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def h11_body(body: bytes) -> bytes:
    """What h11 makes of a chunked body (the reference ``ChunkedBody`` must agree with)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("host", "x"),
                                                              ("content-length", "0")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(HEAD + body)
    assert isinstance(conn.next_event(), h11.Response)
    out = []
    while isinstance(event := conn.next_event(), h11.Data):
        out.append(bytes(event.data))
    assert isinstance(event, h11.EndOfMessage), event
    return b"".join(out)


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n" + trailer + b"\r\n"


def decode(body: bytes, cuts: list[int]) -> tuple[bytes, ChunkedBody]:
    decoder = ChunkedBody()
    out = []
    start = 0
    for cut in [*sorted(set(cuts)), len(body)]:
        out.append(decoder.feed(body[start:cut]))
        start = cut
    return b"".join(out), decoder


def test_a_chunked_body_cut_at_every_byte_decodes_as_h11_does() -> None:
    body = chunked(b"data: one\n\n", b"data: two\n\n", b"x" * 300, trailer=b"x-t: 1\r\n")
    expected = h11_body(body)
    for cut in range(len(body) + 1):
        got, decoder = decode(body, [cut])
        assert got == expected and decoder.done and decoder.extra == 0, cut
    got, decoder = decode(body, list(range(len(body))))  # one byte at a time
    assert got == expected and decoder.done


@given(st.lists(st.binary(min_size=1, max_size=200), max_size=12),
       st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
       st.sampled_from([b"", b" ", b";name=value", b";a ", b";a=\"q\""]))
def test_any_chunks_in_any_pieces_decode_as_h11_does(chunks: list[bytes], cuts: list[int],
                                                     extension: bytes) -> None:
    body = b"".join(b"%x" % len(c) + extension + b"\r\n" + c + b"\r\n" for c in chunks)
    body += b"0\r\n\r\n"
    got, decoder = decode(body, [c for c in cuts if c <= len(body)])
    assert got == h11_body(body) == b"".join(chunks)
    assert decoder.done and decoder.extra == 0


def test_burst_of_chunks_is_one_piece_and_the_end_counts_what_follows() -> None:
    decoder = ChunkedBody()
    assert decoder.feed(chunked(b"a", b"bc", b"def")[:-5]) == b"abcdef"
    assert not decoder.done
    assert decoder.feed(b"0\r\n\r\nHTTP/1.1 200 OK") == b""
    assert decoder.done and decoder.extra == len(b"HTTP/1.1 200 OK")
    decoder.feed(b"more")
    assert decoder.extra == len(b"HTTP/1.1 200 OK") + 4


def test_upper_case_hex_sizes_and_trailer_fields() -> None:
    body = b"A\r\n0123456789\r\n0\r\nx-checksum: 1\r\nx-other: 2\r\n\r\n"
    assert decode(body, [])[0] == b"0123456789" == h11_body(body)


@pytest.mark.parametrize("body", [
    b"zz\r\nabc\r\n",  # not hex
    b"+5\r\nabcde\r\n",  # int() would take these
    b"0x5\r\nabcde\r\n",
    b"5_0\r\nabcde\r\n",
    b" 5\r\nabcde\r\n",
    b"\r\nabc\r\n",  # no size at all
    b"1 ;a\r\nx\r\n",  # no space before an extension
    b"5\r\nabcdeXX0\r\n\r\n",  # the data does not end with CRLF
    b"5\r\nabcde\rX",
    b"5\r\nabcdeX",  # caught at the first wrong byte
    b"5\nabcde\r\n0\r\n\r\n",  # a bare LF is no line end
])
def test_what_h11_refuses_is_refused(body: bytes) -> None:
    with pytest.raises(AiConnectionError):
        decode(body, [])
    with pytest.raises(h11.RemoteProtocolError):
        h11_body(body + b"0\r\n\r\n")


def test_a_size_of_more_than_16_hex_digits_is_refused() -> None:
    with pytest.raises(AiConnectionError):
        ChunkedBody().feed(b"f" * 17 + b"\r\nabc")


def test_a_line_longer_than_the_limit_is_refused_before_it_ends() -> None:
    decoder = ChunkedBody()
    decoder.feed(b"5;" + b"e" * 100)
    with pytest.raises(AiConnectionError):
        decoder.feed(b"e" * MAX_CHUNK_LINE)
    with pytest.raises(AiConnectionError):
        ChunkedBody().feed(b"5;" + b"e" * MAX_CHUNK_LINE + b"\r\nabcde\r\n")
    trailer = chunked(b"ab", trailer=b"x-long: " + b"v" * MAX_CHUNK_LINE + b"\r\n")
    with pytest.raises(AiConnectionError):
        decode(trailer, [])


def test_a_response_keeps_its_connection_as_h11_decides() -> None:
    assert keeps_alive(b"1.1", [])
    assert keeps_alive(b"1.1", [b"keep-alive"])
    assert not keeps_alive(b"1.1", [b"Close"])
    assert not keeps_alive(b"1.1", [b"upgrade, close"])
    assert not keeps_alive(b"1.1", [b"keep-alive", b" close "])
    assert not keeps_alive(b"1.0", [])
    assert not keeps_alive(b"1.0", [b"keep-alive"])
