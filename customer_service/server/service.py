"""Chat operations: the core's decisions carried out against the store and the hub.

Socket handlers call these; they neither parse frames nor touch sockets. Every
stored message goes through the group committer, whose writer calls
``on_committed`` in commit order, so fan-out follows ``seq`` order.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec
import trio

from customer_service.config import Config
from customer_service.core import assignment, frames
from customer_service.core import conversation as machine
from customer_service.core.admission import TextAdmission
from customer_service.core.bus_events import ConversationEvent, FrameEvent, MessageEvent
from customer_service.core.models import (
    Agent,
    AppendResult,
    Contact,
    Conversation,
    ConversationStatus,
    NewMessage,
    Role,
    StoredMessage,
    Visitor,
    format_ts,
)
from customer_service.errors import Conflict, NotFound, ProtocolError
from customer_service.server.availability import Availability
from customer_service.server.blocks import BlockGuard
from customer_service.server.hub import Hub
from customer_service.server.metrics import Metrics
from customer_service.server.visitor_context import ContextRecorder
from customer_service.storage import Store
from customer_service.storage.committer import GroupCommitter

if TYPE_CHECKING:
    from customer_service.ai.responder import AiResponder
    from customer_service.server.assigner import Assigner

log = logging.getLogger(__name__)

AFTER_TRANSITION_DEADLINE = 5.0
"""Seconds to record and announce a stored state change, whatever the caller's deadline."""


class KeyedLock:
    """One lock per key, existing only while somebody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[trio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (trio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


def utc_now() -> datetime:
    return datetime.now(UTC)


def contact_info(contact: Contact | None) -> frames.ContactInfo | None:
    """What agents see of a conversation's contact (its profile block)."""
    if contact is None:
        return None
    return frames.ContactInfo(
        id=contact.id, external_id=contact.external_id, name=contact.name,
        email=contact.email, phone=contact.phone, tags=list(contact.tags),
        attributes=dict(contact.attributes), unsubscribed=contact.unsubscribed)


class ChatService:
    def __init__(self, config: Config, store: Store, hub: Hub, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.admission = TextAdmission(config.server.admission_latency)
        """How many visitor texts are taken on at once (``core.admission``)."""
        metrics.admission_limit.set_function(lambda: self.admission.limit)
        metrics.texts_in_flight.set_function(lambda: self.admission.in_flight)
        self.committer: GroupCommitter | None = None
        self.ai: AiResponder | None = None
        self.assigner: Assigner | None = None
        """Auto-assignment's task (``open_server`` sets it)."""
        self.blocks = BlockGuard(store, hub, config.server.message_timeout)
        """The blocked visitors and networks (``open_server`` keeps them loaded)."""
        self.clock: Callable[[], datetime] = utc_now
        """The time business hours are judged by (tests give the server a fixed one)."""
        self.availability = Availability(self)
        """Online, away or closed (``server/availability.py``)."""
        self.context = ContextRecorder(store, config.server.message_timeout)
        """Visitor context waiting to be written (``open_server`` runs its writer)."""
        self._transitions = KeyedLock()
        """State changes of one conversation (accept, transfer, close, reopen) happen one at
        a time; different conversations change in parallel."""

    # ---- state ---------------------------------------------------------------
    async def conversation(self, conversation_id: int) -> Conversation:
        cache = self.hub.conversations
        cached = cache.get(conversation_id)
        if cached is not None:
            return cached
        stamp = cache.stamp()
        found = await self.store.get_conversation(conversation_id)
        if found is None:
            raise NotFound(f"no conversation {conversation_id}")
        cache.put_loaded(found, stamp)
        return found

    async def transition(self, conversation_id: int,
                         decide: machine.Decision, actor: Agent | None) -> Conversation:
        """Apply a state-machine decision, store it, then record and announce it.

        The store only applies it when the stored state is still the one decided on
        (compare-and-set); when another instance changed it meanwhile, the decision is
        made again once on the fresh state. Once stored, the system note and the
        announcement are completed even if the caller's deadline passes (shielded,
        bounded), so a change is never left half-done.
        """
        async with self._transitions.hold(conversation_id):
            current = await self.conversation(conversation_id)
            for attempt in range(2):
                try:
                    change = decide(current)
                except ProtocolError:
                    # Refused on what this instance knows: read it once more, as it may
                    # have changed behind the cache (the CLI gave a disabled agent's
                    # conversations back to the queue; a bus event was lost).
                    fresh = None if attempt else await self.store.get_conversation(
                        conversation_id)
                    if fresh is None or (fresh.status, fresh.assigned_to) == (
                            current.status, current.assigned_to):
                        raise
                    self.hub.conversations.put(fresh)
                    current = fresh
                    continue
                if change.status == current.status and change.assigned_to == current.assigned_to:
                    return current
                try:
                    updated = await self.store.set_conversation_state(
                        conversation_id, change.status, change.assigned_to,
                        expected=(current.status, current.assigned_to))
                    break
                except Conflict:
                    fresh = await self.store.get_conversation(conversation_id)
                    if fresh is None or attempt:
                        raise
                    self.hub.conversations.put(fresh)
                    current = fresh
            self.hub.conversations.put(updated)
        with trio.CancelScope(shield=True), trio.move_on_after(AFTER_TRANSITION_DEADLINE):
            return await self._after_transition(conversation_id, current, updated, change, actor)
        return updated

    async def _after_transition(self, conversation_id: int, current: Conversation,
                                updated: Conversation, change: machine.Transition,
                                actor: Agent | None) -> Conversation:
        log.info("[conv %s] %s → %s (assigned to %s) by %s", conversation_id, current.status,
                 updated.status, updated.assigned_to, actor.username if actor else "visitor")
        if self.ai is not None and updated.assigned_to is not None:
            await self.ai.stop(conversation_id, "an agent took over")
        if change.note:
            await self.post(NewMessage(conversation_id, Role.SYSTEM, None, "system", change.note))
            updated = await self.conversation(conversation_id)
        await self.announce(updated, before=current, changed=True)
        return updated

    async def assign_waiting(self, conversation_id: int, agent: Agent,
                             capacity: int) -> Conversation | None:
        """Auto-assignment (``server.assigner``): give a waiting conversation to ``agent``
        only while it still waits and the agent has room (the store's compare-and-set),
        then record and announce it as an accept is (system line, AI stopped, the
        ``conversation`` event). None when either changed meanwhile."""
        async with self._transitions.hold(conversation_id):
            updated = await self.store.assign_waiting(conversation_id, agent.id, capacity)
            if updated is None:
                self.hub.conversations.forget(conversation_id)
                return None
            self.hub.conversations.put(updated)
        before = replace(updated, status=ConversationStatus.OPEN, assigned_to=None)
        change = assignment.assigned(agent.id, agent.name)
        with trio.CancelScope(shield=True), trio.move_on_after(AFTER_TRANSITION_DEADLINE):
            return await self._after_transition(conversation_id, before, updated, change, agent)
        return updated

    # ---- messages ------------------------------------------------------------
    async def post(self, message: NewMessage) -> AppendResult:
        """Commit one message (batched with others); fan-out happens before this returns."""
        assert self.committer is not None, "post() before the committer was opened"
        return await self.committer.append(message)

    def on_committed(self, results: Sequence[AppendResult]) -> None:
        """Called by the committer's writer after each batch, in commit order.

        AI replies start here too, not in the socket handler: a visitor message whose
        handler missed its deadline after the commit is answered all the same (its
        resend is a duplicate and starts nothing). Only the instance that committed a
        message starts its reply, so each visitor message is answered once.
        """
        self.metrics.commit_batch.observe(len(results))
        stored = 0
        cache = self.hub.conversations
        for result in results:
            if result.duplicate:
                continue
            stored += 1
            message = result.message
            conversation = cache.get(message.conversation_id)
            if conversation is not None and conversation.assigned_to != result.assigned_to:
                # Another instance changed it and we missed the news: read it again later.
                cache.forget(message.conversation_id)
                conversation = None
            elif conversation is not None and message.seq > conversation.last_seq:
                conversation = conversation.with_last_seq(message.seq)
                cache.put(conversation)
            self.hub.message(MessageEvent(message.conversation_id, message.seq,
                                          result.assigned_to, True,
                                          frames.encode(frames.message_out(message))))
            if self.ai is not None and message.sender_role is Role.VISITOR:
                if conversation is not None:
                    self.ai.visitor_wrote(conversation)
                else:
                    self.ai.visitor_wrote_in(message.conversation_id)
        self.metrics.messages_stored.inc(stored)

    def to_conversation(self, conversation: Conversation, text: str, *, visitor: bool = True,
                        agents: bool = True, except_agent: int | None = None) -> None:
        """Send a transient frame (typing, read, AI delta) to whoever follows the
        conversation, on every instance."""
        self.hub.frame(FrameEvent(conversation.id, conversation.assigned_to, True, text,
                                  visitor, agents, except_agent or 0))

    def to_conversation_id(self, conversation_id: int, text: str) -> None:
        """``to_conversation`` by id: routed by the cached state, or to the waiting queue's
        followers when the conversation is not cached."""
        conversation = self.hub.conversations.get(conversation_id)
        if conversation is not None:
            self.to_conversation(conversation, text)
        else:
            self.hub.frame(FrameEvent(conversation_id, None, False, text, True, True, 0))

    def ai_status(self) -> str:
        """``off`` when no AI answers; else the client's ``ok`` or ``degraded``."""
        return self.ai.status if self.ai is not None else "off"

    # ---- conversation events -----------------------------------------------
    def conversation_info(self, conversation: Conversation, visitor: Visitor | None,
                          last: StoredMessage | None = None,
                          contact: frames.ContactInfo | msgspec.UnsetType | None = msgspec.UNSET,
                          labels: Sequence[str] = ()) -> frames.ConversationInfo:
        visitor_info = frames.VisitorInfo(
            id=conversation.visitor_id,
            name=visitor.name if visitor else "",
            email=visitor.email if visitor else "",
            page=visitor.page if visitor else "",
            online=self.hub.visitor_online(conversation.id),
        )
        return frames.ConversationInfo(
            conversation_id=conversation.id,
            status=str(conversation.status),
            assigned_to=conversation.assigned_to,
            visitor=visitor_info,
            last_seq=conversation.last_seq,
            unread=conversation.unread,
            needs_agent=conversation.needs_agent,
            ai_streaming=self.ai is not None and self.ai.streaming(conversation.id),
            updated_at=format_ts(conversation.updated_at),
            last_message=frames.message_out(last) if last else None,
            contact=contact,
            labels=list(labels),
            left_email=conversation.left_email,
        )

    async def announce(self, conversation: Conversation, visitor: Visitor | None = None,
                       before: Conversation | None = None, *, changed: bool = False,
                       local_only: bool = False) -> None:
        """Tell the agents it concerns what a conversation looks like now (``before``: its
        state before a change, so agents leaving or losing it hear of it too; ``changed``:
        its state changed, so other instances drop their cached copy; ``local_only``: for
        this instance's agents only, after a resynchronisation)."""
        was_assigned_to = before.assigned_to if before is not None else None
        was_waiting = before is not None and before.assigned_to is None
        if not self.hub.wants_conversation_event(conversation.assigned_to, was_assigned_to,
                                                 was_waiting, conversation.id,
                                                 local_only=local_only):
            return
        if visitor is None:
            visitor = await self.store.get_visitor(conversation.visitor_id)
        contact, labels = await self.store.conversation_extras(conversation.id)
        info = self.conversation_info(conversation, visitor, contact=contact_info(contact),
                                      labels=labels)
        self.hub.conversation_event(ConversationEvent(
            conversation.id, conversation.assigned_to, was_assigned_to, was_waiting, changed,
            frames.encode(frames.ConversationOut(conversation=info))), local_only=local_only)
