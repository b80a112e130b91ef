"""The lean h11 upstream client against real sockets: the fake OpenAI upstream, and small
trio servers that misbehave in ways the fake does not (Content-Length streams,
``Connection: close``, a kept-alive connection closed as it is reused)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from customer_service.ai import h11_upstream
from customer_service.ai.client import AiClient, open_ai_client
from customer_service.ai.h11_upstream import H11Transport
from customer_service.ai.upstream import MAX_ERROR_BODY
from customer_service.config import AiConfig
from customer_service.errors import AiConnectionError, AiError, AiTimeout
from customer_service.server.metrics import Metrics
from tests.fakes.openai_server import FakeOpenAI, Script, open_fake_openai


def ai_config(base_url: str, **changes: Any) -> AiConfig:
    settings: dict[str, Any] = {
        "enabled": True, "base_url": base_url, "model": "m", "first_token_timeout": 3.0,
        "idle_timeout": 1.0, "retry_base_delay": 0.01, "retry_max_delay": 0.05,
        "max_retries": 0, "breaker_failures": 50, "prewarm_connections": 0,
        "max_concurrent_streams": 4, "http2": False} | changes
    return AiConfig(**settings)


@asynccontextmanager
async def client_for(base_url: str, **changes: Any) -> AsyncIterator[AiClient]:
    async with open_ai_client(ai_config(base_url, **changes), Metrics()) as client:
        yield client


async def reply(client: AiClient) -> str:
    pieces: list[str] = []
    await client.stream_reply([{"role": "user", "content": "hi"}], pieces.append)
    return "".join(pieces)


def lean(client: AiClient) -> H11Transport:
    assert isinstance(client.transport, H11Transport)
    return client.transport


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with open_fake_openai() as upstream:
        yield upstream


def sse_body(*tokens: str) -> bytes:
    events = [json.dumps({"choices": [{"delta": {"content": t}, "finish_reason": None}]})
              for t in tokens]
    events.append(json.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}]}))
    return b"".join(f"data: {e}\n\n".encode() for e in events) + b"data: [DONE]\n\n"


Handler = Callable[[trio.SocketStream, int], Awaitable[bool]]


async def read_request(stream: trio.SocketStream) -> bytes | None:
    """One request head and its Content-Length body; None when the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += await stream.receive_some(65536)
    return head


@asynccontextmanager
async def tiny_upstream(answer: Handler) -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A server calling ``answer(stream, n)`` for the n-th request on each connection
    (n from 0) until it returns False; counts connections and requests."""
    counts = {"connections": 0, "requests": 0}

    async def handle(stream: trio.SocketStream) -> None:
        counts["connections"] += 1
        async with stream:
            n = 0
            while await read_request(stream) is not None:
                counts["requests"] += 1
                if not await answer(stream, n):
                    return
                n += 1

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1", counts
        nursery.cancel_scope.cancel()


def content_length_answer(body: bytes, *, close: bool = False) -> bytes:
    extra = b"connection: close\r\n" if close else b""
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" + extra
            + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def test_connections_are_kept_alive_and_reused(fake: FakeOpenAI) -> None:
    fake.default = Script(tokens=["a", "b", "c"])
    async with client_for(fake.base_url) as client:
        for _ in range(5):
            assert await reply(client) == "abc"
        assert lean(client).opened == 1
        assert len(lean(client).idle) == 1
    assert fake.connections_opened == 1


async def test_concurrent_replies_open_at_most_what_runs_at_once(fake: FakeOpenAI) -> None:
    fake.default = Script(tokens=["x"] * 5, chunk_delay=0.01)
    async with client_for(fake.base_url) as client:
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(reply, client)
        assert lean(client).opened <= 4
        assert fake.connections_opened == lean(client).opened


async def test_chunked_and_content_length_streams_are_read_whole(fake: FakeOpenAI) -> None:
    fake.default = Script(tokens=["chunked", " body"])  # the fake sends chunked
    async with client_for(fake.base_url) as client:
        assert await reply(client) == "chunked body"

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await stream.send_all(content_length_answer(sse_body("sized", " body")))
        return True

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "sized body"
        assert await reply(client) == "sized body"
        assert counts == {"connections": 1, "requests": 2}


async def test_connection_close_is_not_reused(fake: FakeOpenAI) -> None:
    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await stream.send_all(content_length_answer(sse_body("bye"), close=True))
        return False

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "bye"
        assert await reply(client) == "bye"
        assert len(lean(client).idle) == 0
        assert counts["connections"] == 2


async def test_a_kept_alive_connection_closed_as_it_is_reused_is_retried_once() -> None:
    # Each connection answers its first request, then closes on the next one without a
    # word: the classic stale keep-alive race. The client retries on a new connection,
    # with max_retries = 0 (this is not a retry of the reply).
    async def answer(stream: trio.SocketStream, n: int) -> bool:
        if n > 0:
            return False
        await stream.send_all(content_length_answer(sse_body("fresh")))
        return True

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "fresh"
        assert await reply(client) == "fresh"
        assert counts == {"connections": 2, "requests": 3}
        assert lean(client).stale_retries == 1


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    # Polled before reuse: the closed one is dropped unused.

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await stream.send_all(content_length_answer(sse_body("once")))
        return False  # then close, without saying Connection: close

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "once"
        (conn,) = lean(client).idle.drain()
        lean(client).idle.put(conn, trio.current_time())
        with trio.fail_after(5):
            while conn.looks_alive():
                await trio.sleep(0.01)
        assert await reply(client) == "once"
        assert counts == {"connections": 2, "requests": 2}
        assert lean(client).stale_retries == 0


async def test_a_response_cut_mid_stream_fails_after_its_partial_text(fake: FakeOpenAI) -> None:
    fake.default = Script(tokens=["one", " two", " three"], chunk_delay=0.05, reset_after=2)
    async with client_for(fake.base_url) as client:
        pieces: list[str] = []
        with pytest.raises(AiConnectionError):
            await client.stream_reply([{"role": "user", "content": "hi"}], pieces.append)
        assert "".join(pieces) == "one two"
        assert len(lean(client).idle) == 0

    async def short(stream: trio.SocketStream, n: int) -> bool:
        body = sse_body("cut")
        await stream.send_all(content_length_answer(body)[:-20])  # fewer bytes than promised
        return False

    async with tiny_upstream(short) as (url, _), client_for(url) as client:
        with pytest.raises(AiConnectionError):
            await reply(client)


async def test_a_slow_first_byte_times_out_and_closes_the_connection(fake: FakeOpenAI) -> None:
    fake.script(Script(headers_delay=2.0))
    async with client_for(fake.base_url, first_token_timeout=0.3) as client:
        with pytest.raises(AiTimeout):
            await reply(client)
        assert len(lean(client).idle) == 0
        (request,) = await fake.wait_for_requests(1)
        with trio.fail_after(5):
            await request.finished.wait()
        assert request.cancelled
        assert await reply(client) == "Hello from the fake!"  # a new connection works
        assert lean(client).opened == 2


async def test_cancelling_mid_stream_returns_no_broken_connection(fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=["first"] + [" more"] * 50, chunk_delay=0.05))
    async with client_for(fake.base_url) as client:
        with trio.CancelScope() as scope:
            await client.stream_reply([{"role": "user", "content": "hi"}],
                                      lambda _text: scope.cancel())
        assert scope.cancelled_caught
        assert len(lean(client).idle) == 0
        (request,) = await fake.wait_for_requests(1)
        with trio.fail_after(5):
            await request.finished.wait()
        assert request.cancelled
        assert await reply(client) == "Hello from the fake!"
        assert lean(client).opened == 2


async def test_pre_warming_opens_connections_that_replies_reuse(fake: FakeOpenAI) -> None:
    async with client_for(fake.base_url, prewarm_connections=2) as client:
        await client.prewarm()
        assert client.prewarmed is True
        assert len(lean(client).idle) == 2
        assert await reply(client) == "Hello from the fake!"
        assert lean(client).opened == 2


async def test_http_client_httpx_still_works(fake: FakeOpenAI) -> None:
    async with client_for(fake.base_url, http_client="httpx", prewarm_connections=1) as client:
        assert client.transport.name == "httpx"
        await client.prewarm()
        assert client.prewarmed is True
        assert await reply(client) == "Hello from the fake!"
        assert await reply(client) == "Hello from the fake!"
    assert fake.connections_opened == 1


def error_answer(status: int, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status} Oops\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


async def test_an_error_body_read_to_its_end_keeps_the_connection_a_long_one_closes_it() -> None:
    # The client reads at most MAX_ERROR_BODY bytes of an error: a short body is read to
    # its end (the connection goes back), one longer than a network read
    # (h11_upstream.RECEIVE_SIZE) is not, and its connection is closed.
    short = b'{"error": {"message": "slow down"}}'
    long = b'{"error": "' + b"x" * (4 * h11_upstream.RECEIVE_SIZE) + b'"}'
    assert len(long) > MAX_ERROR_BODY

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        try:
            await stream.send_all(error_answer(429, short) if n == 0 else error_answer(500, long))
        except trio.BrokenResourceError:  # the client closed it without reading it all
            return False
        return True

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        with pytest.raises(AiError, match="slow down"):
            await reply(client)
        assert len(lean(client).idle) == 1
        with pytest.raises(AiError):
            await reply(client)
        assert len(lean(client).idle) == 0
        assert counts == {"connections": 1, "requests": 2}


async def test_waiting_for_a_free_connection_has_its_own_deadline() -> None:
    release = trio.Event()

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await release.wait()  # holds the only connection
        await stream.send_all(content_length_answer(sse_body("late")))
        return True

    async with tiny_upstream(answer) as (url, _counts):
        transport = H11Transport(ai_config(url, first_token_timeout=0.2), 1, {})
        try:
            async with trio.open_nursery() as nursery:
                held = trio.Event()

                async def hold() -> None:
                    async with transport.stream_post("chat/completions", b"{}", {}) as response:
                        held.set()
                        assert response.status_code == 200

                nursery.start_soon(hold)
                with trio.fail_after(5):
                    while transport.opened == 0:
                        await trio.sleep(0.01)
                with pytest.raises(AiTimeout, match="PoolTimeout"):
                    async with transport.stream_post("chat/completions", b"{}", {}):
                        pass
                release.set()
                with trio.fail_after(5):
                    await held.wait()
            async with transport.stream_post("chat/completions", b"{}", {}) as response:
                assert response.status_code == 200  # the slot came back
        finally:
            transport.close()
