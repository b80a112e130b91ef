"""A small WebSocket client on trio streams, for tools that talk to a server from outside.

``customer-service doctor`` uses it to check a deployment end to end, and the
benchmark load generator (``bench/loadgen.py``) shares its handshake code. It
speaks ``ws://`` and ``wss://`` (TLS verified against certifi's CA bundle), sends
and receives text messages, answers the server's pings, and closes cleanly::

    async with open_websocket("wss://chat.example.com/ws/visitor", timeout=5) as ws:
        await ws.send_text('{"type":"ping","id":"x"}')
        with trio.fail_after(5):
            reply = await ws.receive_text()

The frames are the project's own RFC 6455 codec (``wscodec``, client role:
masked frames out, unmasked frames in); the HTTP upgrade is written and checked
by hand (``handshake_request``, ``split_head``, ``check_handshake_response``:
pure functions, no I/O). It imports nothing from ``customer_service.server``.
"""

from __future__ import annotations

import base64
import os
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import trio

from customer_service.errors import (
    ConnectionClosed,
    HandshakeFailed,
    WebSocketError,
    WebSocketTimeout,
)
from customer_service.transport.wscodec import (
    Close,
    FrameDecoder,
    FrameEncoder,
    Ping,
    ProtocolFailure,
    TextMessage,
    accept_key,
)

__all__ = [
    "ConnectionClosed",
    "HandshakeFailed",
    "WebSocket",
    "WebSocketError",
    "WebSocketTimeout",
    "WsTarget",
    "check_handshake_response",
    "handshake_request",
    "new_key",
    "open_websocket",
    "parse_ws_url",
    "split_head",
]

MAX_HEAD = 16384
"""Bytes of HTTP response head accepted before giving up."""
READ_SIZE = 65536
CLOSE_WAIT = 1.0
"""Seconds ``close`` waits for the server's answering close frame."""


# ---- pure parts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WsTarget:
    """Where a ``ws://`` or ``wss://`` URL points."""

    secure: bool
    host: str  # without brackets for IPv6
    port: int
    resource: str  # path plus query string, starting with "/"

    @property
    def default_port(self) -> bool:
        return self.port == (443 if self.secure else 80)


def parse_ws_url(url: str) -> WsTarget:
    """Split a ``ws://`` / ``wss://`` URL; raise ``ValueError`` for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {url!r} ({exc})") from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"a WebSocket URL starts with ws:// or wss://, not {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    secure = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WsTarget(secure, parts.hostname, port or (443 if secure else 80), resource)


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _host_header(host: str, port: int | None) -> str:
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def handshake_request(host: str, port: int | None, target: str, key: str,
                      headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The HTTP/1.1 upgrade request for ``target`` (path plus query string).

    ``port`` goes into the ``Host`` header; ``None`` leaves it out (the scheme's
    default port, which is how browsers send it). ``headers`` are extra
    (name, value) pairs.
    """
    if not target.startswith("/"):
        raise ValueError("target must start with '/'")
    if any(c in target or c in host for c in "\r\n "):
        raise ValueError("no whitespace allowed in host or target")
    extra = ""
    for name, value in headers:
        if any(c in name + value for c in "\r\n") or not re.fullmatch(r"[!-9;-~]+", name):
            raise ValueError(f"invalid header {name!r}")
        extra += f"{name}: {value}\r\n"
    return (f"GET {target} HTTP/1.1\r\n"
            f"Host: {_host_header(host, port)}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"{extra}"
            "\r\n").encode("ascii")


def split_head(buf: bytes | bytearray) -> tuple[bytes, bytes] | None:
    """(response head, bytes after it) once the blank line arrived, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    return bytes(buf[:end]), bytes(buf[end + 4:])


_STATUS_LINE = re.compile(r"(HTTP/1\.[01]) (\d{3})(?: |$)")


def _parse_headers(lines: list[str], *, strict: bool) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            if strict:
                raise HandshakeFailed(f"malformed header line {line[:80]!r}", status=101)
            continue
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    return headers


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def check_handshake_response(head: bytes, key: str) -> None:
    """Raise ``HandshakeFailed`` unless ``head`` is a valid 101 answer to ``key``.

    An answer other than 101 fails with its ``status`` (and whatever headers
    could be read), so the caller can tell a refused upgrade (401, 404) from a
    proxy that did not pass the upgrade on (200, 400, 426).
    """
    lines = head.decode("latin-1").split("\r\n")
    status = _STATUS_LINE.match(lines[0])
    if status is None:
        raise HandshakeFailed(f"not an HTTP/1.1 response: {lines[0][:80]!r}")
    code = int(status.group(2))
    if code != 101:
        raise HandshakeFailed(f"status {code}: {lines[0][:120]!r}", status=code,
                              headers=_parse_headers(lines[1:], strict=False))
    if status.group(1) != "HTTP/1.1":
        raise HandshakeFailed(f"a 101 response must be HTTP/1.1: {lines[0][:80]!r}", status=code)
    headers = _parse_headers(lines[1:], strict=True)
    if "websocket" not in _tokens(headers.get("upgrade", "")):
        raise HandshakeFailed("no 'Upgrade: websocket' in the response", status=code,
                              headers=headers)
    if "upgrade" not in _tokens(headers.get("connection", "")):
        raise HandshakeFailed("no 'Connection: upgrade' in the response", status=code,
                              headers=headers)
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise HandshakeFailed("wrong Sec-WebSocket-Accept", status=code, headers=headers)


# ---- the connection -----------------------------------------------------------------------


class WebSocket:
    """One open client WebSocket; get it from ``open_websocket``.

    ``receive_text`` must not be called from two tasks at once; ``send_text``
    may run alongside it (sends are serialised). Neither has a deadline of its
    own: wrap them in ``trio.fail_after``.
    """

    def __init__(self, stream: trio.abc.Stream, *, buffered: bytes = b"",
                 max_message_bytes: int = 1 << 20) -> None:
        self._stream = stream
        self._encoder = FrameEncoder(role="client")
        self._decoder = FrameDecoder(role="client", max_message_bytes=max_message_bytes)
        self._texts: deque[str] = deque()
        self._send_lock = trio.StrictFIFOLock()
        self._buffered = buffered
        self._close_sent = False
        self.closed: ConnectionClosed | None = None
        """Set once the connection is closed: how it closed."""

    async def send_text(self, text: str) -> None:
        """Send one text message; raise ``ConnectionClosed`` when the socket is closed."""
        if self.closed is not None or self._close_sent:
            raise self.closed or ConnectionClosed(1006, "closed by this side")
        await self._send(self._encoder.encode_text(text))

    async def receive_text(self) -> str:
        """The next text message. Binary messages are skipped; pings are answered.

        Raises ``ConnectionClosed`` when the server closes (or the connection drops).
        """
        while not self._texts:
            if self.closed is not None:
                raise self.closed
            await self._read()
        return self._texts.popleft()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, wait briefly for the server's answer, close the stream.

        Safe to call more than once and under cancellation (the stream is closed
        whatever happens).
        """
        try:
            if self.closed is None and not self._close_sent:
                with trio.move_on_after(CLOSE_WAIT):
                    self._close_sent = True
                    await self._send(self._encoder.encode_close(code, reason))
                    while self.closed is None:
                        await self._read()
        except (WebSocketError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            if self.closed is None:
                self.closed = ConnectionClosed(code, reason)
            await trio.aclose_forcefully(self._stream)

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.closed = self.closed or ConnectionClosed(1006, f"connection lost: {exc}")
                raise self.closed from exc

    async def _read(self) -> None:
        data: bytes | bytearray
        if self._buffered:
            data, self._buffered = self._buffered, b""
        else:
            try:
                data = await self._stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.closed = ConnectionClosed(1006, f"connection lost: {exc}")
                raise self.closed from exc
            if not data:
                self.closed = ConnectionClosed(1006, "the server closed the connection")
                raise self.closed
        try:
            events = self._decoder.feed(data)
        except ProtocolFailure as exc:
            for event in exc.events:
                if type(event) is TextMessage:
                    self._texts.append(event.text)
            self.closed = ConnectionClosed(exc.code, f"protocol error from the server: {exc.reason}")
            if not self._close_sent:
                self._close_sent = True
                with suppress(ConnectionClosed):
                    await self._send(self._encoder.encode_close(exc.code, exc.reason))
            raise self.closed from None
        for event in events:
            if type(event) is TextMessage:
                self._texts.append(event.text)
            elif type(event) is Ping:
                if not self._close_sent:
                    await self._send(self._encoder.encode_pong(event.payload))
            elif type(event) is Close:
                if not self._close_sent:
                    self._close_sent = True
                    with suppress(ConnectionClosed, ValueError):
                        await self._send(self._encoder.encode_close(
                            event.code if event.code != 1005 else None))
                self.closed = ConnectionClosed(event.code, event.reason)


def tls_context() -> ssl.SSLContext:
    """Certificate checks against certifi's CA bundle (the same as the AI client's)."""
    return ssl.create_default_context(cafile=certifi.where())


@asynccontextmanager
async def open_websocket(url: str, *, timeout: float, max_message_bytes: int = 1 << 20,
                         headers: Sequence[tuple[str, str]] = (),
                         ssl_context: ssl.SSLContext | None = None
                         ) -> AsyncIterator[WebSocket]:
    """Connect to ``url`` (``ws://`` or ``wss://``), upgrade, yield the ``WebSocket``,
    close it at exit.

    ``timeout`` bounds the opening (TCP connect, TLS handshake, upgrade) and the
    close. Raises ``ValueError`` for a URL that is not ws(s)://, ``OSError`` when
    the host cannot be resolved or connected to, ``WebSocketTimeout`` past the
    deadline, ``HandshakeFailed`` when the server does not switch protocols and
    ``WebSocketError`` for a failed TLS handshake or a connection lost during it.
    """
    target = parse_ws_url(url)
    where = _host_header(target.host, target.port)
    phase = "connecting"
    stream: trio.abc.Stream | None = None
    rest = b""
    with trio.move_on_after(timeout) as opening:
        try:
            tcp = await trio.open_tcp_stream(target.host, target.port)
            stream = tcp
            if target.secure:
                phase = "TLS handshake"
                tls = trio.SSLStream(tcp, ssl_context or tls_context(),
                                     server_hostname=target.host, https_compatible=True)
                stream = tls
                try:
                    await tls.do_handshake()
                except trio.BrokenResourceError as exc:
                    raise WebSocketError(f"TLS handshake with {where} failed: "
                                         f"{exc.__cause__ or exc}") from exc
            phase = "waiting for the upgrade response"
            key = new_key()
            await stream.send_all(handshake_request(
                target.host, None if target.default_port else target.port, target.resource, key,
                headers))
            buf = bytearray()
            while (parts := split_head(buf)) is None:
                if len(buf) > MAX_HEAD:
                    raise HandshakeFailed(f"response head longer than {MAX_HEAD} bytes")
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    raise WebSocketError(f"{where} closed the connection during the handshake"
                                         + (f" after {len(buf)} bytes" if buf else ""))
                buf += data
            head, rest = parts
            check_handshake_response(head, key)
        except BaseException as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            if isinstance(exc, trio.BrokenResourceError):
                raise WebSocketError(f"connection to {where} lost ({phase}): "
                                     f"{exc.__cause__ or exc}") from exc
            raise
    if opening.cancelled_caught or stream is None:  # the stream is closed already
        raise WebSocketTimeout(f"no answer from {where} within {timeout:g} s ({phase})")
    ws = WebSocket(stream, buffered=rest, max_message_bytes=max_message_bytes)
    try:
        yield ws
    finally:
        with trio.move_on_after(timeout):
            await ws.close()
