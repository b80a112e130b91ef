"""A trio-native HTTP/1.1 + WebSocket transport: h11 for HTTP, ``wscodec`` for frames.

Selected with ``[server] transport = "native"``. It serves any ``WebApp``
(``transport.interface``; the server's ``App``, which hypercorn can serve too): plain
requests go to ``WebApp.http`` through a minimal ASGI HTTP adapter, upgrades go to
``WebApp.websocket_route`` and run on a ``NativeWebSocket`` (a ``Connection`` over the
raw trio stream). It imports nothing of the application.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import h11
import msgspec
import trio

from customer_service.errors import CustomerServiceError
from customer_service.transport.interface import (
    CONNECTION_ID,
    MAX_BODY,
    ListenOptions,
    Message,
    Scope,
    SessionRunner,
    WebApp,
)
from customer_service.transport.native_ws import NativeWebSocket
from customer_service.transport.wscodec import (
    HandshakeError,
    accept_headers,
    validate_client_handshake,
)

log = logging.getLogger(__name__)

BACKLOG = 4096
READ_SIZE = 65536
MAX_REQUEST_HEAD = 16 * 1024
"""Largest request head (request line and headers), however its bytes arrive: 431 past it."""
KEEP_ALIVE_TIMEOUT = 30.0
"""Seconds an idle HTTP connection is kept open waiting for its next request."""
REQUEST_TIMEOUT = 10.0
"""Seconds a request (head and body) has to arrive once it has started."""
WRITE_TIMEOUT = 30.0
"""Seconds one write may block on a peer that does not read."""
LINGER_TIMEOUT = 1.0
"""After an error answer, seconds spent reading what the peer still sends before closing, so
that the kernel does not reset the connection (and lose the answer) over unread bytes."""
LINGER_BYTES = 256 * 1024
"""Most bytes read and dropped while lingering."""

_conn_ids = itertools.count(1)
_json = msgspec.json.Encoder()
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
class _Shutdown:
    """Shared by the connections of one ``serve_native``: idle keep-alive waits end at shutdown."""

    def __init__(self) -> None:
        self.started = False
        self.idle: set[trio.CancelScope] = set()

    def begin(self) -> None:
        self.started = True
        for scope in self.idle:
            scope.cancel()


def _remote(stream: trio.SocketStream) -> tuple[str, int]:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return ("?", 0)
    return (str(peer[0]), int(peer[1]))


def _local(stream: trio.SocketStream) -> tuple[str, int]:
    name = stream.socket.getsockname()
    return (str(name[0]), int(name[1]))


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


def _url(address: Any) -> str:
    host, port = str(address[0]), int(address[1])
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_native(app: WebApp, options: ListenOptions, *,
                       shutdown_trigger: Callable[[], Awaitable[None]],
                       task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                       ) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns; report bound URLs like hypercorn.

    At shutdown the listeners close, idle keep-alive connections end, and whatever
    is still running after ``shutdown_timeout`` is cancelled.
    """
    listeners = await open_listeners(options)
    urls = [_url(listener.socket.getsockname()) for listener in listeners]
    shutdown = _Shutdown()
    try:
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(_accept_loop, listener, connections, app, options,
                                         shutdown)
                task_status.started(urls)
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            await _close_listeners(listeners)
            shutdown.begin()
            connections.cancel_scope.deadline = trio.current_time() + options.shutdown_timeout
    finally:
        await _close_listeners(listeners)
    log.info("native transport stopped")


async def open_listeners(options: ListenOptions) -> list[trio.SocketListener]:
    """Listening sockets for ``host:port`` (every address the host resolves to), with
    SO_REUSEPORT when asked, so several worker processes can share the port."""
    if not options.reuse_port:
        return await trio.open_tcp_listeners(options.port, host=options.host or None,
                                             backlog=BACKLOG)
    infos = await trio.socket.getaddrinfo(options.host or None, options.port,
                                          type=trio.socket.SOCK_STREAM,
                                          flags=trio.socket.AI_PASSIVE)
    listeners: list[trio.SocketListener] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = trio.socket.socket(family, kind, proto)
            try:
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
                if family == trio.socket.AF_INET6:
                    sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen(BACKLOG)
            except OSError:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except OSError:
        for listener in listeners:
            await listener.aclose()
        raise
    return listeners


async def _close_listeners(listeners: list[trio.SocketListener]) -> None:
    with trio.CancelScope(shield=True):
        for listener in listeners:
            await listener.aclose()


async def _accept_loop(listener: trio.SocketListener, nursery: trio.Nursery, app: WebApp,
                       options: ListenOptions, shutdown: _Shutdown) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:  # EMFILE and friends: back off instead of spinning
            log.warning("accept failed: %s", exc)
            await trio.sleep(0.1)
            continue
        nursery.start_soon(_connection, stream, app, options, shutdown)


async def _connection(stream: trio.SocketStream, app: WebApp, options: ListenOptions,
                      shutdown: _Shutdown) -> None:
    conn_id = f"n{next(_conn_ids)}"
    try:
        async with stream:
            upgraded = await HttpConnection(stream, app, options, shutdown, conn_id).run()
            if upgraded is not None:
                # The HTTP side (h11 state, request, scope) is garbage by now: a
                # long-lived socket keeps only its session and its codec.
                run_session, ws = upgraded
                del upgraded
                await run_session(ws)
    except (*_BROKEN, trio.TooSlowError) as exc:
        log.debug("[%s] connection ended: %r", conn_id, exc)
    except Exception:
        log.exception("[%s] connection failed", conn_id)


class HttpConnection:
    """One TCP connection: HTTP/1.1 requests with keep-alive, possibly ending in an upgrade."""

    def __init__(self, stream: trio.SocketStream, app: WebApp, options: ListenOptions,
                 shutdown: _Shutdown, conn_id: str) -> None:
        self.stream = stream
        self.app = app
        self.options = options
        self.shutdown = shutdown
        self.conn_id = conn_id
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        self.client = _remote(stream)
        self.server = _local(stream)
        # h11 enforces max_incomplete_event_size only on a head still incomplete in its
        # buffer; a bigger head that arrives whole is counted here: bytes handed to h11
        # so far, and where in them the current request began.
        self._fed = 0
        self._request_start = 0

    def _receive(self, data: bytes) -> None:
        self._fed += len(data)
        self.h11.receive_data(data)

    def _unparsed(self) -> int:
        """Bytes handed to h11 that it has not turned into events yet."""
        return len(self.h11.trailing_data[0])

    def _check_request(self, request: h11.Request) -> None:
        """Refuse what h11 lets through: an oversized head that arrived whole, and a
        request framed two ways (``Content-Length`` and ``Transfer-Encoding``)."""
        if self._fed - self._request_start > MAX_REQUEST_HEAD:  # else it cannot be too big
            head = self._fed - self._unparsed() - self._request_start
            if head > MAX_REQUEST_HEAD:
                raise h11.RemoteProtocolError(
                    f"request head of {head} bytes is larger than {MAX_REQUEST_HEAD}",
                    error_status_hint=431)
        names = {bytes(name) for name, _ in request.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 §6.1: such a message may be an attempt at request smuggling; a
            # server may answer it and must then close the connection.
            raise h11.RemoteProtocolError(
                "a request with both Content-Length and Transfer-Encoding is refused",
                error_status_hint=400)

    async def _next_event(self) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(READ_SIZE)
            self._receive(data)

    async def _write(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            with trio.fail_after(WRITE_TIMEOUT):
                await self.stream.send_all(data)

    async def _wait_request(self) -> Any:
        """The next request head, or None when the peer is idle too long or we stop.

        Waiting for the first byte of a request is idle time (``KEEP_ALIVE_TIMEOUT``,
        cut short by shutdown); once it came the request has ``REQUEST_TIMEOUT``.
        """
        if self.shutdown.started:
            return None
        event = self.h11.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(KEEP_ALIVE_TIMEOUT) as idle:
            self.shutdown.idle.add(idle)
            try:
                data = await self.stream.receive_some(READ_SIZE)
            finally:
                self.shutdown.idle.discard(idle)
        if idle.cancelled_caught:
            return None
        self._receive(data)
        with trio.fail_after(REQUEST_TIMEOUT):
            return await self._next_event()

    async def run(self) -> tuple[SessionRunner, NativeWebSocket] | None:
        """Answer requests until the connection ends or upgrades; an upgrade is returned."""
        while True:
            try:
                event = await self._wait_request()
                if event is None or isinstance(event, h11.ConnectionClosed):
                    return None
                if not isinstance(event, h11.Request):
                    return None
                self._check_request(event)
                if _wants_websocket(event):
                    return await self._upgrade(event)
                keep = await self._http(event)
            except h11.RemoteProtocolError as exc:
                log.info("[%s] bad request from %s: %s", self.conn_id, self.client[0], exc)
                code = "too_large" if exc.error_status_hint == 431 else "bad_request"
                if await self._plain_error(exc.error_status_hint, code, str(exc)):
                    await self._linger()
                return None
            if not keep or self.h11.our_state is not h11.DONE or self.shutdown.started:
                return None
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                return None
            self._request_start = self._fed - self._unparsed()

    async def _linger(self) -> None:
        """After an error answer: end our side, then read and drop what the peer still
        sends for a moment, so that unread bytes do not make the kernel reset the
        connection before the peer has read the answer."""
        try:
            await self.stream.send_eof()
            dropped = 0
            with trio.move_on_after(LINGER_TIMEOUT):
                while dropped < LINGER_BYTES:
                    data = await self.stream.receive_some(READ_SIZE)
                    if not data:
                        break
                    dropped += len(data)
        except _BROKEN:
            pass

    async def _read_body(self) -> tuple[bytes, bool]:
        """The request body (cut just past MAX_BODY) and whether it was read completely."""
        chunks: list[bytes] = []
        size = 0
        if self.h11.they_are_waiting_for_100_continue:
            await self._write(h11.InformationalResponse(status_code=100, headers=[]))
        with trio.fail_after(REQUEST_TIMEOUT):
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                    size += len(event.data)
                    if size > MAX_BODY:
                        return b"".join(chunks), False
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks), True
                else:
                    return b"".join(chunks), False

    def _scope(self, request: h11.Request, kind: str) -> Scope:
        target = bytes(request.target)
        path, _, query = target.partition(b"?")
        return {
            "type": kind, "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method.decode("ascii"),
            "scheme": "ws" if kind == "websocket" else "http",
            "path": path.decode("utf-8", "replace"), "raw_path": path, "query_string": query,
            "root_path": "", "headers": [(bytes(k).lower(), bytes(v)) for k, v in request.headers],
            "client": self.client, "server": self.server, "extensions": {},
            CONNECTION_ID: self.conn_id,
        }

    async def _http(self, request: h11.Request) -> bool:
        """Answer one plain request through ``App.http``; True to keep the connection."""
        body, complete = await self._read_body()
        scope = self._scope(request, "http")
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                parts.append(bytes(message.get("body", b"")))

        await self.app.http(scope, receive, send)
        keep = complete and not self.shutdown.started
        if not keep:
            headers = [(k, v) for k, v in headers if k.lower() != b"connection"]
            headers.append((b"connection", b"close"))
        await self._write(h11.Response(status_code=status, headers=headers,
                                       reason=_reason(status)))
        if request.method != b"HEAD":
            await self._write(h11.Data(data=b"".join(parts)))
        await self._write(h11.EndOfMessage())
        return keep

    async def _plain_error(self, status: int, code: str, message: str,
                           extra: tuple[tuple[str, str], ...] = ()) -> bool:
        """A JSON error answer (the ``App._refuse`` shape) ending the connection; False
        when a response had already begun and none could be sent."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        body = _json.encode({"error": code, "message": message})
        await self._send_json(status, body, extra)
        return True

    async def _send_json(self, status: int, body: bytes,
                         extra: tuple[tuple[str, str], ...] = ()) -> None:
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra
                    if k.lower() != "connection"]
        try:
            await self._write(h11.Response(status_code=status, headers=headers,
                                       reason=_reason(status)))
            await self._write(h11.Data(data=body))
            await self._write(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            log.debug("[%s] could not send %s: %s", self.conn_id, status, exc)

    async def _upgrade(self, request: h11.Request) -> tuple[SessionRunner, NativeWebSocket] | None:
        """Switch protocols: the session to run and its socket, or None once refused."""
        if request.http_version != b"1.1":
            # RFC 6455 §4.1: the opening handshake is an HTTP/1.1 (or later) request.
            log.info("[%s] refused an HTTP/%s WebSocket upgrade", self.conn_id,
                     request.http_version.decode("ascii", "replace"))
            await self._plain_error(400, "bad_request",
                                    "a WebSocket upgrade needs HTTP/1.1, not HTTP/"
                                    + request.http_version.decode("ascii", "replace"))
            return None
        try:
            key = validate_client_handshake(request.headers)
        except HandshakeError as exc:
            log.debug("[%s] bad handshake: %s", self.conn_id, exc)
            error = "upgrade_required" if exc.status == 426 else "bad_request"
            await self._plain_error(exc.status, error, exc.message, exc.headers)
            return None
        scope = self._scope(request, "websocket")
        try:
            run_session = await self.app.websocket_route(scope)
        except CustomerServiceError as exc:
            log.debug("[%s] upgrade of %s refused (%s): %s", self.conn_id, scope["path"],
                     exc.http_status, exc.message)
            await self._send_json(exc.http_status,
                                  _json.encode({"error": exc.code, "message": exc.message}))
            return None
        with trio.fail_after(REQUEST_TIMEOUT):
            event = await self._next_event()  # EndOfMessage, then PAUSED for the switch
            while event is not h11.PAUSED:
                if not isinstance(event, h11.EndOfMessage):
                    await self._plain_error(400, "bad_request", "a WebSocket upgrade has no body")
                    return None
                event = await self._next_event()
        await self._write(h11.InformationalResponse(status_code=101, headers=accept_headers(key),
                                                     reason=b"Switching Protocols"))
        trailing, _ = self.h11.trailing_data
        remote = f"{self.client[0]}:{self.client[1]}"
        ws = NativeWebSocket(self.stream, remote, self.conn_id,
                             self.options.max_frame_bytes, bytes(trailing))
        log.debug("[%s] upgraded %s from %s", self.conn_id, scope["path"], remote)
        return run_session, ws


def _wants_websocket(request: h11.Request) -> bool:
    if request.method != b"GET":
        return False
    return any(name.lower() == b"upgrade" and b"websocket" in value.lower()
               for name, value in request.headers)
