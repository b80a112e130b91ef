"""The pure parts of the lean HTTP/1.1 upstream client: origins, request heads, response
headers, the reuse decision and the idle stack (no event loop)."""

from __future__ import annotations

import pytest

from customer_service.core.http1 import (
    IdleStack,
    Origin,
    origin,
    request_head,
    response_headers,
    reusable,
    uses_lean_client,
)
from customer_service.errors import AiError


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

