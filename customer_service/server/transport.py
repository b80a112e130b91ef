"""The ``Connection`` (``transport.interface``) over an accepted ASGI WebSocket: what
sessions get when hypercorn serves the app (``[server] transport = "hypercorn"``)."""

from __future__ import annotations

from collections.abc import Callable

import trio
from hypercorn.utils import UnexpectedMessageError
from wsproto.utilities import LocalProtocolError

from customer_service.errors import ConnectionClosed
from customer_service.transport.interface import Receive, Scope, Send

CLOSE_DRAIN_SECONDS = 1.0
"""How long ``close`` reads on, waiting for the client's close reply."""


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

    def on_unsent(self, callback: Callable[[], None]) -> None:
        """``send_nowait`` takes nothing, so nothing is ever left unsent."""

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
        # Hypercorn hands received frames to the app through a bounded queue that nobody
        # reads once the app has returned: a client that sent more than the queue holds
        # (a flood closed for its rate limit) would leave hypercorn's reader waiting
        # forever, and the TCP connection open. Read on until the client's close reply.
        with trio.move_on_after(CLOSE_DRAIN_SECONDS):
            while (await self._receive())["type"] != "websocket.disconnect":
                pass
