"""A fake OpenAI-compatible ``/v1/chat/completions`` server, scriptable per test.

It speaks the real wire format (HTTP/1.1 with keep-alive, chunked Server-Sent Events,
OpenAI error bodies) straight over ``trio.serve_tcp`` + h11, so it can also misbehave the way
real networks do: stall mid-stream, reset the TCP connection, send garbage.

    async with open_fake_openai() as fake:
        fake.script(Script(tokens=["Hi", "!"], chunk_delay=0.05), Script(status=429, retry_after="1"))
        ...  # point the client at fake.base_url
        (request,) = await fake.wait_for_requests(1)
        assert request.body["messages"][-1]["content"] == "hello"

Each ``POST /v1/chat/completions`` consumes the next queued :class:`Script` (``fake.default``
once the queue is empty) and is recorded in ``fake.requests`` (not by the CLI, which
serves benchmarks for minutes: it only counts them). ``"stream": true`` gets an
SSE stream; otherwise a plain ``chat.completion`` JSON body.

What third-party servers were seen to send, as scripts::

    Script(tokens=[], finish_reason="content_filter")         # a content filter's empty reply
    Script(tokens=[" ", "\n", "  "])                          # a whitespace-only reply
    Script(bom=True)                                          # a UTF-8 BOM before the first event
    Script(content_type="Text/Event-Stream; charset=utf-8")   # the media type in other case
    Script(status=503, retry_after="2")                       # overloaded: retry in 2 s (or a date)

CLI (manual runs, benchmarks)::

    python -m tests.fakes.openai_server --port 0 --tokens 20 --chunk-delay 0 --first-token-delay 0
"""

from __future__ import annotations

import argparse
import http
import itertools
import json
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio

__all__ = ["FakeOpenAI", "RecordedRequest", "Script", "open_fake_openai"]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
MODEL_ID = "fake-model"

_RECV_SIZE = 65536
_KEEPALIVE = b": keep-alive\n\n"
_GARBAGE = b"data: {not json\n\n"
_DONE = b"data: [DONE]\n\n"
_BOM = b"\xef\xbb\xbf"
_CONTENT_TAIL = b'},"finish_reason":null}]}\n\n'
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Script:
    """How to answer one chat-completion request.

    Streaming: headers (after ``headers_delay``), then the chunks. The role chunk goes out with
    the first token, after ``first_token_delay``; the finish chunk and ``[DONE]`` right after the
    last token. ``*_after=N`` acts once N tokens have been sent (0: before the first one).

    Non-streaming: the whole reply comes after ``headers_delay + first_token_delay +
    chunk_delay * (len(tokens) - 1)``; any ``stall_after`` stalls before the reply, any
    ``reset_after`` resets instead of it, any ``garbage_after`` makes the body malformed JSON.
    """

    tokens: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake", "!"])
    first_token_delay: float = 0.0  # after the headers, before the first chunk
    chunk_delay: float = 0.0  # between content chunks
    status: int = 200  # non-200: that status with an OpenAI error body, no stream
    retry_after: str | None = None  # Retry-After header value (with any status)
    headers_delay: float = 0.0  # before anything is sent
    stall_after: int | None = None  # after N tokens: send nothing more, hold the connection
    reset_after: int | None = None  # after N tokens: TCP RST
    garbage_after: int | None = None  # after N tokens: one malformed event, then carry on
    keepalive_comments: bool = True  # ": keep-alive" comment after the headers and each chunk
    split_lines: bool = False  # each JSON chunk as a multi-line SSE event
    finish_reason: str = "stop"
    send_done: bool = True  # end with "data: [DONE]"
    role_chunk: bool = True  # first chunk is {"delta": {"role": "assistant"}}
    content_type: str = "text/event-stream"  # the stream's Content-Type header, as sent
    bom: bool = False  # a UTF-8 byte-order mark opens the body, in two pieces (EF, then BB BF)
    # Benchmarks: the first token's text starts with "@<time.monotonic()> " taken as it is sent
    # (CLOCK_MONOTONIC is system-wide on Linux: another local process can subtract it).
    stamp_first_token: bool = False


@dataclass
class RecordedRequest:
    """A chat-completion request as the fake saw it, and what became of its response."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON body, or None
    started_at: float  # trio.current_time()
    completed: bool = False  # the full response was sent
    cancelled: bool = False  # the client went away before the response was complete
    # Set once the exchange is over: completed, cancelled, reset by a script, or server stopped.
    finished: trio.Event = field(default_factory=trio.Event)


class _Exchange:
    """Flags shared between a response and the task watching the client's side of the socket."""

    __slots__ = ("client_gone", "reset")

    def __init__(self) -> None:
        self.client_gone = False
        self.reset = False


class _ChunkEncoder:
    """Pre-encodes the parts of a ``chat.completion.chunk`` event that are the same for every token."""

    __slots__ = ("_head", "_prefix")

    def __init__(self, completion_id: str, created: int, model: str, split_lines: bool) -> None:
        self._head = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                      "model": model}
        # Splitting only after commas between top-level members: the lines joined with "\n"
        # (as SSE requires) are still valid JSON.
        separator = ",\ndata: " if split_lines else ","
        members = (
            f'"id":{_dumps(completion_id)}',
            '"object":"chat.completion.chunk"',
            f'"created":{created}',
            f'"model":{_dumps(model)}',
            '"choices":[{"index":0,"delta":',
        )
        self._prefix = ("data: {" + separator.join(members)).encode()

    def role(self) -> bytes:
        return self._prefix + b'{"role":"assistant"' + _CONTENT_TAIL

    def content(self, token: str) -> bytes:
        return b"".join((self._prefix, b'{"content":', _dumps(token).encode(), _CONTENT_TAIL))

    def finish(self, reason: str) -> bytes:
        return self._prefix + b'{},"finish_reason":' + _dumps(reason).encode() + b"}]}\n\n"

    def usage(self, usage: dict[str, int]) -> bytes:
        """The extra last chunk sent for ``"stream_options": {"include_usage": true}``."""
        return b"data: " + _dumps({**self._head, "choices": [], "usage": usage}).encode() + b"\n\n"


def _stamped(text: str) -> str:
    """``text`` behind the sender's ``time.monotonic()``: ``"@1234.567890123 Hello"``."""
    return f"@{time.monotonic():.9f} {text}"


def _error_body(status: int, message: str) -> bytes:
    if status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status == 401:
        kind, code = "invalid_request_error", "invalid_api_key"
    elif status >= 500:
        kind, code = "server_error", None
    else:
        kind, code = "invalid_request_error", None
    return _dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


def _usage(body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
    messages = body.get("messages")
    prompt = sum(
        len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict)
    ) if isinstance(messages, list) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> h11.Event:
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Event):
            return event
        if event is h11.PAUSED:  # only after a full request; we never read then
            raise RuntimeError("h11 paused while reading a request")
        conn.receive_data(await stream.receive_some(_RECV_SIZE))


class FakeOpenAI:
    """The server's state: scripts to play and what the clients sent. See the module docstring."""

    def __init__(self, default: Script | None = None, *, api_key: str | None = None,
                 keep_requests: bool = True) -> None:
        self.default = default if default is not None else Script()
        self.api_key = api_key
        self.keep_requests = keep_requests
        """False (the CLI): requests are counted in ``chat_requests`` but not kept, so a long
        benchmark does not hold every request body (a 1,000-session soak kept 2 GB)."""
        self.chat_requests = 0
        self.base_url = ""  # "http://127.0.0.1:<port>/v1" once serving
        self.requests: list[RecordedRequest] = []
        self.models_requests = 0
        self.connections_opened = 0
        self._queue: deque[Script] = deque()
        self._arrived = trio.Event()
        self._ids = itertools.count(1)

    # -- test API ---------------------------------------------------------------------------

    def script(self, *scripts: Script) -> None:
        """Queue scripts; each chat-completion request consumes the next one."""
        self._queue.extend(scripts)

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait for ``count`` chat-completion requests in all; trio.TooSlowError after ``timeout``."""
        with trio.fail_after(timeout):
            while len(self.requests) < count:
                await self._arrived.wait()
        return list(self.requests)

    async def serve(self, *, host: str = "127.0.0.1", port: int = 0,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started`` gets the base URL."""
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                partial(trio.serve_tcp, self._handle_connection, port, host=host))
            bound_host, bound_port = listeners[0].socket.getsockname()[:2]
            self.base_url = f"http://{bound_host}:{bound_port}/v1"
            task_status.started(self.base_url)

    # -- connection ---------------------------------------------------------------------------

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        self.connections_opened += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                try:
                    request, body = await self._read_request(stream, conn)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send_json(stream, conn, exc.error_status_hint,
                                              _error_body(exc.error_status_hint, str(exc)))
                    return
                if request is None:
                    return
                if not await self._dispatch(stream, conn, request, body):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # the client went away; trio.serve_tcp closes the stream

    async def _read_request(self, stream: trio.SocketStream, conn: h11.Connection
                            ) -> tuple[h11.Request | None, bytes]:
        event = await _next_event(stream, conn)
        if not isinstance(event, h11.Request):  # ConnectionClosed: the client is done
            return None, b""
        body = bytearray()
        while not isinstance(part := await _next_event(stream, conn), h11.EndOfMessage):
            if isinstance(part, h11.Data):
                body += part.data
        return event, bytes(body)

    async def _dispatch(self, stream: trio.SocketStream, conn: h11.Connection,
                        request: h11.Request, raw_body: bytes) -> bool:
        """Answer one request; False if the connection must not be reused."""
        method = request.method.decode("ascii")
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        headers = {name.decode("ascii"): value.decode("latin-1") for name, value in request.headers}
        authorized = self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"
        head_only = method == "HEAD"

        if path == CHAT_PATH and method == "POST":
            return await self._chat(stream, conn, method, path, headers, raw_body, authorized)
        if path == MODELS_PATH and method == "GET":
            self.models_requests += 1
            if not authorized:
                status, payload = 401, _error_body(401, "Incorrect API key provided.")
            else:
                status = 200
                payload = b'{"object":"list","data":[{"id":"' + MODEL_ID.encode() + b'","object":"model"}]}'
        elif path in (CHAT_PATH, MODELS_PATH):
            status, payload = 405, _error_body(405, f"Method {method} not allowed on {path}.")
        else:
            status, payload = 404, _error_body(404, f"Invalid URL ({method} {path})")
        await self._send_json(stream, conn, status, payload, head_only=head_only)
        return True

    async def _chat(self, stream: trio.SocketStream, conn: h11.Connection, method: str, path: str,
                    headers: dict[str, str], raw_body: bytes, authorized: bool) -> bool:
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        record = RecordedRequest(method, path, headers, body, trio.current_time())
        self.chat_requests += 1
        if self.keep_requests:
            self.requests.append(record)
        self._arrived.set()
        self._arrived = trio.Event()
        try:
            if not authorized:
                await self._send_json(stream, conn, 401, _error_body(401, "Incorrect API key provided."))
                record.completed = True
                return True
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                message = "Request body must be a JSON object with a 'messages' array."
                await self._send_json(stream, conn, 400, _error_body(400, message))
                record.completed = True
                return True
            script = self._queue.popleft() if self._queue else self.default
            return await self._respond_watched(stream, conn, record, script, body)
        finally:
            record.finished.set()

    async def _respond_watched(self, stream: trio.SocketStream, conn: h11.Connection,
                               record: RecordedRequest, script: Script, body: dict[str, Any]) -> bool:
        """Play ``script`` while a second task watches for the client going away."""
        exchange = _Exchange()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_client, stream, conn, exchange, nursery.cancel_scope)
            try:
                await self._play(stream, conn, record, script, body, exchange)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                exchange.client_gone = True
            nursery.cancel_scope.cancel()  # stops the watcher; also how the watcher stops _play
        if exchange.reset:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            await stream.aclose()
            return False
        if exchange.client_gone:
            record.cancelled = not record.completed
            return False
        return True

    @staticmethod
    async def _watch_client(stream: trio.SocketStream, conn: h11.Connection, exchange: _Exchange,
                            scope: trio.CancelScope) -> None:
        try:
            while data := await stream.receive_some(_RECV_SIZE):
                conn.receive_data(data)  # a pipelined next request: h11 keeps it for later
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # reset by the client: gone just the same
        exchange.client_gone = True
        scope.cancel()

    async def _play(self, stream: trio.SocketStream, conn: h11.Connection, record: RecordedRequest,
                    script: Script, body: dict[str, Any], exchange: _Exchange) -> None:
        if script.headers_delay > 0:
            await trio.sleep(script.headers_delay)
        extra = [("retry-after", script.retry_after)] if script.retry_after is not None else []
        if script.status != 200:
            message = f"Scripted error {script.status} from the fake OpenAI server."
            await self._send_json(stream, conn, script.status, _error_body(script.status, message), extra)
            record.completed = True
            return
        model = body.get("model")
        model = model if isinstance(model, str) else MODEL_ID
        completion_id = f"chatcmpl-{next(self._ids)}"
        created = int(time.time())
        if body.get("stream") is True:
            await self._play_stream(stream, conn, script, body, exchange, extra,
                                    _ChunkEncoder(completion_id, created, model, script.split_lines))
            record.completed = not exchange.reset
            return

        generation = script.first_token_delay + script.chunk_delay * max(len(script.tokens) - 1, 0)
        if generation > 0:
            await trio.sleep(generation)
        if script.stall_after is not None:
            await trio.sleep_forever()
        if script.reset_after is not None:
            exchange.reset = True
            return
        if script.garbage_after is not None:
            payload = b'{"id": "chatcmpl-garbage", {not json'
        else:
            content = "".join(script.tokens)
            if script.stamp_first_token and script.tokens:
                content = _stamped(content)
            payload = _dumps({
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": script.finish_reason,
                }],
                "usage": _usage(body, len(script.tokens)),
            }).encode()
        await self._send_json(stream, conn, 200, payload, extra)
        record.completed = True

    async def _play_stream(self, stream: trio.SocketStream, conn: h11.Connection, script: Script,
                           body: dict[str, Any], exchange: _Exchange, extra: list[tuple[str, str]],
                           encoder: _ChunkEncoder) -> None:
        headers = [
            ("content-type", script.content_type),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
            *extra,
        ]
        out = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
        if script.bom:  # its first byte alone, so the client sees the mark split across reads
            await stream.send_all(out + conn.send(h11.Data(data=_BOM[:1])))
            await trio.sleep(0.01)
            out = conn.send(h11.Data(data=_BOM[1:]))
        if script.keepalive_comments:
            out += conn.send(h11.Data(data=_KEEPALIVE))
        await stream.send_all(out)
        if script.first_token_delay > 0:
            await trio.sleep(script.first_token_delay)

        tokens = script.tokens
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        parts: list[bytes] = []
        for i in range(len(tokens) + 1):
            if i == script.stall_after:
                await trio.sleep_forever()
            if i == script.reset_after:
                exchange.reset = True
                return
            parts.clear()
            if i == script.garbage_after:
                parts.append(_GARBAGE)
            if i == 0 and script.role_chunk:
                parts.append(encoder.role())
            if i < len(tokens):
                if i > 0 and script.chunk_delay > 0:
                    await trio.sleep(script.chunk_delay)
                token = _stamped(tokens[i]) if i == 0 and script.stamp_first_token else tokens[i]
                parts.append(encoder.content(token))
                if script.keepalive_comments:
                    parts.append(_KEEPALIVE)
                await stream.send_all(conn.send(h11.Data(data=b"".join(parts))))
                continue
            parts.append(encoder.finish(script.finish_reason))
            if include_usage:
                parts.append(encoder.usage(_usage(body, len(tokens))))
            if script.send_done:
                parts.append(_DONE)
            await stream.send_all(conn.send(h11.Data(data=b"".join(parts))) + conn.send(h11.EndOfMessage()))

    @staticmethod
    async def _send_json(stream: trio.SocketStream, conn: h11.Connection, status: int, payload: bytes,
                         extra: Sequence[tuple[str, str]] = (), *, head_only: bool = False) -> None:
        headers = [("content-type", "application/json"), ("content-length", str(len(payload))), *extra]
        try:
            reason = http.HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        out = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
        if not head_only:
            out += conn.send(h11.Data(data=payload))
        await stream.send_all(out + conn.send(h11.EndOfMessage()))


@asynccontextmanager
async def open_fake_openai(*, script: Script | None = None,
                           api_key: str | None = None) -> AsyncIterator[FakeOpenAI]:
    """Serve a :class:`FakeOpenAI` on 127.0.0.1 (a free port) for the duration of the block."""
    fake = FakeOpenAI(script, api_key=api_key)
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        try:
            yield fake
        except Exception as exc:  # re-raised below, outside the nursery: not in an ExceptionGroup
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


# -- CLI -----------------------------------------------------------------------------------------


def _cli_tokens(count: int) -> list[str]:
    return [("Hello" if i == 0 else f" word{i}") for i in range(count)]


def _raise_fd_limit() -> None:
    if sys.platform != "win32":
        import resource  # noqa: PLC0415

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _serve_until_signal(fake: FakeOpenAI, host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(partial(fake.serve, host=host, port=port))
            print(f"listening on {url}", flush=True)
            async for _signum in signals:
                break
            nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openai_server",
                                     description="Fake OpenAI-compatible chat-completions server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--tokens", type=int, default=5, help="tokens per reply")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds before the first chunk")
    parser.add_argument("--no-keepalive-comments", action="store_true")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")
    parser.add_argument("--finish-reason", default="stop",
                        help='e.g. "content_filter" (with --tokens 0: an empty reply)')
    parser.add_argument("--content-type", default="text/event-stream",
                        help="the stream's Content-Type, as sent")
    parser.add_argument("--bom", action="store_true", help="a UTF-8 BOM before the first event")
    parser.add_argument("--status", type=int, default=200,
                        help="answer every request with this status (an OpenAI error body)")
    parser.add_argument("--retry-after", default=None, help="Retry-After header value")
    parser.add_argument("--stamp-first-token", action="store_true",
                        help='start each first token with "@<time.monotonic()> " (benchmarks)')
    args = parser.parse_args(argv)
    script = Script(tokens=_cli_tokens(args.tokens), chunk_delay=args.chunk_delay,
                    first_token_delay=args.first_token_delay,
                    keepalive_comments=not args.no_keepalive_comments,
                    stamp_first_token=args.stamp_first_token, finish_reason=args.finish_reason,
                    content_type=args.content_type, bom=args.bom, status=args.status,
                    retry_after=args.retry_after)
    _raise_fd_limit()
    trio.run(_serve_until_signal, FakeOpenAI(script, api_key=args.api_key, keep_requests=False),
             args.host, args.port)


if __name__ == "__main__":
    main()
