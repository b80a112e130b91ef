"""The fake OpenAI server speaks the real wire format and plays its scripts faithfully."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from httpx_sse import aconnect_sse

# Relative on purpose: tests/ is not a package, so mypy and pytest know this file as
# fakes.test_openai_server; "tests.fakes.openai_server" would be the same file under a second name.
from .openai_server import FakeOpenAI, RecordedRequest, Script, open_fake_openai

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = "Hello from the fake!"


def chat_body(*, stream: bool | None = True, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": "Where is my parcel?"},
        ],
        "max_tokens": 64,
        "temperature": 0.3,
    }
    if stream is not None:
        body["stream"] = stream
    body.update(extra)
    return body


def url(fake: FakeOpenAI) -> str:
    return f"{fake.base_url}/chat/completions"


async def sse_data(client: httpx.AsyncClient, fake: FakeOpenAI, *, headers: dict[str, str] | None = None,
                   **extra: Any) -> list[str]:
    """All SSE ``data`` payloads of one streamed chat completion."""
    async with aconnect_sse(client, "POST", url(fake), json=chat_body(**extra),
                            headers=headers or {}) as source:
        source.response.raise_for_status()
        return [event.data async for event in source.aiter_sse()]


async def raw_stream(client: httpx.AsyncClient, fake: FakeOpenAI) -> str:
    async with client.stream("POST", url(fake), json=chat_body()) as response:
        return "".join([text async for text in response.aiter_text()])


def contents(datas: list[str]) -> list[str]:
    out = []
    for data in datas:
        if data == "[DONE]":
            continue
        for choice in json.loads(data)["choices"]:  # none in a usage chunk
            if "content" in choice["delta"]:
                out.append(choice["delta"]["content"])
    return out


async def finished(request: RecordedRequest, within: float = 1.0) -> None:
    with trio.fail_after(within):
        await request.finished.wait()


async def test_default_stream_is_openai_shaped() -> None:
    async with (open_fake_openai() as fake, httpx.AsyncClient() as client,
                aconnect_sse(client, "POST", url(fake), json=chat_body()) as source):
        response = source.response
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["transfer-encoding"] == "chunked"
        datas = [event.data async for event in source.aiter_sse()]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(data) for data in datas[:-1]]
    assert {chunk["id"] for chunk in chunks} == {"chatcmpl-1"}
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk["model"] == "gpt-test" and isinstance(chunk["created"], int) for chunk in chunks)
    assert chunks[0]["choices"] == [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]
    assert "".join(contents(datas)) == DEFAULT_TEXT
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    (request,) = fake.requests
    await finished(request)
    assert request.completed and not request.cancelled


async def test_stream_options_and_ending_variants() -> None:
    script = Script(tokens=["a", "é\n"], role_chunk=False, send_done=False, finish_reason="length")
    async with open_fake_openai(script=script) as fake, httpx.AsyncClient() as client:
        datas = await sse_data(client, fake, stream_options={"include_usage": True})
    chunks = [json.loads(data) for data in datas]
    assert "role" not in chunks[0]["choices"][0]["delta"]
    assert contents(datas) == ["a", "é\n"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert "[DONE]" not in datas


async def test_delays_are_respected() -> None:
    script = Script(tokens=["a", "b", "c"], first_token_delay=0.25, chunk_delay=0.1)
    async with open_fake_openai(script=script) as fake, httpx.AsyncClient() as client:
        start = trio.current_time()
        async with aconnect_sse(client, "POST", url(fake), json=chat_body()) as source:
            headers_at = trio.current_time() - start
            arrivals = [trio.current_time() - start
                        async for event in source.aiter_sse()
                        if contents([event.data])]
    assert headers_at < 0.2  # headers go out at once
    assert len(arrivals) == 3
    assert 0.25 <= arrivals[0] < 0.45
    assert all(later - earlier >= 0.09 for earlier, later in itertools.pairwise(arrivals))


async def test_headers_delay_trips_a_first_byte_timeout() -> None:
    async with open_fake_openai(script=Script(headers_delay=2.0)) as fake:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.2)) as client:
            start = trio.current_time()
            with pytest.raises(httpx.ReadTimeout):
                await client.post(url(fake), json=chat_body())
            assert trio.current_time() - start < 1.0
        (request,) = fake.requests
        await finished(request, within=0.5)
        assert request.cancelled and not request.completed


async def test_error_statuses_carry_openai_error_bodies() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        fake.script(Script(status=500), Script(status=429, retry_after="0.2"))
        server_error = await client.post(url(fake), json=chat_body())
        rate_limited = await client.post(url(fake), json=chat_body(stream=False))
        recovered = await client.post(url(fake), json=chat_body(stream=False))
    assert server_error.status_code == 500
    assert server_error.headers["content-type"] == "application/json"
    assert server_error.json()["error"]["type"] == "server_error"
    assert set(server_error.json()["error"]) >= {"message", "type", "code"}
    assert rate_limited.status_code == 429
    assert rate_limited.headers["retry-after"] == "0.2"
    assert rate_limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert recovered.status_code == 200  # the queue is empty again: the default script
    assert all(request.completed for request in fake.requests)


async def test_stall_times_out_the_reader_and_is_recorded_as_cancelled() -> None:
    async with open_fake_openai(script=Script(stall_after=2)) as fake:
        datas: list[str] = []
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.3)) as client:
            with pytest.raises(httpx.ReadTimeout):
                async with (aconnect_sse(client, "POST", url(fake), json=chat_body()) as source,
                            aclosing(source.aiter_sse()) as events):
                    async for event in events:
                        datas.append(event.data)
            closed_at = trio.current_time()
        assert contents(datas) == ["Hello", " from"]
        (request,) = fake.requests
        await finished(request)
        assert trio.current_time() - closed_at < 0.1
        assert request.cancelled and not request.completed


async def test_client_disconnect_is_noticed_during_a_slow_stream() -> None:
    async with open_fake_openai(script=Script(chunk_delay=5.0)) as fake, httpx.AsyncClient() as client:
        # Give up after the first token by cancelling (breaking out of httpx's iterators would
        # leave its inner async generators suspended, which trio reports as a ResourceWarning).
        with trio.CancelScope() as give_up:
            async with aconnect_sse(client, "POST", url(fake), json=chat_body()) as source:
                async for event in source.aiter_sse():
                    if contents([event.data]):
                        give_up.cancel()
        assert give_up.cancelled_caught
        closed_at = trio.current_time()
        (request,) = fake.requests
        await finished(request)
        assert trio.current_time() - closed_at < 0.1
        assert request.cancelled


async def test_reset_is_a_transport_error() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        fake.script(Script(reset_after=2))
        datas: list[str] = []
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            async with (aconnect_sse(client, "POST", url(fake), json=chat_body()) as source,
                        aclosing(source.aiter_sse()) as events):
                async for event in events:
                    datas.append(event.data)
        assert len(contents(datas)) <= 2  # the kernel may drop what was unread when the RST lands
        (request,) = fake.requests
        await finished(request)
        assert not request.completed and not request.cancelled
        # The fake keeps serving after a reset.
        assert "".join(contents(await sse_data(client, fake))) == DEFAULT_TEXT


async def test_garbage_event_then_the_stream_carries_on() -> None:
    async with open_fake_openai(script=Script(garbage_after=1)) as fake, httpx.AsyncClient() as client:
        datas = await sse_data(client, fake)
    bad = [data for data in datas if data.startswith("{not json")]
    assert len(bad) == 1
    good = [data for data in datas if data not in bad]
    assert "".join(contents(good)) == DEFAULT_TEXT
    assert datas.index(bad[0]) == 2  # role chunk, "Hello", garbage, " from", ...


async def test_split_lines_events_reassemble_into_json() -> None:
    async with open_fake_openai(script=Script(split_lines=True)) as fake, httpx.AsyncClient() as client:
        raw = await raw_stream(client, fake)
        datas = await sse_data(client, fake)
    assert ",\ndata: " in raw
    assert all("\n" in data for data in datas[:-1])
    assert "".join(contents(datas)) == DEFAULT_TEXT  # contents() json.loads every event


async def test_keepalive_comments_in_the_raw_stream() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        with_comments = await raw_stream(client, fake)
        fake.default = Script(keepalive_comments=False)
        without = await raw_stream(client, fake)
    assert with_comments.startswith(": keep-alive\n\n")
    assert with_comments.count(": keep-alive\n\n") == 6  # after the headers and after each token
    assert ": keep-alive" not in without
    assert without.endswith("data: [DONE]\n\n")


async def test_content_type_bom_and_content_filter_as_scripted() -> None:
    script = Script(tokens=[], finish_reason="content_filter", keepalive_comments=False,
                    bom=True, content_type="Text/Event-Stream; charset=utf-8")
    async with (open_fake_openai(script=script) as fake, httpx.AsyncClient() as client,
                client.stream("POST", url(fake), json=chat_body()) as response):
        content_type = response.headers["content-type"]
        body = b"".join([piece async for piece in response.aiter_raw()])
    assert content_type == "Text/Event-Stream; charset=utf-8"
    assert body.startswith(b"\xef\xbb\xbfdata: {")
    datas = [line.removeprefix("data: ") for line in body[3:].decode().split("\n\n") if line]
    assert contents(datas) == []
    assert json.loads(datas[-2])["choices"][0]["finish_reason"] == "content_filter"
    assert datas[-1] == "[DONE]"


async def test_503_carries_retry_after() -> None:
    async with open_fake_openai(script=Script(status=503, retry_after="2")) as fake, \
            httpx.AsyncClient() as client:
        response = await client.post(url(fake), json=chat_body())
    assert response.status_code == 503 and response.headers["retry-after"] == "2"


async def test_stamp_first_token_carries_the_senders_monotonic_clock() -> None:
    async with open_fake_openai(script=Script(stamp_first_token=True)) as fake, \
            httpx.AsyncClient() as client:
        before = time.monotonic()
        streamed = contents(await sse_data(client, fake))
        between = time.monotonic()
        whole = (await client.post(url(fake), json=chat_body(stream=False))).json()
        after = time.monotonic()
        fake.default = Script()
        plain = contents(await sse_data(client, fake))
    stamp, _, first = streamed[0].partition(" ")
    assert stamp.startswith("@") and first == "Hello"
    assert before <= float(stamp[1:]) <= between
    assert streamed[1:] == plain[1:] and not plain[0].startswith("@")  # only the first token
    stamp, _, text = whole["choices"][0]["message"]["content"].partition(" ")
    assert between <= float(stamp[1:]) <= after
    assert text == DEFAULT_TEXT


async def test_non_stream_json_completion() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        fake.script(Script(tokens=["Hi", " there"], first_token_delay=0.1))
        start = trio.current_time()
        response = await client.post(url(fake), json=chat_body(stream=None))
        elapsed = trio.current_time() - start
        explicit = await client.post(url(fake), json=chat_body(stream=False))
    assert elapsed >= 0.1
    completion = response.json()
    assert response.headers["content-type"] == "application/json"
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-test"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hi there"}
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] == 2
    assert completion["usage"]["total_tokens"] > 2
    assert explicit.json()["choices"][0]["message"]["content"] == DEFAULT_TEXT


async def test_models_and_unknown_paths() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        first = await client.get(f"{fake.base_url}/models")
        await client.get(f"{fake.base_url}/models")
        missing = await client.get(f"{fake.base_url}/nope")
        wrong_method = await client.get(url(fake))
    assert first.json() == {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
    assert fake.models_requests == 2
    assert missing.status_code == 404 and "error" in missing.json()
    assert wrong_method.status_code == 405
    assert fake.requests == []


async def test_keep_alive_reuses_one_connection() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        await sse_data(client, fake)
        await sse_data(client, fake)
        await client.post(url(fake), json=chat_body(stream=False))
        await client.get(f"{fake.base_url}/models")
    assert fake.connections_opened == 1
    assert len(fake.requests) == 3


async def test_api_key_is_enforced() -> None:
    async with open_fake_openai(api_key="sk-test") as fake, httpx.AsyncClient() as client:
        missing = await client.post(url(fake), json=chat_body())
        wrong = await client.post(url(fake), json=chat_body(), headers={"Authorization": "Bearer nope"})
        models = await client.get(f"{fake.base_url}/models")
        streamed = await sse_data(client, fake, headers={"Authorization": "Bearer sk-test"})
        ok = await client.post(url(fake), json=chat_body(stream=False),
                               headers={"Authorization": "Bearer sk-test"})
    assert missing.status_code == wrong.status_code == models.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "".join(contents(streamed)) == DEFAULT_TEXT
    assert ok.status_code == 200
    assert len(fake.requests) == 4  # rejected requests are recorded too


async def test_requests_are_recorded() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        before = trio.current_time()
        await client.post(url(fake), json=chat_body(stream=False, user="visitor-7"),
                          headers={"Authorization": "Bearer k", "X-Trace": "abc"})
        (request,) = await fake.wait_for_requests(1)
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k"
    assert request.headers["x-trace"] == "abc"
    assert request.headers["content-type"] == "application/json"
    assert request.body == chat_body(stream=False, user="visitor-7")
    assert request.body["messages"][-1] == {"role": "user", "content": "Where is my parcel?"}
    assert request.body["model"] == "gpt-test"
    body = request.body
    assert (body["max_tokens"], body["temperature"], body["stream"]) == (64, 0.3, False)
    assert before <= request.started_at <= trio.current_time()


async def test_script_queue_and_wait_for_requests() -> None:
    async with open_fake_openai() as fake, httpx.AsyncClient() as client:
        fake.script(Script(tokens=["one"]), Script(tokens=["two"]))
        replies: list[str] = []

        async def ask() -> None:
            response = await client.post(url(fake), json=chat_body(stream=False))
            replies.append(response.json()["choices"][0]["message"]["content"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            assert len(await fake.wait_for_requests(1)) == 1
        await ask()
        await ask()
        assert replies == ["one", "two", DEFAULT_TEXT]
        with pytest.raises(trio.TooSlowError):
            await fake.wait_for_requests(4, timeout=0.05)
        invalid = await client.post(url(fake), content=b"{not json")
        assert invalid.status_code == 400
        assert fake.requests[-1].body is None


async def _read_until(stream: trio.abc.ReceiveStream, marker: bytes, buffer: bytearray) -> None:
    while marker not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise AssertionError(f"EOF before {marker!r}: {bytes(buffer)!r}")
        buffer += data


async def test_many_concurrent_streams_and_pipelining() -> None:
    """Raw sockets: 300 concurrent streams (cheaper than httpx), one of them pipelining two requests."""
    payload = json.dumps(chat_body()).encode()
    host, port = "127.0.0.1", 0
    request = b""
    async with open_fake_openai(script=Script(chunk_delay=0.01)) as fake:
        host_port = fake.base_url.removeprefix("http://").removesuffix("/v1")
        host, port_text = host_port.split(":")
        port = int(port_text)
        request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(payload)) + payload
        end = b"data: [DONE]\n\n\r\n0\r\n\r\n"

        async def one(pipelined: bool) -> None:
            async with await trio.open_tcp_stream(host, port) as stream:
                await stream.send_all(request * 2 if pipelined else request)
                buffer = bytearray()
                await _read_until(stream, end, buffer)
                if pipelined:
                    del buffer[: buffer.index(end) + len(end)]
                    await _read_until(stream, end, buffer)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    nursery.start_soon(one, i == 0)
        assert fake.connections_opened == 300
        assert len(fake.requests) == 301
        assert all(r.completed for r in fake.requests)


async def test_cli_serves_until_sigterm() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--tokens", "3"],
        stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert process.stdout is not None
        line = bytearray()
        with trio.fail_after(10):
            await _read_until(process.stdout, b"\n", line)
        assert line.startswith(b"listening on http://127.0.0.1:")
        base_url = line.decode().removeprefix("listening on ").strip()
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{base_url}/chat/completions", json=chat_body(stream=False))
        assert response.json()["choices"][0]["message"]["content"] == "Hello word1 word2"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()


async def test_the_cli_setting_counts_requests_without_keeping_them() -> None:
    """The CLI serves benchmarks for minutes: keeping every request body grew it to 2 GB."""
    fake = FakeOpenAI(keep_requests=False)
    async with trio.open_nursery() as nursery, httpx.AsyncClient() as client:
        await nursery.start(fake.serve)
        for _ in range(2):
            assert contents(await sse_data(client, fake))
        nursery.cancel_scope.cancel()
    assert fake.chat_requests == 2
    assert fake.requests == []
