"""The visitor and agent socket sessions.

A session reads frames, hands each typed event to the chat service under the
``message_timeout`` deadline, and turns every ``CustomerServiceError`` into an
error frame here, in one place. Outbound frames (replies and fan-out alike) are
written straight to the socket when nothing is waiting before them; otherwise
they join a bounded backlog drained, in order, by a flush task that exists only
while there is something to flush. An idle socket has no writer task at all.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from customer_service import auth
from customer_service.core import conversation as machine
from customer_service.core import frames
from customer_service.core.models import (
    Agent,
    ConversationStatus,
    ConversationSummary,
    NewMessage,
    Role,
    Visitor,
    format_ts,
    utc_now,
)
from customer_service.core.ratelimit import TokenBucket
from customer_service.errors import (
    BadRequest,
    CustomerServiceError,
    DeadlineExceeded,
    NotFound,
    ProtocolError,
    RateLimited,
    Unavailable,
)
from customer_service.server.hub import Outbound, Peer
from customer_service.server.service import ChatService, message_frame
from customer_service.server.transport import Connection, ConnectionClosed

log = logging.getLogger(__name__)

REPLAY_PAGE = 500
WELCOME_MINE = 200
WELCOME_WAITING = 200
WELCOME_RECENT = 50
TOKEN_RECHECK_SECONDS = 30.0


class Session:
    """What both socket kinds share: the peer, its writer, the read loop and error handling."""

    role = "?"

    __slots__ = ("_backlog", "_bucket", "_flushed", "_flushing", "_nursery", "_open", "_sent",
                 "_strikes", "config", "conn", "floor", "metrics", "peer", "service")

    def __init__(self, conn: Connection, service: ChatService, identity: int) -> None:
        self.conn = conn
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
                self.peer.kick(1006, "gone")
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
        except ConnectionClosed:
            self.peer.kick(1006, "gone")
        finally:
            self._flushing = False
            assert self._flushed is not None  # a flush only runs from _start_flush
            self._flushed.set()

    # ---- input --------------------------------------------------------------
    def parse(self, raw: str | bytes) -> Any:
        raise NotImplementedError

    async def handle(self, frame: Any) -> None:
        raise NotImplementedError

    def _rate_limited(self) -> bool:
        if self._bucket.allow(trio.current_time()):
            return False
        self._strikes += 1
        if self._strikes > self.config.rate_limit_strikes:
            log.warning("[%s] %s %s keeps exceeding its rate limit; closing", self.peer.conn_id,
                        self.role, self.peer.identity)
            self._closing(1008, "rate limit exceeded")
        return True

    async def read_loop(self) -> None:
        counter = self.metrics.in_role[self.role]
        timeout = self.config.message_timeout
        while True:
            try:
                raw = await self.conn.receive()
            except ConnectionClosed as exc:
                self._closing(exc.close_code, "")
                return
            counter.inc()
            client_id: str | None = None
            with trio.move_on_after(timeout) as deadline:
                try:
                    if self._rate_limited():
                        raise RateLimited("too many frames; slow down",
                                          client_id=frames.peek_client_id(raw))
                    frame = self.parse(raw)
                    client_id = getattr(frame, "id", None)
                    await self.handle(frame)
                except ProtocolError as exc:
                    self.reply_error(exc, exc.client_id or client_id)
                except Unavailable as exc:
                    self.metrics.db_errors.inc()
                    log.warning("[%s] unavailable: %s", self.peer.conn_id, exc)
                    self.reply_error(exc, client_id)
                except CustomerServiceError as exc:
                    log.exception("[%s] failed handling a frame", self.peer.conn_id)
                    self.reply_error(exc, client_id)
            if self.peer.kicked:
                return
            if deadline.cancelled_caught:
                log.warning("[%s] frame handling missed its %ss deadline", self.peer.conn_id,
                            timeout)
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

    def _closing(self, code: int, reason: str) -> None:
        if not self.peer.kicked:
            self.peer.kicked = True
            self.peer.close_code = code
            self.peer.close_reason = reason

    async def leave(self) -> None:
        """Unregister from the hub (sessions add their own goodbyes)."""

    async def watch(self) -> None:
        """Background checks for as long as the session runs (none by default)."""


class VisitorSession(Session):
    role = "visitor"

    __slots__ = ("conversation_id", "visitor")

    def __init__(self, conn: Connection, service: ChatService) -> None:
        super().__init__(conn, service, 0)
        self.visitor: Visitor | None = None
        self.conversation_id = 0

    def parse(self, raw: str | bytes) -> Any:
        return frames.parse_visitor_frame(raw)

    async def start(self) -> None:
        """Wait for hello (answering anything else with an error), then welcome and replay."""
        with trio.fail_after(self.config.hello_timeout):
            while True:
                raw = await self.conn.receive()
                self.metrics.in_role[self.role].inc()
                try:
                    frame = frames.parse_visitor_frame(raw)
                    if isinstance(frame, frames.Ping):
                        # A probe (``customer-service doctor``, a proxy's health check) may
                        # ping before saying hello: no visitor is created for it.
                        await self.send_now(frames.PongOut(id=frame.id))
                        continue
                    if not isinstance(frame, frames.Hello):
                        raise BadRequest("the first frame must be hello",
                                         client_id=getattr(frame, "id", None))
                except ProtocolError as exc:
                    self.metrics.errors_sent.labels(exc.code).inc()
                    await self.conn.send(frames.error_frame(exc, exc.client_id))
                    continue
                break
        with trio.move_on_after(self.config.message_timeout) as welcoming:
            await self._welcome(frame)
        if welcoming.cancelled_caught:
            raise Unavailable("the database did not answer in time")

    async def _welcome(self, hello: frames.Hello) -> None:
        store = self.service.store
        visitor = None
        token = hello.visitor_token
        resumed = False
        if token:
            visitor = await store.visitor_for_token(auth.token_hash(token))
            if visitor is None:
                log.info("[%s] unknown visitor token; starting a new visitor", self.peer.conn_id)
            resumed = visitor is not None
        if visitor is None:
            token = auth.new_token()
            visitor = await store.create_visitor(auth.token_hash(token), hello.name or "",
                                                 hello.email or "", hello.page or "")
        elif any(v is not None for v in (hello.name, hello.email, hello.page)):
            visitor = await store.update_visitor(visitor.id, hello.name, hello.email, hello.page)
        assert token is not None
        conversation = await store.current_conversation(visitor.id)
        self.service.hub.conversations.put(conversation)
        self.visitor = visitor
        self.conversation_id = conversation.id
        self.peer.identity = visitor.id
        first = self.service.hub.add_visitor(self.peer, conversation.id)
        log.info("[%s] visitor %s joined conversation %s", self.peer.conn_id, visitor.id,
                 conversation.id)
        await self.send_now(frames.VisitorWelcomeOut(
            visitor_id=visitor.id, visitor_token=token, conversation_id=conversation.id,
            last_seq=conversation.last_seq, status=str(conversation.status)))
        after = min(hello.last_seq or 0, conversation.last_seq) if resumed else 0
        while True:
            page = await store.messages_after(conversation.id, after, REPLAY_PAGE)
            for message in page:
                await self.send_now(message_frame(message))
            if page:
                after = page[-1].seq
            if len(page) < REPLAY_PAGE:
                break
        self.floor[conversation.id] = after
        if conversation.agent_read_seq:
            await self.send_now(frames.ReadOut(seq=conversation.agent_read_seq,
                                               conversation_id=conversation.id, by="agent"))
        if first:
            await self.service.announce(conversation, visitor)

    async def leave(self) -> None:
        if self.visitor is None:
            return
        if self.service.hub.remove_visitor(self.peer):
            log.info("[%s] visitor %s left conversation %s", self.peer.conn_id, self.visitor.id,
                     self.conversation_id)
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                try:
                    conversation = await self.service.conversation(self.conversation_id)
                    await self.service.announce(conversation, self.visitor)
                except CustomerServiceError:
                    log.warning("[%s] could not announce the visitor left", self.peer.conn_id)

    async def handle(self, frame: Any) -> None:
        service = self.service
        assert self.visitor is not None
        match frame:
            case frames.VisitorText(id=client_id, content=content):
                frames.check_content(content, self.config.max_message_chars)
                started = trio.current_time()
                conversation = await service.conversation(self.conversation_id)
                if conversation.status is ConversationStatus.CLOSED:
                    if await self.acked_before(Role.VISITOR, self.visitor.id, client_id):
                        return
                    await service.transition(conversation.id, machine.visitor_writes, None)
                result = await service.post(NewMessage(
                    self.conversation_id, Role.VISITOR, self.visitor.id,
                    self.visitor.name or "Visitor", content, client_id=client_id))
                self.metrics.message_latency.observe(trio.current_time() - started)
                self.reply(frames.AckOut(id=client_id, seq=result.message.seq,
                                         ts=format_ts(result.message.created_at)))
            case frames.VisitorTyping(active=active):
                conversation = await service.conversation(self.conversation_id)
                service.to_conversation(conversation, frames.encode(frames.TypingOut(
                    active=active, conversation_id=conversation.id,
                    sender=frames.Sender(role="visitor", id=self.visitor.id,
                                         name=self.visitor.name))), visitor=False)
            case frames.VisitorRead(seq=seq, id=client_id):
                conversation = await service.store.mark_read(self.conversation_id, True, seq)
                service.hub.conversations.put(conversation)
                service.to_conversation(conversation, frames.encode(frames.ReadOut(
                    seq=conversation.visitor_read_seq, conversation_id=conversation.id,
                    by="visitor")), visitor=False)
                if client_id:
                    self.reply(frames.AckOut(id=client_id))
            case frames.Ping(id=client_id):
                self.reply(frames.PongOut(id=client_id))
            case frames.Hello():
                raise BadRequest("hello was already received on this socket")


class AgentSession(Session):
    role = "agent"

    __slots__ = ("agent", "follows_queue", "token_hash")

    def __init__(self, conn: Connection, service: ChatService, agent: Agent,
                 token_hash: str, follows_queue: bool = True) -> None:
        super().__init__(conn, service, agent.id)
        self.agent = agent
        self.token_hash = token_hash
        self.follows_queue = follows_queue

    async def watch(self) -> None:
        """Close the socket (1008) once its token is revoked or the agent disabled.

        Another process (the CLI, another instance) may do either, so the token is
        looked up again every ``TOKEN_RECHECK_SECONDS`` rather than only at the handshake.
        """
        store = self.service.store
        while True:
            await trio.sleep(TOKEN_RECHECK_SECONDS)
            with trio.move_on_after(self.config.message_timeout):
                try:
                    current = await store.agent_for_token(self.token_hash, utc_now())
                except CustomerServiceError as exc:
                    log.warning("[%s] token check failed, will retry: %s", self.peer.conn_id, exc)
                    continue
                if current is None:
                    log.info("[%s] agent %s: token revoked or agent disabled; closing",
                             self.peer.conn_id, self.agent.username)
                    self.peer.kick(1008, "token revoked or agent disabled")
                    return

    def parse(self, raw: str | bytes) -> Any:
        return frames.parse_agent_frame(raw)

    async def start(self) -> None:
        hub = self.service.hub
        hub.add_agent(self.peer, self.follows_queue)
        log.info("[%s] agent %s (%s) connected%s", self.peer.conn_id, self.agent.id,
                 self.agent.username, "" if self.follows_queue else " (not following the queue)")
        with trio.move_on_after(self.config.message_timeout * 3) as listing:
            summaries = await self._welcome_list()
        if listing.cancelled_caught:
            raise Unavailable("the database did not answer in time")
        infos = []
        for summary in summaries:
            conversation = hub.conversations.get(summary.conversation.id) or summary.conversation
            infos.append(self.service.conversation_info(conversation, summary.visitor,
                                                        summary.last_message))
        await self.send_now(frames.AgentWelcomeOut(
            agent=frames.AgentInfo(id=self.agent.id, username=self.agent.username,
                                   name=self.agent.name),
            conversations=infos))

    async def _welcome_list(self) -> list[ConversationSummary]:
        """Mine (assigned to me), and when following the queue also the waiting ones and
        the most recent others; newest activity first. Older ones: REST or history."""
        store = self.service.store
        found = await store.list_conversations(ConversationStatus.ASSIGNED, WELCOME_MINE,
                                               assigned_to=self.agent.id)
        if self.follows_queue:
            found += await store.list_conversations(ConversationStatus.OPEN, WELCOME_WAITING)
            found += await store.list_conversations(None, WELCOME_RECENT)
        unique = {s.conversation.id: s for s in found}
        return sorted(unique.values(), key=lambda s: (s.conversation.updated_at,
                                                       s.conversation.id), reverse=True)

    async def leave(self) -> None:
        self.service.hub.remove_agent(self.peer)
        log.info("[%s] agent %s disconnected", self.peer.conn_id, self.agent.id)

    async def handle(self, frame: Any) -> None:
        service = self.service
        agent = self.agent
        match frame:
            case frames.AgentText(id=client_id, conversation_id=cid, content=content):
                frames.check_content(content, self.config.max_message_chars)
                started = trio.current_time()
                conversation = await service.conversation(cid)
                try:
                    machine.agent_may_write(conversation, agent)
                except ProtocolError:
                    if await self.acked_before(Role.AGENT, agent.id, client_id):
                        return
                    raise
                result = await service.post(NewMessage(
                    cid, Role.AGENT, agent.id, agent.name, content, client_id=client_id))
                self.metrics.message_latency.observe(trio.current_time() - started)
                self.reply(frames.AckOut(id=client_id, seq=result.message.seq,
                                         ts=format_ts(result.message.created_at)))
            case frames.Accept(id=client_id, conversation_id=cid):
                await service.transition(cid, lambda c: machine.accept(c, agent), agent)
                self.reply(frames.AckOut(id=client_id))
            case frames.Transfer(id=client_id, conversation_id=cid, to_agent=target_ref):
                target = await (service.store.get_agent(target_ref) if isinstance(target_ref, int)
                                else service.store.get_agent_by_username(target_ref))
                if target is None:
                    raise NotFound(f"no agent {target_ref!r}")
                await service.transition(cid, lambda c: machine.transfer(c, agent, target), agent)
                self.reply(frames.AckOut(id=client_id))
            case frames.Close(id=client_id, conversation_id=cid):
                await service.transition(cid, lambda c: machine.close(c, agent), agent)
                self.reply(frames.AckOut(id=client_id))
            case frames.History(id=client_id, conversation_id=cid, before_seq=before,
                                limit=limit):
                await service.conversation(cid)
                messages = await service.store.messages_before(cid, before, limit)
                service.hub.watch(cid, agent.id)
                self.reply(frames.HistoryOut(id=client_id, conversation_id=cid,
                                             messages=[message_frame(m) for m in messages]))
            case frames.AgentTyping(conversation_id=cid, active=active):
                conversation = await service.conversation(cid)
                service.to_conversation(conversation, frames.encode(frames.TypingOut(
                    active=active, conversation_id=cid,
                    sender=frames.Sender(role="agent", id=agent.id, name=agent.name))),
                    except_agent=agent.id)
            case frames.AgentRead(conversation_id=cid, seq=seq, id=client_id):
                await service.conversation(cid)
                conversation = await service.store.mark_read(cid, False, seq)
                service.hub.conversations.put(conversation)
                service.to_conversation(conversation, frames.encode(frames.ReadOut(
                    seq=conversation.agent_read_seq, conversation_id=cid, by="agent")),
                    except_agent=agent.id)
                if client_id:
                    self.reply(frames.AckOut(id=client_id))
            case frames.Ping(id=client_id):
                self.reply(frames.PongOut(id=client_id))
