"""What the visitor and agent socket sessions share: the read loop, deadlines, errors, output.

A session reads frames, hands each typed event to the chat service under the
``message_timeout`` deadline, and turns every ``CustomerServiceError`` into an
error frame here, in one place. Outbound frames (replies and fan-out alike) are
written straight to the socket when nothing is waiting before them; otherwise
they join a bounded backlog drained, in order, by a flush task that exists only
while there is something to flush. An idle socket has no writer task at all.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import trio

from customer_service.core import frames
from customer_service.core.models import Role, format_ts
from customer_service.core.ratelimit import TokenBucket
from customer_service.errors import (
    Busy,
    ConnectionClosed,
    CustomerServiceError,
    DeadlineExceeded,
    ProtocolError,
    RateLimited,
    Unavailable,
)
from customer_service.server.peers import Outbound, Peer
from customer_service.server.service import ChatService
from customer_service.transport.interface import Connection

log = logging.getLogger(__name__)

IN_FLIGHT = 64
"""Frames that may wait in line on one socket (or ``rate_limit_burst``, if more); more are
refused at once (``rate_limited``), so a client that pipelines within its burst never is."""
IN_FLIGHT_BYTES = 256 * 1024
"""Bytes the frames in line may take on one socket (a text may be 64 KiB)."""
HISTORY_ASIDE = 1
"""``history`` frames that may run beside the ordered ones; more wait in line. One socket
holds at most this many database calls plus one, however it floods."""


class Session:
    """What both socket kinds share: the peer, its writer, the read loop and error handling."""

    role = "?"
    admitted: tuple[type, ...] = ()
    """Frame types that pass admission control (``core.admission``) before they queue."""

    __slots__ = (
        "_backlog",
        "_bucket",
        "_flushed",
        "_flushing",
        "_nursery",
        "_open",
        "_reading",
        "_refused_head",
        "_sent",
        "_side_tasks",
        "_strikes",
        "_waiting_bytes",
        "client",
        "config",
        "conn",
        "floor",
        "metrics",
        "peer",
        "service",
    )

    def __init__(self, conn: Connection, service: ChatService, identity: int,
                 client: str = "") -> None:
        self.conn = conn
        self.client = client or conn.remote
        """The client's address (behind a trusted proxy, the one it forwarded), for logs."""
        self.service = service
        self.config = service.config.server
        self.metrics = service.metrics
        self.peer = Peer(self.role, identity, self._deliver, trio.CancelScope(),
                         on_slow=self.metrics.slow_consumers.inc)
        self._backlog: deque[Outbound] | None = None
        """Frames waiting for the socket; made when first needed (an idle socket has none)."""
        self._open = False
        """Until welcome and replay are sent, frames wait in the backlog."""
        self._flushing = False
        self._flushed: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._sent = self.metrics.out_role[self.role]
        self.floor: dict[int, int] = {}
        """Per conversation, the newest seq already sent by replay; the writer skips up to it."""
        self._bucket = TokenBucket(self.config.rate_limit_per_second, self.config.rate_limit_burst)
        self._strikes = 0
        self._side_tasks = 0
        self._reading = trio.CancelScope()
        """Around the read loop: cancelled when the socket cannot be written to any more."""
        self._waiting_bytes = 0
        self._refused_head: tuple[str | None, float] | None = None
        """The id of this socket's first text refused ``busy`` and not yet resent, and when
        to stop waiting for it (see ``_admit``)."""
        conn.on_unsent(self._start_flush)

    # ---- output -------------------------------------------------------------
    def reply(self, frame: Any) -> None:
        self.peer.push((0, 0, frames.encode(frame)))

    def reply_error(self, error: CustomerServiceError, client_id: str | None) -> None:
        self.metrics.errors_sent.labels(error.code).inc()
        self.peer.push((0, 0, frames.error_frame(error, client_id)))

    async def send_now(self, frame: Any) -> None:
        """Send directly, before the writer runs (welcome and replay)."""
        await self.conn.send(frames.encode(frame))
        self.metrics.out_role[self.role].inc()

    def _deliver(self, item: Outbound) -> bool:
        """Write a frame now when nothing waits before it, else queue it (bounded)."""
        conversation_id, seq, text = item
        if seq and seq <= self.floor.get(conversation_id, 0):
            return True
        if self._open and not self._flushing and not self._backlog:
            try:
                taken = self.conn.send_nowait(text)
            except ConnectionClosed:
                self._gone()
                return False
            if taken:
                self._sent.inc()
                if self.conn.unsent:
                    self._start_flush()
                return True
        if self._backlog is None:
            self._backlog = deque()
        elif len(self._backlog) >= self.config.outbound_queue:
            self.peer.slow()
            return False
        self._backlog.append(item)
        if self._open:
            self._start_flush()
        return True

    def _start_flush(self) -> None:
        if self._flushing or self._nursery is None:
            return
        self._flushing = True
        self._flushed = trio.Event()
        self._nursery.start_soon(self._flush)

    async def _flush(self) -> None:
        """Drain the backlog in order, then end (a new one starts when needed)."""
        try:
            await self.conn.flush()
            while self._backlog:
                conversation_id, seq, text = self._backlog.popleft()
                if not self._backlog:
                    self._backlog = None
                if seq and seq <= self.floor.get(conversation_id, 0):
                    continue
                await self.conn.send(text)
                self._sent.inc()
            if self.conn.unsent:  # left by frames written at the end of a pass meanwhile
                await self.conn.flush()
        except ConnectionClosed:
            self._gone()
        finally:
            self._flushing = False
            assert self._flushed is not None  # a flush only runs from _start_flush
            self._flushed.set()

    # ---- input --------------------------------------------------------------
    def parse(self, raw: str | bytes) -> Any:
        raise NotImplementedError

    async def handle(self, frame: Any) -> None:
        raise NotImplementedError

    def admit(self, raw: str | bytes) -> None:
        """Take the frame's token from the socket's bucket, from the very first frame
        (before a visitor's hello too); raise ``RateLimited`` when there is none.

        Past ``rate_limit_strikes`` refusals the session is marked closing (1008): that
        frame is not answered, and the caller stops reading.
        """
        if self._bucket.allow(trio.current_time()):
            return
        self._strikes += 1
        if self._strikes > self.config.rate_limit_strikes:
            log.warning("[%s] %s %s keeps exceeding its rate limit; closing", self.peer.conn_id,
                        self.role, self.peer.identity or "(before hello)")
            self._closing(1008, "rate limit exceeded")
        raise RateLimited("too many frames; slow down", client_id=frames.peek_client_id(raw))

    async def read_loop(self) -> None:
        """Read frames until the peer leaves or is kicked; a stuck frame blocks no other.

        A ping is answered here at once. Every other frame is handled by ``_handle_in_order``,
        one at a time in arrival order (a text, then an accept, then a close must take
        effect in that order), each under its own deadline counted from its arrival, so a
        frame that waited behind a stuck one still gets its answer (or ``timeout``) within
        ``message_timeout``. A ``history`` changes nothing and may run beside them
        (``HISTORY_ASIDE`` at once). Reading never waits for the line (see ``_queue``).
        """
        counter = self.metrics.in_role[self.role]
        # A client within its rate limit's burst is never refused for the line's length;
        # the bytes bound holds whatever the burst (benchmarks lift it).
        send, receive = trio.open_memory_channel[tuple[float, Any, int]](
            max(IN_FLIGHT, self.config.rate_limit_burst))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._handle_in_order, receive)
            with send, self._reading:
                while not self.peer.kicked:
                    try:
                        raw = await self.conn.receive()
                    except ConnectionClosed as exc:
                        self._closing(exc.close_code, "")
                        break
                    counter.inc()
                    arrived = trio.current_time()
                    try:
                        self.admit(raw)
                        frame = self.parse(raw)
                    except ProtocolError as exc:
                        self.reply_error(exc, exc.client_id)
                        continue
                    if isinstance(frame, frames.Ping):
                        self.reply(frames.PongOut(id=frame.id))
                    elif isinstance(frame, self.admitted) and not self._admit(frame, arrived):
                        continue
                    elif isinstance(frame, frames.History) and self._side_tasks < HISTORY_ASIDE:
                        self._side_tasks += 1
                        nursery.start_soon(self._handle_aside, arrived, frame)
                    else:
                        self._queue(send, arrived, frame, len(raw))

    def _admit(self, frame: Any, arrived: float) -> bool:
        """Take the frame on, or answer it ``busy`` now: nothing is read or stored for it,
        and the client resends it (same id) after ``retry_after``.

        Once a text of this socket is refused, the texts behind it are refused too until
        that one comes back, or until twice its ``retry_after`` (plus a second) has passed
        without it (the client gave it up): a place freed in between must not let a later
        text be stored before an earlier one."""
        admission = self.service.admission
        frame_id: str | None = getattr(frame, "id", None)
        head = self._refused_head
        if head is not None and arrived >= head[1]:
            head = self._refused_head = None  # never resent: the client gave it up
        if (head is None or head[0] == frame_id) and admission.try_enter(arrived):
            self._refused_head = None
            return True
        retry_after = admission.retry_after(random.random())
        if head is None:
            self._refused_head = (frame_id, arrived + 2 * retry_after + 1)
        self.reply_error(Busy(f"the server is busy; resend this frame in {retry_after:g} s",
                              retry_after=retry_after), frame_id)
        return False

    def _done(self, frame: Any, arrived: float | None) -> None:
        """An admitted frame is answered (``arrived`` given: a sample of how fast texts are
        acked), or dropped unhandled or refused for its own fault (None: no sample)."""
        if isinstance(frame, self.admitted):
            admission = self.service.admission
            if arrived is None:
                admission.cancel()
            else:
                now = trio.current_time()
                admission.leave(now - arrived, now)

    def _queue(self, send: trio.MemorySendChannel[tuple[float, Any, int]], arrived: float,
               frame: Any, size: int) -> None:
        """Put a frame in line, or refuse it at once when the line is full (``IN_FLIGHT``
        frames or ``IN_FLIGHT_BYTES``): reading never waits, so a ping behind a stuck
        line is still answered, and a frame's deadline counts from its real arrival."""
        if self._waiting_bytes + size <= IN_FLIGHT_BYTES:
            try:
                send.send_nowait((arrived, frame, size))
            except trio.WouldBlock:
                pass
            else:
                self._waiting_bytes += size
                return
        self._done(frame, None)
        self.reply_error(RateLimited(
            "too many frames wait for the database on this socket; resend this one after "
            "their answers"), getattr(frame, "id", None))

    async def _handle_in_order(self, receive: trio.MemoryReceiveChannel[tuple[float, Any, int]]
                               ) -> None:
        """Handle the queued frames in order, to the last one: frames read before the peer
        closed (or was closed for its rate, or could no longer be written to) still take
        effect, each within its deadline. A kick from elsewhere (a revoked token, shutdown,
        a slow reader) cancels this with the session."""
        async with receive:
            try:
                async for arrived, frame, size in receive:
                    self._waiting_bytes -= size
                    await self._handle_one(arrived, frame)
            finally:  # cancelled (a kick): what is still in line is never handled
                while True:
                    try:
                        _, frame, _ = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    self._done(frame, None)

    async def _handle_aside(self, arrived: float, frame: Any) -> None:
        try:
            await self._handle_one(arrived, frame)
        finally:
            self._side_tasks -= 1

    async def _handle_one(self, arrived: float, frame: Any) -> None:
        """Handle one frame under its deadline; every failure becomes an error frame here."""
        timeout = self.config.message_timeout
        client_id: str | None = getattr(frame, "id", None)
        sampled: float | None = arrived  # admission control's sample; None: says nothing
        with trio.CancelScope(deadline=arrived + timeout) as deadline:
            try:
                await self.handle(frame)
            except ProtocolError as exc:
                if not isinstance(exc, DeadlineExceeded):
                    sampled = None  # the frame's own fault (too long, closed...), not speed
                self.reply_error(exc, exc.client_id or client_id)
            except Unavailable as exc:
                self.metrics.db_errors.inc()
                log.warning("[%s] unavailable: %s", self.peer.conn_id, exc)
                self.reply_error(exc, client_id)
            except CustomerServiceError as exc:
                log.exception("[%s] failed handling a frame", self.peer.conn_id)
                self.reply_error(exc, client_id)
            finally:
                self._done(frame, sampled)
        if deadline.cancelled_caught and not self.peer.kicked:
            log.warning("[%s] %s frame missed its %ss deadline", self.peer.conn_id,
                        type(frame).__name__, timeout)
            self.reply_error(DeadlineExceeded(
                f"not handled within {timeout:g} s; resend it with the same id (a message "
                "that was stored meanwhile is acked, not stored twice)"), client_id)

    async def run(self, start: Callable[[], Awaitable[None]]) -> None:
        """Run the session until the peer leaves or is kicked; then close the socket."""
        self.metrics.open_role[self.role].inc()
        hub = self.service.hub
        hub.track(self.peer)
        try:
            try:
                with self.peer.scope:
                    await start()
                if not self.peer.scope.cancel_called:
                    async with trio.open_nursery() as nursery:
                        # From here a kick cancels the nursery: one cancel scope per
                        # socket instead of two (each costs memory on every idle socket).
                        self.peer.scope = nursery.cancel_scope
                        self._nursery = nursery
                        self._open = True
                        if self._backlog:
                            self._start_flush()
                        nursery.start_soon(self.watch)
                        await self.read_loop()
                        with trio.move_on_after(1):
                            while self._flushing or (self._backlog and not self.peer.kicked):
                                self._start_flush()
                                assert self._flushed is not None  # set by _start_flush
                                await self._flushed.wait()
                        nursery.cancel_scope.cancel()
                    self._nursery = None  # closed: no flush starts any more
            except ConnectionClosed as exc:
                log.debug("[%s] peer closed (%s)", self.peer.conn_id, exc.close_code)
                self._closing(exc.close_code, "")
            except trio.TooSlowError:
                log.info("[%s] %s did not complete its start in time", self.peer.conn_id,
                         self.role)
                self._closing(1008, "no hello in time")
            except CustomerServiceError as exc:
                log.warning("[%s] could not start the session: %s", self.peer.conn_id, exc)
                self._closing(1011, "unavailable; reconnect later")
            except Exception:
                log.exception("[%s] session failed", self.peer.conn_id)
                self._closing(1011, "internal error")
        finally:
            hub.untrack(self.peer)
            if hub.draining and self.peer.close_code == 1000:
                self.peer.close_code = 1001
            self.metrics.open_role[self.role].dec()
            await self.leave()
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                if self.peer.close_code not in (1005, 1006):
                    if self.peer.farewell:
                        with suppress(ConnectionClosed):
                            await self.conn.send(self.peer.farewell)
                    await self.conn.close(self.peer.close_code, self.peer.close_reason)

    async def acked_before(self, role: Role, sender_id: int, client_id: str) -> bool:
        """A resend of a message stored earlier: ack it again with its original seq.

        Checked only where a fresh message would be refused or would change state (the
        conversation was closed meanwhile), so the common path costs no extra query.
        """
        earlier = await self.service.store.find_message(role, sender_id, client_id)
        if earlier is None:
            return False
        self.reply(frames.AckOut(id=client_id, seq=earlier.seq, ts=format_ts(earlier.created_at)))
        return True

    def _gone(self) -> None:
        """The socket can no longer be written to: stop reading and sending, but let the
        frames already read take effect (``_handle_in_order`` drains them)."""
        self._closing(1006, "gone")
        self._reading.cancel()

    def _closing(self, code: int, reason: str) -> None:
        if not self.peer.kicked:
            self.peer.kicked = True
            self.peer.close_code = code
            self.peer.close_reason = reason

    async def leave(self) -> None:
        """Unregister from the hub (sessions add their own goodbyes)."""

    async def watch(self) -> None:
        """Background checks for as long as the session runs (none by default)."""
