"""The ``Connection`` (``transport.interface``) over an accepted ASGI WebSocket: what
sessions get when hypercorn serves the app (``[server] transport = "hypercorn"``)."""

from __future__ import annotations

from hypercorn.utils import UnexpectedMessageError
from wsproto.utilities import LocalProtocolError

from customer_service.errors import ConnectionClosed
from customer_service.transport.interface import Receive, Scope, Send


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
