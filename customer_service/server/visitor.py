"""The visitor socket: hello, welcome and replay, then text, typing and read marks."""

from __future__ import annotations

import logging
from typing import Any

import trio

from customer_service import auth
from customer_service.core import conversation as machine
from customer_service.core import frames, identity
from customer_service.core.leave_message import check_email
from customer_service.core.models import ConversationStatus, NewMessage, Role, Visitor, format_ts
from customer_service.errors import (
    BadRequest,
    Blocked,
    CustomerServiceError,
    IdentityInvalid,
    ProtocolError,
    Unavailable,
)
from customer_service.server import auto_replies, visitor_context
from customer_service.server.service import ChatService
from customer_service.server.session import Session
from customer_service.transport.interface import Connection

log = logging.getLogger(__name__)

REPLAY_PAGE = 500


class VisitorSession(Session):
    role = "visitor"
    admitted = (frames.VisitorText,)

    __slots__ = ("conversation_id", "lang", "user_agent", "visitor")

    def __init__(self, conn: Connection, service: ChatService, client: str = "",
                 user_agent: str = "") -> None:
        super().__init__(conn, service, 0, client)
        self.peer.address = self.client
        self.visitor: Visitor | None = None
        self.conversation_id = 0
        self.lang: str = service.config.web.default_language
        """The language the visitor's widget shows (``hello``'s ``lang``): auto-replies."""
        self.user_agent = user_agent
        """The upgrade request's ``User-Agent`` (visitor context)."""

    def parse(self, raw: str | bytes) -> Any:
        return frames.parse_visitor_frame(raw)

    async def start(self) -> None:
        """Wait for hello (answering anything else with an error), then welcome and replay."""
        with trio.fail_after(self.config.hello_timeout):
            while True:
                raw = await self.conn.receive()
                self.metrics.in_role[self.role].inc()
                try:
                    self.admit(raw)
                    frame = frames.parse_visitor_frame(raw)
                    if isinstance(frame, frames.Ping):
                        # A probe (``customer-service doctor``, a proxy's health check) may
                        # ping before saying hello: no visitor is created for it.
                        await self.send_now(frames.PongOut(id=frame.id))
                        continue
                    if not isinstance(frame, frames.Hello):
                        raise BadRequest("the first frame must be hello",
                                         client_id=getattr(frame, "id", None))
                    if frame.email:  # a pre-chat form's address: refused before it is stored
                        check_email(frame.email)
                except ProtocolError as exc:
                    if self.peer.kicked:  # past the rate limit's strikes: run() closes (1008)
                        self.peer.scope.cancel()
                        return
                    self.metrics.errors_sent.labels(exc.code).inc()
                    await self.conn.send(frames.error_frame(exc, exc.client_id))
                    continue
                break
            self.lang = auto_replies.language(self.service, frame.lang)
            settings = self.service.config.identity
            try:
                user_id = identity.identify(settings.secret, settings.required, frame.user_id,
                                            frame.user_hash)
            except IdentityInvalid as exc:
                # Refused before anything is stored: no visitor is made, nothing linked.
                log.info("[%s] visitor from %s refused: %s", self.peer.conn_id, self.client,
                         exc.message)
                self.metrics.errors_sent.labels(exc.code).inc()
                await self.conn.send(frames.error_frame(exc))
                self._closing(1008, exc.code)
                self.peer.scope.cancel()
                return
            # A blocked network is refused before anything is read or stored.
            blocked = self.service.blocks.refusal(None, self.client)
            if blocked is not None:
                await self._refuse(blocked)
                return
        with trio.move_on_after(self.config.message_timeout) as welcoming:
            try:
                first = await self._welcome(frame, user_id)
            except Blocked as exc:
                await self._refuse(exc)
                return
        if welcoming.cancelled_caught:
            raise Unavailable("the database did not answer in time")
        visitor_context.record_hello(self.service, self.peer.conn_id, self.conversation_id,
                                     frame, user_agent=self.user_agent,
                                     client=self.client)
        self.user_agent = ""  # recorded: an idle socket keeps no copy
        if first:
            await self._announce_arrival()

    async def _refuse(self, blocked: Blocked) -> None:
        """Tell a blocked visitor why, then close (1008, ``blocked``)."""
        log.info("[%s] visitor from %s refused: blocked", self.peer.conn_id, self.client)
        self.metrics.errors_sent.labels(blocked.code).inc()
        await self.conn.send(frames.error_frame(blocked))
        self._closing(1008, blocked.code)
        self.peer.scope.cancel()

    async def _announce_arrival(self) -> None:
        """Tell the agents a visitor came. Once the welcome is out, a slow database costs
        the agents this event (they see the conversation at their next refresh or change),
        never the visitor their socket."""
        assert self.visitor is not None
        with trio.move_on_after(self.config.message_timeout) as announcing:
            try:
                conversation = await self.service.conversation(self.conversation_id)
                await self.service.announce(conversation, self.visitor)
            except Unavailable as exc:
                log.warning("[%s] could not tell the agents visitor %s came: %s",
                            self.peer.conn_id, self.visitor.id, exc)
        if announcing.cancelled_caught:
            log.warning("[%s] telling the agents visitor %s came missed its deadline",
                        self.peer.conn_id, self.visitor.id)

    async def _welcome(self, hello: frames.Hello, user_id: str | None) -> bool:
        """Welcome and replay; True when this is the visitor's first socket here.

        ``user_id`` (verified) links the visitor to its contact, whose conversation this
        socket then serves, whichever device began it. A token linked to a contact does not
        open that history without the identity: an anonymous hello with it (the user signed
        out on a shared computer) starts a new visitor.
        """
        store = self.service.store
        visitor = None
        token = hello.visitor_token
        resumed = False
        if token:
            visitor = await store.visitor_for_token(auth.token_hash(token))
            if visitor is None:
                log.info("[%s] unknown visitor token; starting a new visitor", self.peer.conn_id)
            elif user_id is None and await store.contact_for_visitor(visitor.id) is not None:
                log.info("[%s] visitor %s belongs to a contact but came without identity; "
                         "starting a new visitor", self.peer.conn_id, visitor.id)
                visitor = None
            resumed = visitor is not None
            if visitor is not None:
                # The block follows the visitor: refused before anything is changed.
                blocked = self.service.blocks.refusal(visitor.id, self.client)
                if blocked is not None:
                    raise blocked
        if visitor is None:
            token = auth.new_token()
            visitor = await store.create_visitor(auth.token_hash(token), hello.name or "",
                                                 hello.email or "", hello.page or "")
        elif any(v is not None for v in (hello.name, hello.email, hello.page)):
            visitor = await store.update_visitor(visitor.id, hello.name, hello.email, hello.page)
        assert token is not None
        if user_id is not None:
            contact, conversation = await store.link_visitor(visitor.id, user_id, hello.name,
                                                             hello.email)
            log.info("[%s] visitor %s identified as contact %s (conversation %s)",
                     self.peer.conn_id, visitor.id, contact.id, conversation.id)
        else:
            conversation = await store.current_conversation(visitor.id)
        self.service.hub.conversations.put(conversation)
        self.visitor = visitor
        self.conversation_id = conversation.id
        self.peer.identity = visitor.id
        hub = self.service.hub
        first = hub.add_visitor(self.peer, conversation.id)
        # Again, now that a block added from here on finds this socket in the hub: one
        # added since the check above (on another instance, say) would otherwise miss it.
        blocked = self.service.blocks.refusal(visitor.id, self.client)
        if blocked is not None:
            raise blocked
        # Messages the hub hands on from here are either in the replay or after it; a
        # conversation new to this instance starts where the replay starts to look.
        hub.sequencer.seed(conversation.id, conversation.last_seq)
        log.info("[%s] visitor %s joined conversation %s from %s", self.peer.conn_id,
                 visitor.id, conversation.id, self.client)
        team = self.service.availability.frame()
        await self.send_now(frames.VisitorWelcomeOut(
            visitor_id=visitor.id, visitor_token=token, conversation_id=conversation.id,
            last_seq=conversation.last_seq, status=str(conversation.status),
            visitor_read_seq=conversation.visitor_read_seq, user_id=user_id,
            availability=team.status, back_at=team.back_at))
        # last_seq counts in the conversation the client holds. An identified visitor may be
        # served another one than before (it was linked to a contact with a history, or to
        # another contact), so its last_seq holds only with the matching conversation_id.
        same = (hello.conversation_id == conversation.id
                if hello.conversation_id is not None or user_id is not None else True)
        after = min(hello.last_seq or 0, conversation.last_seq) if resumed and same else 0
        # A new visitor's new conversation has nothing to replay and nobody else knows it
        # yet; otherwise read on past last_seq: a message stored after the conversation was
        # read above but before this socket joined the hub is only found here (an identified
        # visitor's conversation may be another device's, however new).
        while resumed or user_id is not None or conversation.last_seq:
            page = await store.messages_after(conversation.id, after, REPLAY_PAGE)
            for message in page:
                await self.send_now(frames.message_out(message))
            if page:
                after = page[-1].seq
            if len(page) < REPLAY_PAGE:
                break
        self.floor[conversation.id] = after
        if conversation.agent_read_seq:
            await self.send_now(frames.ReadOut(seq=conversation.agent_read_seq,
                                               conversation_id=conversation.id, by="agent"))
        return first

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
                first = await auto_replies.begins(service, conversation)
                if first:
                    await auto_replies.before_first_message(service, conversation.id, self.lang)
                result = await service.post(NewMessage(
                    self.conversation_id, Role.VISITOR, self.visitor.id,
                    self.visitor.name or "Visitor", content, client_id=client_id))
                if first:
                    await auto_replies.after_first_message(service, conversation.id, self.lang)
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
            case frames.LeaveMessage(id=client_id, email=email):
                await auto_replies.leave_message(service, self.conversation_id, self.visitor,
                                                 email)
                self.reply(frames.AckOut(id=client_id))
            case frames.VisitorPage():
                await visitor_context.record_page(service, self.peer.conn_id,
                                                  self.conversation_id, frame)
                if frame.id:
                    self.reply(frames.AckOut(id=frame.id))
            case frames.Hello():
                raise BadRequest("hello was already received on this socket")
