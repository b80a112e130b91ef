"""The native transport's WebSocket: a ``Connection`` over a raw trio socket stream.

Frames are encoded and decoded by ``wscodec``. The frames a socket takes without waiting
(``send_nowait``) during one pass of trio's event loop go out together, in one write, at
the end of that pass (``EndOfPass``); other writes go straight to the non-blocking socket
when nothing else is being written (see ``NativeWebSocket``). Every socket reads through
one receive buffer shared by the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

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
HELD_BYTES = 65536
"""Bytes of frames one socket holds for the end of the event loop's pass; past this they are
written at once (memory stays bounded, and a slow reader is noticed while the pass runs)."""
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
_receive_buffer = memoryview(bytearray(READ_SIZE))
"""One receive buffer per process, so sockets need no buffer of their own and no 64 KiB
allocation per read. Safe only because ``_read`` copies a read out of it with no
checkpoint in between (trio's own ``recv_into`` checkpoints after reading, which would let
another connection overwrite the buffer first)."""



class EndOfPass(trio.abc.Instrument):
    """Writes the frames sockets held during one pass of trio's event loop, one write per
    socket, in ``before_io_wait``: after every task that was ready has run, before trio
    polls for I/O. A visitor's ``message`` and ``ack``, or a burst of fan-out to one agent,
    are then one system call (and one wake-up of the reader) instead of one each; no frame
    waits longer than the pass it was sent in.

    One per trio run (``end_of_pass``). Trio drops an instrument whose hook raises, so the
    hook never does. A socket whose write left a rest (or failed) is reported to its
    ``on_unsent`` callback through ``run_sync_soon``: that wakes the I/O wait (whose timeout
    was chosen before this hook ran), and the callback runs where it may start a task.
    """

    __slots__ = ("_spare", "_token", "held")

    def __init__(self) -> None:
        self.held: list[NativeWebSocket] = []
        """Sockets holding frames, in the order they first took one in this pass."""
        self._spare: list[NativeWebSocket] = []
        self._token = trio.lowlevel.current_trio_token()

    def before_io_wait(self, timeout: float) -> None:
        if not self.held:
            return
        held, self.held = self.held, self._spare
        stuck: list[NativeWebSocket] | None = None
        for ws in held:
            try:
                if ws.write_held():
                    stuck = stuck or []
                    stuck.append(ws)
            except Exception:  # a bug; never let trio drop the instrument for it
                log.exception("[%s] writing held frames failed", ws.conn_id)
        held.clear()
        self._spare = held
        if stuck is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(_report_unsent, stuck)


def _report_unsent(sockets: list[NativeWebSocket]) -> None:
    """In trio's ``run_sync_soon`` task: tell the sockets' writers (a raise here would
    crash the run, so it cannot)."""
    for ws in sockets:
        try:
            if ws.on_unsent_callback is not None:
                ws.on_unsent_callback()
        except Exception:
            log.exception("[%s] reporting an unsent rest failed", ws.conn_id)


_END_OF_PASS: trio.lowlevel.RunVar[EndOfPass] = trio.lowlevel.RunVar("cs_end_of_pass")


def end_of_pass() -> EndOfPass:
    """This trio run's ``EndOfPass``, installed the first time it is asked for."""
    try:
        return _END_OF_PASS.get()
    except LookupError:
        instrument = EndOfPass()
        trio.lowlevel.add_instrument(instrument)
        _END_OF_PASS.set(instrument)
        return instrument


class NativeWebSocket:
    """A ``Connection`` over a trio stream, framed by ``wscodec``.

    ``send`` (the session's writer task) and ``receive`` (which answers pings and
    closes) may write at the same time. ``send_nowait`` (almost every chat frame) only
    encodes the frame and holds it; ``EndOfPass`` writes what the socket holds at the end of
    the event loop's pass, in one write, straight to the non-blocking socket: no lock, no
    deadline scope, no trip through the scheduler. Any other write takes the held frames
    first, so frames keep their order. Only when the kernel takes part of a write does the
    rest go through ``send_all`` under ``_send_lock`` and a deadline (for held frames, in
    the task ``on_unsent`` starts), and later writes queue behind that lock, so frames
    never interleave.

    Invariant: frames are held only while a write could go straight to the socket (no
    unsent rest, the lock free); whoever writes next takes them.
    """

    __slots__ = ("_close_sent", "_decoder", "_encoder", "_events", "_failure", "_fd", "_held",
                 "_held_bytes", "_lock", "_pass", "_pending", "_received_close", "_receiving",
                 "_sock", "_stream", "_stream_closed", "_unsent", "_write_failed", "conn_id",
                 "on_unsent_callback", "remote")

    def __init__(self, stream: trio.abc.Stream, remote: str, conn_id: str,
                 max_message_bytes: int, pending: bytes = b"") -> None:
        self.remote = remote
        self.conn_id = conn_id
        self._stream = stream
        self._decoder = FrameDecoder("server", max_message_bytes=max_message_bytes)
        self._encoder = FrameEncoder("server")
        self._lock: trio.StrictFIFOLock | None = None
        """Made the first time a write has to wait (most sockets never need one)."""
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._fd = self._sock.fileno() if self._sock is not None else -1
        self._unsent = b""
        """The rest of a frame ``send_nowait`` could only partly write; goes out first."""
        self._held: list[bytes] | None = None
        """Frames ``send_nowait`` took in this pass of the event loop (None when none)."""
        self._held_bytes = 0
        self._pass = end_of_pass()
        self.on_unsent_callback: Callable[[], None] | None = None
        """Set by ``on_unsent``."""
        self._write_failed = False
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
            self._write_failed = True
            raise ConnectionClosed(1006) from exc

    def _send_lock(self) -> trio.StrictFIFOLock:
        if self._lock is None:
            self._lock = trio.StrictFIFOLock()
        return self._lock

    def _can_write_now(self) -> bool:
        return (self._fd >= 0 and (self._lock is None or not self._lock.locked())
                and not self._unsent)

    def _take_held(self, data: bytes) -> bytes:
        """``data`` after the frames held for the end of the pass (which go first)."""
        held = self._held
        if held is None:
            return data
        self._held = None
        self._held_bytes = 0
        held.append(data)
        return b"".join(held)

    async def _write(self, data: bytes) -> None:
        if self._stream_closed:
            raise ConnectionClosed(1006)
        data = self._take_held(data)
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
        held = self._held
        if held is None:
            self._held = [data]
            self._held_bytes = len(data)
            self._pass.held.append(self)
        else:
            held.append(data)
            self._held_bytes += len(data)
        if self._held_bytes >= HELD_BYTES:
            self._write_rest_later(self._take_held(b""))
        return True

    def _write_rest_later(self, data: bytes) -> None:
        """Write ``data`` now as far as the socket takes it; keep the rest for ``flush``."""
        sent = self._write_now(data)
        if sent < len(data):
            self._unsent = data[sent:]

    def write_held(self) -> bool:
        """At the end of the pass (``EndOfPass``): write the held frames in one write. True
        when they wait for ``flush`` (the kernel took only part of them, or the write
        failed): ``on_unsent``'s callback is then due."""
        if self._held is None:
            return False  # written meanwhile by another write
        data = self._take_held(b"")
        if (self._stream_closed or self._received_close is not None or self._sock is None
                or self._sock.fileno() != self._fd):
            # Nobody to write to; and once the stream is closed its descriptor may be
            # another connection's.
            return False
        try:
            self._write_rest_later(data)
        except ConnectionClosed:
            return True  # flush raises it for the writer
        return bool(self._unsent)

    def on_unsent(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (soon, from trio's ``run_sync_soon``; it must not raise or
        wait) when frames ``send_nowait`` took wait for ``flush``: the kernel took only
        part of them at the end of the pass, or the write failed."""
        self.on_unsent_callback = callback

    @property
    def unsent(self) -> bool:
        return bool(self._unsent)

    async def flush(self) -> None:
        if self._write_failed:
            raise ConnectionClosed(self._received_close or 1006)
        async with self._send_lock():
            await self._flush_unsent()

    async def _flush_unsent(self) -> None:
        """Holding ``_send_lock``: write the rest of a partly written frame (then any frames
        held for the end of the pass, which came after it)."""
        data = self._unsent
        if self._held is not None:
            data += self._take_held(b"")
        if data:
            self._unsent = b""
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
