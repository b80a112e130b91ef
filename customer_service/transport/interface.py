"""What a transport serves and what it hands to the application.

The transport layer owns sockets and protocols (HTTP/1.1, RFC 6455) and knows no
application: it serves anything that implements ``WebApp`` (plain requests in the
ASGI shape, WebSocket upgrades routed to a session runner), and gives each session
a ``Connection``. The server's ``App`` implements ``WebApp``; the sessions use only
``Connection``, so either side can change without the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024
"""Largest request body a transport reads and an application accepts."""

CONNECTION_ID = "connection_id"
"""Scope key where a transport may put its id for the TCP connection, so that the
application's log lines about a request (a refused upgrade) name the same connection
as the transport's."""


class Connection(Protocol):
    """An accepted WebSocket, as a session sees it."""

    remote: str

    async def receive(self) -> str | bytes:
        """The next message; raise ``ConnectionClosed`` when the peer is gone."""

    async def send(self, text: str) -> None:
        """Send one text frame; raise ``ConnectionClosed`` when the peer is gone."""

    def send_nowait(self, text: str) -> bool:
        """Take one text frame without waiting, when the transport can: True when taken
        (written, held to be written at the end of the event loop's pass, or partly
        written with the rest left to ``flush``), False when the caller must ``send`` it.
        Raise ``ConnectionClosed`` when the peer is gone."""

    @property
    def unsent(self) -> bool:
        """Part of a frame taken by ``send_nowait`` is still waiting for ``flush``."""

    def on_unsent(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called (without waiting; it must not raise) when frames taken
        by ``send_nowait`` turn out later to wait for ``flush``, which then writes them or
        raises ``ConnectionClosed``."""

    async def flush(self) -> None:
        """Finish writing what ``send_nowait`` took but could not write at once."""

    async def close(self, code: int, reason: str = "") -> None:
        """Close with ``code``; safe to call more than once."""


SessionRunner = Callable[[Connection], Awaitable[None]]
"""Runs one WebSocket session on an accepted connection until it ends."""


class WebApp(Protocol):
    """What a transport serves."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one plain HTTP request (ASGI ``http`` scope)."""

    async def websocket_route(self, scope: Scope) -> SessionRunner:
        """The session for an upgrade request, or raise a ``CustomerServiceError`` whose
        ``http_status``, ``code`` and ``message`` refuse it."""


@dataclass(frozen=True, slots=True)
class ListenOptions:
    host: str
    port: int
    max_frame_bytes: int
    shutdown_timeout: float
    reuse_port: bool = False
    """SO_REUSEPORT: worker processes listen on one port and the kernel spreads
    connections over them."""
