"""A lean WebSocket client for load generation: raw trio sockets + the project's RFC 6455 codec.

trio-websocket as a client tops out near 2k messages/s per process, which makes
it the bottleneck of a benchmark. This client does the HTTP upgrade by hand and
then uses ``customer_service.transport.wscodec`` (client role: masked frames out,
unmasked frames in). Each socket has exactly one reader loop, which hands text
messages to a callback (``on_text``) — no task is spawned per message — and
answers the server's pings itself.

The pure parts (handshake request, response check, open-loop schedule) have no
I/O and are unit-tested in ``tests/unit/test_loadgen.py``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from customer_service.transport.client import (  # noqa: E402
    HandshakeFailed,
    check_handshake_response,
    handshake_request,
    split_head,
)
from customer_service.transport.wscodec import (  # noqa: E402
    Close,
    FrameDecoder,
    FrameEncoder,
    Ping,
    ProtocolFailure,
    TextMessage,
)

MAX_HEAD = 16384  # bytes of HTTP response head accepted before giving up
READ_SIZE = 65536


class Closed(Exception):
    """The WebSocket is closed (close frame, EOF or a protocol failure)."""


# ---- pure parts -------------------------------------------------------------------------

def new_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def open_loop_schedule(rate: float, slots: int, start: float, stop: float,
                       phase: float = 0.0) -> Iterator[tuple[float, int, int]]:
    """The open-loop send schedule: ``(when, slot, k)`` in time order.

    ``rate`` messages per second in total, spread evenly over time and handed to
    ``slots`` senders round-robin, so each slot sends every ``slots / rate`` s and
    consecutive sends (of different slots) are ``1 / rate`` s apart. ``k`` counts
    one slot's messages from 0. Times are ``start + phase + i / rate`` for
    ``i = 0, 1, ...`` while before ``stop``; bounded by construction.
    """
    if rate <= 0 or slots < 1:
        raise ValueError("rate must be positive and slots at least 1")
    step = 1.0 / rate
    i = 0
    while True:
        when = start + phase + i * step
        if when >= stop:
            return
        yield when, i % slots, i // slots
        i += 1


# ---- the client -------------------------------------------------------------------------

class Client:
    """One WebSocket connection. Use ``await Client.connect(...)``, then either
    ``receive_text()`` (set-up phase) or ``run_reader()`` with ``on_text`` set."""

    __slots__ = ("_dec", "_enc", "_pending", "_send_lock", "closed", "on_text", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._enc = FrameEncoder(role="client")
        self._dec = FrameDecoder(role="client")
        self._pending: deque[str] = deque()
        self._send_lock = trio.StrictFIFOLock()
        self.on_text: Callable[[str], None] | None = None
        self.closed = False

    @classmethod
    async def connect(cls, host: str, port: int, target: str) -> Client:
        stream = await trio.open_tcp_stream(host, port)
        try:
            key = new_key()
            await stream.send_all(handshake_request(host, port, target, key))
            buf = bytearray()
            while (parts := split_head(buf)) is None:
                if len(buf) > MAX_HEAD:
                    raise HandshakeFailed("response head too long")
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    raise HandshakeFailed("connection closed during the handshake")
                buf += data
            head, rest = parts
            check_handshake_response(head, key)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        client = cls(stream)
        if rest:
            await client._handle(rest)
        return client

    async def send_text(self, text: str) -> None:
        await self._send(self._enc.encode_text(text))

    async def send_ping(self, payload: bytes = b"") -> None:
        await self._send(self._enc.encode_ping(payload))

    async def _send(self, data: bytes) -> None:
        if self.closed:
            raise Closed("send on a closed socket")
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.closed = True
                raise Closed(str(exc)) from exc

    async def _handle(self, data: bytes | bytearray) -> None:
        """Feed bytes to the decoder; texts go to ``on_text`` (or are queued without one)."""
        try:
            events = self._dec.feed(data)
        except ProtocolFailure as exc:
            self.closed = True
            raise Closed(f"protocol failure from the server: {exc}") from exc
        on_text = self.on_text
        for event in events:
            if type(event) is TextMessage:
                if on_text is not None:
                    on_text(event.text)
                else:
                    self._pending.append(event.text)
            elif type(event) is Ping:
                await self._send(self._enc.encode_pong(event.payload))
            elif type(event) is Close:
                if not self.closed:
                    with contextlib.suppress(Closed):
                        await self._send(self._enc.encode_close(1000))
                self.closed = True
                raise Closed(f"closed by the server: {event.code} {event.reason}")

    async def _read_once(self) -> None:
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.closed = True
            raise Closed(str(exc)) from exc
        if not data:
            self.closed = True
            raise Closed("EOF from the server")
        await self._handle(data)

    async def receive_text(self) -> str:
        """The next text message (set-up phase, before ``run_reader``)."""
        while not self._pending:
            await self._read_once()
        return self._pending.popleft()

    async def run_reader(self) -> None:
        """Hand every text message to ``on_text`` until the socket closes (raises ``Closed``)."""
        on_text = self.on_text
        assert on_text is not None, "set on_text first"
        while self._pending:
            on_text(self._pending.popleft())
        while True:
            await self._read_once()

    async def aclose(self) -> None:
        """Send a close frame (best effort) and close the TCP stream."""
        if not self.closed:
            self.closed = True
            with trio.move_on_after(1):
                try:
                    async with self._send_lock:
                        await self.stream.send_all(self._enc.encode_close(1000))
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                    pass
        await trio.aclose_forcefully(self.stream)
