"""The connection interface the socket handlers use, and its ASGI implementation.

Handlers only ``receive`` a frame, ``send`` a frame and ``close`` with a code,
so the transport under them (hypercorn's ASGI WebSocket today, a trio-native
codec later) can change without touching routing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from hypercorn.utils import UnexpectedMessageError
from wsproto.utilities import LocalProtocolError

from customer_service.errors import CustomerServiceError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ConnectionClosed(CustomerServiceError):
    """The peer went away; ``code`` is the close code it gave (1006 when none)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"connection closed ({code})")
        self.close_code = code


class Connection(Protocol):
    remote: str

    async def receive(self) -> str | bytes:
        """The next message; raise ``ConnectionClosed`` when the peer is gone."""

    async def send(self, text: str) -> None:
        """Send one text frame; raise ``ConnectionClosed`` when the peer is gone."""

    def send_nowait(self, text: str) -> bool:
        """Take one text frame without waiting, when the transport can: True when taken
        (written, or partly written with the rest left to ``flush``), False when the
        caller must ``send`` it. Raise ``ConnectionClosed`` when the peer is gone."""

    @property
    def unsent(self) -> bool:
        """Part of a frame taken by ``send_nowait`` is still waiting for ``flush``."""

    async def flush(self) -> None:
        """Finish writing what ``send_nowait`` took but could not write at once."""

    async def close(self, code: int, reason: str = "") -> None:
        """Close with ``code``; safe to call more than once."""


class AsgiWebSocket:
    """A ``Connection`` over an accepted ASGI WebSocket."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._closed = False
        client = scope.get("client") or ("?", 0)
        self.remote = f"{client[0]}:{client[1]}"

    async def receive(self) -> str | bytes:
        if self._closed:
            raise ConnectionClosed(1006)
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                return str(text)
            return bytes(message.get("bytes") or b"")
        self._closed = True
        raise ConnectionClosed(int(message.get("code", 1006)))

    async def send(self, text: str) -> None:
        if self._closed:
            raise ConnectionClosed(1006)
        try:
            await self._send({"type": "websocket.send", "text": text})
        except (UnexpectedMessageError, LocalProtocolError) as exc:
            self._closed = True
            raise ConnectionClosed(1006) from exc

    def send_nowait(self, text: str) -> bool:
        """ASGI sends are awaitables: never taken without waiting."""
        return False

    @property
    def unsent(self) -> bool:
        return False

    async def flush(self) -> None:
        return

    async def close(self, code: int, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except (UnexpectedMessageError, LocalProtocolError):
            return
