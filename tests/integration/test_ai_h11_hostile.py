"""The lean h11 upstream client against hostile upstreams (issue 14's attack): answers
that carry more than one response, extra bytes past the end of a body, and the like.
Each failure must be the documented ``AiError`` and no connection may carry a byte of
one exchange into the next."""

from __future__ import annotations

import contextlib
import os
import socket
import struct

import pytest
import trio

from customer_service.errors import (
    AiBadResponse,
    AiConnectionError,
    AiError,
    AiTimeout,
    AiUpstreamError,
)
from tests.integration.test_ai_h11 import (
    client_for,
    content_length_answer,
    lean,
    read_request,
    reply,
    sse_body,
    tiny_upstream,
)


async def test_bytes_past_the_end_of_a_response_never_answer_the_next_request() -> None:
    # A 204 has no body by definition, and a Content-Length body ends where it says: what
    # the upstream sent beyond is not the answer to anything we asked. Kept in the
    # connection's buffer, it would be read as the next request's response.
    answers = [b"HTTP/1.1 204 No Content\r\n\r\n" + content_length_answer(sse_body("stale")),
               content_length_answer(sse_body("one")) + content_length_answer(sse_body("stale"))]
    for first in answers:
        sent = [first]

        async def answer(stream: trio.SocketStream, n: int, sent: list[bytes] = sent) -> bool:
            await stream.send_all(sent.pop() if sent else content_length_answer(sse_body("fresh")))
            return True

        async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
            with contextlib.suppress(AiUpstreamError):  # the 204
                await reply(client)
            assert len(lean(client).idle) == 0
            assert await reply(client) == "fresh"
            assert counts["connections"] == 2


def chunked_answer(body: bytes, *, version: bytes = b"1.1", extra_header: bytes = b"",
                   trailer: bytes = b"") -> bytes:
    """A chunked response, one chunk per SSE event (as streaming upstreams send it)."""
    events = [e + b"\n\n" for e in body.split(b"\n\n") if e]
    return (b"HTTP/" + version + b" 200 OK\r\ncontent-type: text/event-stream\r\n"
            + extra_header + b"transfer-encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n" % len(e) + e + b"\r\n" for e in events)
            + b"0\r\n" + trailer + b"\r\n")


@pytest.mark.parametrize(("first", "kept"), [
    (chunked_answer(sse_body("one")), True),
    (chunked_answer(sse_body("one"), trailer=b"x-checksum: 1\r\n"), True),
    (chunked_answer(sse_body("one")) + content_length_answer(sse_body("stale")), False),
    (chunked_answer(sse_body("one"), extra_header=b"connection: close\r\n"), False),
    (chunked_answer(sse_body("one"), version=b"1.0"), False),
], ids=["plain", "trailers", "bytes past the end", "connection close", "HTTP/1.0"])
async def test_a_chunked_body_keeps_its_connection_only_when_h11_would(first: bytes,
                                                                       kept: bool) -> None:
    """Chunked bodies are decoded past h11 (``ChunkedBody``): the connection is kept only
    after the whole body, with nothing after it, when the response allows keep-alive."""
    sent = [first]

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        data = sent.pop() if sent else chunked_answer(sse_body("fresh"))
        await stream.send_all(data)
        return True  # kept open: only the client decides not to reuse it

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "one"
        assert len(lean(client).idle) == (1 if kept else 0)
        assert await reply(client) == "fresh"
        assert counts["connections"] == (1 if kept else 2)


async def test_a_chunked_body_cut_short_is_a_connection_error() -> None:
    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await stream.send_all(chunked_answer(sse_body("one", "two"))[:-30])
        return False  # and close

    async with tiny_upstream(answer) as (url, _counts), client_for(url) as client:
        with pytest.raises(AiConnectionError):
            await reply(client)
        assert len(lean(client).idle) == 0


async def test_a_response_nobody_asked_for_on_an_idle_connection_is_never_read_as_an_answer(
        ) -> None:
    # The upstream answers, then sends another response unasked while the connection sits
    # idle in the pool (however briefly): it must not become the next request's answer.
    unasked = trio.Event()

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await stream.send_all(content_length_answer(sse_body(f"answer {n}")))
        if n == 0:
            await unasked.wait()
            await stream.send_all(content_length_answer(sse_body("unasked")))
            await trio.sleep_forever()  # and keeps the connection open
        return True

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "answer 0"
        unasked.set()
        (conn,) = lean(client).idle.drain()  # a hot connection: idle for no time at all
        lean(client).idle.put(conn, trio.current_time())
        with trio.fail_after(5):
            while conn.looks_alive():  # the unasked bytes are here
                await trio.sleep(0.01)
        assert await reply(client) == "answer 0"  # on a new connection
        assert counts["connections"] == 2


OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
CHUNKED = OK + b"transfer-encoding: chunked\r\n\r\n"


async def _send(data: bytes, stream: trio.SocketStream) -> None:
    await stream.send_all(data)
    await trio.sleep_forever()  # and say nothing more


async def _reset(stream: trio.SocketStream) -> None:
    await stream.send_all(OK + b"content-length: 1000\r\n\r\ndata: {")
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()  # RST, mid-body


async def _long_line(stream: trio.SocketStream) -> None:
    await stream.send_all(CHUNKED)
    piece = b"data: " + b"a" * (1 << 20)
    for _ in range(10):  # a 10 MB event line, no newline
        await stream.send_all(b"%x\r\n" % len(piece) + piece + b"\r\n")
    await trio.sleep_forever()


HOSTILE = {
    "a 1 MB status line": (lambda s: _send(b"HTTP/1.1 200 " + b"x" * 1_000_000, s),
                           AiConnectionError),
    "1 MB of headers": (lambda s: _send(b"HTTP/1.1 200 OK\r\n" + b"x-a: b\r\n" * 150_000, s),
                        AiConnectionError),
    "bad chunk hex": (lambda s: _send(CHUNKED + b"zz\r\nabc\r\n", s), AiConnectionError),
    "a chunk without its CRLF": (lambda s: _send(CHUNKED + b"5\r\nabcdeXX0\r\n\r\n", s),
                                 AiConnectionError),
    "a huge chunk size": (lambda s: _send(CHUNKED + b"f" * 40 + b"\r\nabc", s),
                          AiConnectionError),
    "two Content-Lengths": (lambda s: _send(OK + b"content-length: 9\r\n"
                                            b"content-length: 3\r\n\r\nabc", s),
                            AiConnectionError),
    "gzip, chunked": (lambda s: _send(OK + b"transfer-encoding: gzip, chunked\r\n\r\n", s),
                      AiConnectionError),
    "a 101 nobody asked for": (lambda s: _send(b"HTTP/1.1 101 Switching Protocols\r\n"
                                               b"upgrade: h2c\r\nconnection: upgrade\r\n\r\n",
                                               s), AiConnectionError),
    "a 10 MB SSE line": (_long_line, AiBadResponse),
    "an RST mid-body": (_reset, AiConnectionError),
    "100 Continue, then nothing": (lambda s: _send(b"HTTP/1.1 100 Continue\r\n\r\n", s),
                                   AiTimeout),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_hostile_upstream_is_the_documented_error_and_leaks_nothing(case: str) -> None:
    behave, expected = HOSTILE[case]

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await behave(stream)
        return False

    descriptors = len(os.listdir("/proc/self/fd"))
    async with tiny_upstream(answer) as (url, _), \
            client_for(url, first_token_timeout=0.5, idle_timeout=0.3) as client:
        with pytest.raises(AiError) as failure, trio.fail_after(10):
            await reply(client)
        assert isinstance(failure.value, expected), failure.value
        assert len(lean(client).idle) == 0
    assert len(os.listdir("/proc/self/fd")) == descriptors


async def test_a_reused_connection_that_fails_after_a_byte_of_answer_is_not_sent_again() -> None:
    # Bytes came back: the upstream saw the request, so sending it again could answer twice.
    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await stream.send_all(content_length_answer(sse_body("x")) if n == 0 else b"HTTP/1.1 2")
        return n == 0

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "x"
        with pytest.raises(AiConnectionError):
            await reply(client)
        assert counts == {"connections": 1, "requests": 2}
        assert lean(client).stale_retries == 0


async def test_an_ipv6_literal_with_a_path_prefix_and_trailing_slash() -> None:
    heads: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            while (head := await read_request(stream)) is not None:
                heads.append(head)
                await stream.send_all(content_length_answer(sse_body("six")))

    try:
        listeners = await trio.open_tcp_listeners(0, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        async with client_for(f"http://[::1]:{port}/api/v1/") as client:
            assert await reply(client) == "six"
        nursery.cancel_scope.cancel()
    (head,) = heads
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/chat/completions HTTP/1.1"
    assert f"host: [::1]:{port}".encode() in lines
