"""The native transport's WebSocket: a ``Connection`` over a raw trio socket stream.

Frames are encoded and decoded by ``wscodec``; writes go straight to the non-blocking
socket when nothing else is being written (see ``NativeWebSocket``), and every socket
reads through one receive buffer shared by the process.
"""

from __future__ import annotations

import contextlib
import logging
import os

import trio

from customer_service.errors import ConnectionClosed
from customer_service.transport.wscodec import (
    BinaryMessage,
    Close,
    Event,
    FrameDecoder,
    FrameEncoder,
    Ping,
    ProtocolFailure,
    TextMessage,
)

log = logging.getLogger(__name__)

READ_SIZE = 65536
WRITE_TIMEOUT = 30.0
"""Seconds one write may block on a peer that does not read."""
CLOSE_WAIT = 1.0
"""Seconds ``NativeWebSocket.close`` waits for the peer's close frame."""
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
_receive_buffer = memoryview(bytearray(READ_SIZE))
"""One receive buffer per process, so sockets need no buffer of their own and no 64 KiB
allocation per read. Safe only because ``_read`` copies a read out of it with no
checkpoint in between (trio's own ``recv_into`` checkpoints after reading, which would let
another connection overwrite the buffer first)."""



class NativeWebSocket:
    """A ``Connection`` over a trio stream, framed by ``wscodec``.

    ``send`` (the session's writer task) and ``receive`` (which answers pings and
    closes) may write at the same time. A write first goes straight to the
    non-blocking socket when no other write is under way: no lock, no deadline
    scope, no trip through the scheduler, which is what almost every chat frame
    takes. Only when the kernel takes part of it does the rest go through
    ``send_all`` under ``_send_lock`` and a deadline, and later writes queue
    behind that lock, so frames never interleave.
    """

    __slots__ = ("_close_sent", "_decoder", "_encoder", "_events", "_failure", "_fd", "_lock",
                 "_pending", "_received_close", "_receiving", "_stream", "_stream_closed",
                 "_unsent", "conn_id", "remote")

    def __init__(self, stream: trio.abc.Stream, remote: str, conn_id: str,
                 max_message_bytes: int, pending: bytes = b"") -> None:
        self.remote = remote
        self.conn_id = conn_id
        self._stream = stream
        self._decoder = FrameDecoder("server", max_message_bytes=max_message_bytes)
        self._encoder = FrameEncoder("server")
        self._lock: trio.StrictFIFOLock | None = None
        """Made the first time a write has to wait (most sockets never need one)."""
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._unsent = b""
        """The rest of a frame ``send_nowait`` could only partly write; goes out first."""
        self._events: list[Event] = []
        self._pending = pending
        self._failure: ProtocolFailure | None = None
        self._received_close: int | None = None
        """Set once the peer's side is over: its close code, or 1006 for EOF/broken."""
        self._close_sent = False
        self._receiving = False
        self._stream_closed = False

    def _write_now(self, data: bytes) -> int:
        """Write as much of ``data`` as the socket takes without waiting."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._received_close = self._received_close or 1006
            raise ConnectionClosed(1006) from exc

    def _send_lock(self) -> trio.StrictFIFOLock:
        if self._lock is None:
            self._lock = trio.StrictFIFOLock()
        return self._lock

    def _can_write_now(self) -> bool:
        return (self._fd >= 0 and (self._lock is None or not self._lock.locked())
                and not self._unsent)

    async def _write(self, data: bytes) -> None:
        if self._stream_closed:
            raise ConnectionClosed(1006)
        if self._can_write_now():
            sent = self._write_now(data)
            if sent == len(data):
                return
            lock = self._send_lock()
            lock.acquire_nowait()
            try:
                await self._send_rest(data[sent:])
            finally:
                lock.release()
            return
        async with self._send_lock():
            await self._flush_unsent()
            await self._send_rest(data)

    def send_nowait(self, text: str) -> bool:
        if self._close_sent or self._received_close is not None or self._stream_closed:
            raise ConnectionClosed(self._received_close or 1006)
        if not self._can_write_now():
            return False
        data = self._encoder.encode_text(text)
        sent = self._write_now(data)
        if sent < len(data):
            self._unsent = data[sent:]
        return True

    @property
    def unsent(self) -> bool:
        return bool(self._unsent)

    async def flush(self) -> None:
        async with self._send_lock():
            await self._flush_unsent()

    async def _flush_unsent(self) -> None:
        """Holding ``_send_lock``: write the rest of a partly written frame."""
        if self._unsent:
            data, self._unsent = self._unsent, b""
            await self._send_rest(data)

    async def _send_rest(self, data: bytes) -> None:
        """The slow path, holding ``_send_lock``: wait for the socket to take ``data``."""
        try:
            with trio.fail_after(WRITE_TIMEOUT):
                await self._stream.send_all(data)
        except (*_BROKEN, trio.TooSlowError) as exc:
            self._received_close = self._received_close or 1006
            raise ConnectionClosed(1006) from exc

    async def _send_close(self, code: int | None, reason: str = "") -> None:
        if self._close_sent:
            return
        self._close_sent = True
        try:
            frame = self._encoder.encode_close(code, reason)
        except ValueError:
            frame = self._encoder.encode_close(1000)
        await self._write(frame)

    async def _read(self) -> bytes:
        """One read; b"" at the end of the stream. On a socket it goes through the shared
        buffer: the checkpoint comes before the read (so a busy peer cannot starve the
        others), never between the read and the copy out of the buffer.

        One coroutine, not two: every frame of the stack an idle socket waits in costs
        memory per socket.
        """
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            if self._fd < 0:
                return bytes(await self._stream.receive_some(READ_SIZE))
            await trio.lowlevel.checkpoint()
            while True:
                if self._stream_closed:  # the descriptor may belong to another socket now
                    return b""
                try:
                    size = os.readv(self._fd, [_receive_buffer])
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self._fd)
                    continue
                return bytes(_receive_buffer[:size])
        except (*_BROKEN, OSError):
            return b""

    async def receive(self) -> str | bytes:
        self._receiving = True
        try:
            events = self._events
            while True:
                while events:
                    event = events.pop(0)
                    if isinstance(event, TextMessage):
                        return event.text
                    if isinstance(event, BinaryMessage):
                        return event.data
                    if isinstance(event, Ping):
                        await self._write(self._encoder.encode_pong(event.payload))
                    elif isinstance(event, Close):
                        self._received_close = event.code
                        log.debug("[%s] peer closed with %s", self.conn_id, event.code)
                        with contextlib.suppress(ConnectionClosed):
                            await self._send_close(None if event.code == 1005 else event.code)
                        raise ConnectionClosed(event.code)
                if self._failure is not None:
                    code = self._failure.code
                    self._received_close = code
                    log.info("[%s] protocol failure: %s", self.conn_id, self._failure)
                    with contextlib.suppress(ConnectionClosed):
                        await self._send_close(code, self._failure.reason)
                    raise ConnectionClosed(code)
                if self._received_close is not None:
                    raise ConnectionClosed(self._received_close)
                data = await self._read()
                if not data:
                    self._received_close = 1006
                    raise ConnectionClosed(1006)
                try:
                    events.extend(self._decoder.feed(data))
                except ProtocolFailure as exc:
                    events.extend(exc.events)
                    self._failure = exc
        finally:
            self._receiving = False

    async def send(self, text: str) -> None:
        if self._close_sent or self._received_close is not None:
            raise ConnectionClosed(self._received_close or 1006)
        await self._write(self._encoder.encode_text(text))

    async def close(self, code: int, reason: str = "") -> None:
        """Send a close frame once, wait briefly for the peer's, then close the stream."""
        if self._stream_closed:
            return
        try:
            await self._send_close(code, reason)
            if self._received_close is None and not self._receiving:
                with trio.move_on_after(CLOSE_WAIT):
                    while self._received_close is None:
                        data = await self._read()
                        if not data:
                            break
                        try:
                            if any(isinstance(e, Close) for e in self._decoder.feed(data)):
                                break
                        except ProtocolFailure:
                            break
        except ConnectionClosed:
            pass
        finally:
            self._stream_closed = True
            with trio.CancelScope(shield=True):
                await self._stream.aclose()
