"""A lean streaming HTTP/1.1 client for plain-``http://`` AI upstreams: h11 on trio sockets.

vLLM, Ollama, llama.cpp and LiteLLM are usually reached over plain HTTP inside the
network; for them httpx/httpcore's request path (a pool walked and polled on every
request and close, layers of async generators) was a quarter of the server's CPU.
Here one request is: take the newest idle connection off a stack (``core.http1.IdleStack``,
O(1); one ``poll`` of that socket to see the server has not closed it nor sent
anything unasked, which would be read as the answer to the next request), write the
head and body in one ``send``, parse the response head with h11, hand the body out one
network read at a time. A chunked body (what streaming upstreams send) is decoded by
``core.http1.ChunkedBody`` instead of h11: h11's per-chunk work (a regex, an event, a
state-machine step per SSE event) was a fifth of the server's event loop; the
connection then goes back to the pool with a fresh h11 state.

Guarantees (the same as the httpx path gives ``ai.client``):

- timeouts at each stage: ``connect_timeout`` to connect and to write, the longer of
  ``idle_timeout``/``first_token_timeout`` per read, ``first_token_timeout`` to wait for
  a free connection (at most ``connections`` are open at once); the caller's own
  deadlines (first token, idle, total) cancel from outside;
- a connection goes back to the pool only when its response was read to the end and
  h11 says both sides are DONE (``core.http1.reusable``); a cancelled, failed or
  ``Connection: close`` exchange closes its socket (synchronously, so cancellation
  cannot skip it); idle connections expire after ``KEEPALIVE_EXPIRY`` seconds;
- the stale keep-alive race: when a reused connection fails before the server sent
  anything back, the request goes once more on a fresh connection;
- chunked bodies (``ChunkedBody``, as strict as h11), Content-Length bodies and bodies
  ended by close (h11);
- no proxies: ``HTTP_PROXY``/``ALL_PROXY`` are not read (an in-network upstream is
  reached directly; use ``http_client = "httpx"`` to go through a proxy).

Every failure becomes an ``AiError`` in ``_transport_error``, the one place.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import h11
import trio

from customer_service.ai.upstream import MAX_ERROR_BODY
from customer_service.config import AiConfig
from customer_service.core.http1 import (
    ChunkedBody,
    IdleStack,
    Origin,
    keeps_alive,
    origin,
    request_head,
    response_headers,
    reusable,
)
from customer_service.errors import AiConnectionError, AiError, AiTimeout

log = logging.getLogger(__name__)

KEEPALIVE_EXPIRY: Final = 60.0
"""Seconds an idle connection is kept (as the httpx pools do)."""
RECEIVE_SIZE: Final = 65536
_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError)


class _Timeout(Exception):
    """A stage took too long (``stage`` names it like httpx's exceptions)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


_FAILURES = (_Timeout, *_ERRORS)


def _transport_error(exc: Exception) -> AiError:
    """A socket, h11 or stage-timeout failure as the ``AiError`` it means (as
    ``upstream.transport_error`` does for httpx)."""
    if isinstance(exc, _Timeout):
        return AiTimeout(f"the upstream did not answer in time ({exc.stage})")
    return AiConnectionError(
        f"connection to the upstream failed ({type(exc).__name__}: {exc})")


class _Conn:
    """One socket and its h11 state machine."""

    __slots__ = ("h11", "received", "sock", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.sock = stream.socket
        self.h11 = h11.Connection(h11.CLIENT)
        self.received = 0  # bytes received in this request/response cycle

    def close(self) -> None:
        """Close now, without a checkpoint: safe in ``finally`` under cancellation."""
        self.sock.close()

    def looks_alive(self) -> bool:
        """An idle socket must not be readable: readable means the server closed it (or
        sent something unasked). One ``poll`` of this socket only."""
        try:
            poller = select.poll()
            poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False


class H11Response:
    """Status, lower-case headers and the body, one network read per piece."""

    __slots__ = ("_chunked", "_conn", "_first", "_keep_alive", "_pool", "done", "headers",
                 "status_code")

    def __init__(self, pool: H11Transport, conn: _Conn, status: int,
                 headers: dict[str, str], *, chunked: ChunkedBody | None = None,
                 keep_alive: bool = False, first: bytes = b"") -> None:
        self._pool = pool
        self._conn = conn
        self.status_code = status
        self.headers = headers
        self.done = False  # the body was read to its end
        self._chunked = chunked
        """A chunked body, decoded here rather than by h11 (whose state then stays at the
        start of the body: the connection gets a fresh one if it is kept)."""
        self._keep_alive = keep_alive
        """The response allows keeping the connection (for a chunked body; else h11 knows)."""
        self._first = first
        """Body bytes ``ChunkedBody`` decoded from what came in with the head."""

    def aiter_raw(self) -> AsyncIterator[bytes]:
        return _Body(self)


class _Body:
    """The async iterator of a response body: each step is everything h11 has after one
    receive, joined (so a fast upstream's burst of SSE chunks is one piece)."""

    __slots__ = ("_response",)

    def __init__(self, response: H11Response) -> None:
        self._response = response

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        response = self._response
        if response.done:
            raise StopAsyncIteration
        try:
            return await self._next_piece(response)
        except _FAILURES as exc:
            raise _transport_error(exc) from None

    @staticmethod
    async def _next_piece(response: H11Response) -> bytes:
        conn = response._conn
        pool = response._pool
        chunked = response._chunked
        if chunked is not None:
            piece, response._first = response._first, b""
            while not piece and not chunked.done:
                data = await pool.recv(conn)
                if not data:
                    raise h11.RemoteProtocolError("the upstream closed the connection "
                                                  "before the end of the chunked body")
                piece = chunked.feed(data)
            if chunked.done:
                response.done = True
            if piece:
                return piece
            raise StopAsyncIteration
        pieces: list[bytes] = []
        while True:
            event = conn.h11.next_event()
            if isinstance(event, h11.Data):
                pieces.append(bytes(event.data))
            elif event is h11.NEED_DATA:
                if pieces:
                    return b"".join(pieces)
                await pool.receive(conn)
            elif isinstance(event, h11.EndOfMessage):
                response.done = True
                if pieces:
                    return b"".join(pieces)
                raise StopAsyncIteration
            else:  # ConnectionClosed or PAUSED before the end of the body
                raise h11.RemoteProtocolError(f"unexpected {event!r} in the body")


class H11Transport:
    """The pool of one ``http://`` origin: an ``IdleStack`` and a bound on open connections."""

    name = "h11"

    def __init__(self, config: AiConfig, connections: int, headers: Mapping[str, str]) -> None:
        self._origin: Origin = origin(config.base_url)
        self._headers = list(headers.items())
        self._connect_timeout = config.connect_timeout
        self._write_timeout = config.connect_timeout
        self._read_timeout = max(config.idle_timeout, config.first_token_timeout)
        self._pool_timeout = config.first_token_timeout
        self._slots = trio.Semaphore(max(1, connections))
        self.idle: IdleStack[_Conn] = IdleStack(KEEPALIVE_EXPIRY, max(1, connections))
        self.opened = 0  # connections opened so far (tests, logs)
        self.stale_retries = 0  # requests sent again after a kept-alive connection died
        self._closed = False

    # --- the pool -------------------------------------------------------------------

    def _take(self) -> _Conn | None:
        now = trio.current_time()
        while True:
            conn, _idle_for, expired = self.idle.take(now)
            for gone in expired:
                gone.close()
            if conn is None or conn.looks_alive():
                return conn
            conn.close()

    def _release(self, response: H11Response) -> None:
        """Back on the stack when h11 (or, for a chunked body, ``ChunkedBody`` and the
        response's ``Connection``) allows it, else closed; never awaits."""
        conn = response._conn
        chunked = response._chunked
        if chunked is not None:
            if (not self._closed and response.done and response._keep_alive
                    and not chunked.extra):
                conn.h11 = h11.Connection(h11.CLIENT)
                conn.received = 0
                for gone in self.idle.put(conn, trio.current_time()):
                    gone.close()
            else:
                conn.close()
            return
        state = conn.h11
        if (not self._closed and reusable(state.our_state.__name__, state.their_state.__name__,
                                          response.done, len(state.trailing_data[0]))):
            try:
                state.start_next_cycle()
            except h11.LocalProtocolError:
                conn.close()
                return
            conn.received = 0
            for gone in self.idle.put(conn, trio.current_time()):
                gone.close()
        else:
            conn.close()

    def close(self) -> None:
        self._closed = True
        for conn in self.idle.drain():
            conn.close()

    # --- one exchange ---------------------------------------------------------------

    async def _connect(self) -> _Conn:
        with trio.move_on_after(self._connect_timeout) as waiting:
            stream = await trio.open_tcp_stream(self._origin.host, self._origin.port)
        if waiting.cancelled_caught:
            raise _Timeout("ConnectTimeout")
        self.opened += 1
        return _Conn(stream)

    async def recv(self, conn: _Conn) -> bytes:
        """One network read (b"" at EOF); only a wait for the socket is under the read
        timeout (no cancel scope when the bytes are already there, as they usually are
        while a reply streams). The checkpoint comes first, as trio's ``recv`` has one."""
        await trio.lowlevel.checkpoint()
        sock = conn.sock
        try:
            data = os.read(sock.fileno(), RECEIVE_SIZE)  # the socket does not block
        except BlockingIOError:
            with trio.move_on_after(self._read_timeout) as waiting:
                data = await sock.recv(RECEIVE_SIZE)
            if waiting.cancelled_caught:
                raise _Timeout("ReadTimeout") from None
        conn.received += len(data)
        return data

    async def receive(self, conn: _Conn) -> None:
        conn.h11.receive_data(await self.recv(conn))

    async def _request(self, conn: _Conn, method: str, path: str,
                       body: bytes | None, headers: Mapping[str, str]) -> H11Response:
        verb, target, head = request_head(
            self._origin, method, path,
            [*self._headers, *headers.items()], None if body is None else len(body))
        state = conn.h11
        data = state.send(h11.Request(method=verb, target=target, headers=head)) or b""
        if body:
            data += state.send(h11.Data(data=body)) or b""
        data += state.send(h11.EndOfMessage()) or b""
        with trio.move_on_after(self._write_timeout) as writing:
            await conn.stream.send_all(data)
        if writing.cancelled_caught:
            raise _Timeout("WriteTimeout")
        while True:
            event = state.next_event()
            if event is h11.NEED_DATA:
                await self.receive(conn)
            elif isinstance(event, h11.Response):
                headers = response_headers(event.headers)
                if state.their_state is h11.SEND_BODY and "transfer-encoding" in headers:
                    # h11 accepted the framing, so it is chunked: decoded by ChunkedBody
                    # from here, starting with what came in with the head.
                    chunked = ChunkedBody()
                    first = chunked.feed(bytes(state.trailing_data[0]))
                    return H11Response(
                        self, conn, event.status_code, headers, chunked=chunked, first=first,
                        keep_alive=keeps_alive(event.http_version,
                                               [value for name, value in event.headers
                                                if name == b"connection"]))
                return H11Response(self, conn, event.status_code, headers)
            elif isinstance(event, h11.InformationalResponse):
                continue
            else:
                raise h11.RemoteProtocolError(f"unexpected {event!r} before the response")

    async def _exchange(self, method: str, path: str, body: bytes | None,
                        headers: Mapping[str, str]) -> H11Response:
        conn = self._take()
        if conn is not None:
            sent = False
            try:
                response = await self._request(conn, method, path, body, headers)
                sent = True
                return response
            except _ERRORS as exc:
                if conn.received:
                    raise
                # The stale keep-alive race: the server closed it as we reused it.
                self.stale_retries += 1
                log.debug("AI upstream: kept-alive connection was closed (%s); "
                          "request %s %s again on a new one", exc, method, path)
            finally:
                if not sent:
                    conn.close()  # failed or cancelled: never back to the pool
        conn = await self._connect()
        sent = False
        try:
            response = await self._request(conn, method, path, body, headers)
            sent = True
            return response
        finally:
            if not sent:
                conn.close()

    @asynccontextmanager
    async def stream(self, method: str, path: str, body: bytes | None,
                     headers: Mapping[str, str]) -> AsyncIterator[H11Response]:
        """One exchange on a pooled connection. Failures of this client (not of the
        caller's code under ``async with``) become ``AiError``s: here for the request,
        in ``_Body`` for the body."""
        with trio.move_on_after(self._pool_timeout) as waiting:
            await self._slots.acquire()
        if waiting.cancelled_caught:
            raise _transport_error(_Timeout("PoolTimeout"))
        try:
            try:
                response = await self._exchange(method, path, body, headers)
            except _FAILURES as exc:
                raise _transport_error(exc) from None
            try:
                yield response
            finally:
                self._release(response)
        finally:
            self._slots.release()

    def stream_post(self, path: str, body: bytes, headers: Mapping[str, str]
                    ) -> AbstractAsyncContextManager[H11Response]:
        return self.stream("POST", path, body, headers)

    async def probe(self, path: str) -> bool:
        try:
            async with self.stream("GET", path, None, {}) as response:
                size = 0
                async for piece in response.aiter_raw():
                    size += len(piece)
                    if size > MAX_ERROR_BODY * 16:
                        break  # not read to the end: the connection is closed, not kept
                return response.status_code < 500
        except AiError as exc:
            log.warning("AI pre-warm: %s", exc)
            return False


@asynccontextmanager
async def open_h11_transport(config: AiConfig, connections: int,
                             headers: dict[str, str]) -> AsyncIterator[H11Transport]:
    """The lean client for ``[ai] base_url`` (``http://``), with the API key, closed at exit."""
    headers = dict(headers)
    key = config.resolved_api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    transport = H11Transport(config, connections, headers)
    try:
        yield transport
    finally:
        transport.close()
