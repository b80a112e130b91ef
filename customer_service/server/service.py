"""Chat operations: the core's decisions carried out against the store and the hub.

Socket handlers call these; they neither parse frames nor touch sockets. Every
stored message goes through the group committer, whose writer calls
``on_committed`` in commit order, so fan-out follows ``seq`` order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import trio

from customer_service.config import Config
from customer_service.core import conversation as machine
from customer_service.core import frames
from customer_service.core.models import (
    Agent,
    AppendResult,
    Conversation,
    NewMessage,
    Role,
    StoredMessage,
    Visitor,
    format_ts,
)
from customer_service.core.routing import agents_for_conversation
from customer_service.errors import NotFound
from customer_service.server.hub import Hub
from customer_service.server.metrics import Metrics
from customer_service.storage import Store
from customer_service.storage.committer import GroupCommitter

log = logging.getLogger(__name__)


def message_frame(message: StoredMessage) -> frames.MessageOut:
    return frames.MessageOut(
        conversation_id=message.conversation_id,
        seq=message.seq,
        sender=frames.Sender(role=str(message.sender_role), id=message.sender_id,
                             name=message.sender_name),
        content=message.content,
        ts=format_ts(message.created_at),
        stream_id=message.stream_id,
    )


class ChatService:
    def __init__(self, config: Config, store: Store, hub: Hub, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.committer: GroupCommitter | None = None
        self._transitions = trio.Lock()
        """State changes (accept, transfer, close, reopen) are rare: one lock serialises them."""

    # ---- state ---------------------------------------------------------------
    async def conversation(self, conversation_id: int) -> Conversation:
        cached = self.hub.conversations.get(conversation_id)
        if cached is not None:
            return cached
        found = await self.store.get_conversation(conversation_id)
        if found is None:
            raise NotFound(f"no conversation {conversation_id}")
        self.hub.conversations.put(found)
        return found

    async def transition(self, conversation_id: int,
                         decide: machine.Decision, actor: Agent | None) -> Conversation:
        """Apply a state-machine decision under the transitions lock, store it, announce it."""
        async with self._transitions:
            current = await self.conversation(conversation_id)
            change = decide(current)
            if change.status == current.status and change.assigned_to == current.assigned_to:
                return current
            updated = await self.store.set_conversation_state(
                conversation_id, change.status, change.assigned_to)
            self.hub.conversations.put(updated)
        log.info("[conv %s] %s → %s (assigned to %s) by %s", conversation_id, current.status,
                 updated.status, updated.assigned_to, actor.username if actor else "visitor")
        if change.note:
            await self.post(NewMessage(conversation_id, Role.SYSTEM, None, "system", change.note))
            updated = await self.conversation(conversation_id)
        await self.announce(updated)
        return updated

    # ---- messages ------------------------------------------------------------
    async def post(self, message: NewMessage) -> AppendResult:
        """Commit one message (batched with others); fan-out happens before this returns."""
        assert self.committer is not None, "post() before the committer was opened"
        return await self.committer.append(message)

    def on_committed(self, results: Sequence[AppendResult]) -> None:
        """Called by the committer's writer after each batch, in commit order."""
        self.metrics.commit_batch.observe(len(results))
        for result in results:
            if result.duplicate:
                continue
            self.metrics.messages_stored.inc()
            message = result.message
            conversation = self.hub.conversations.get(message.conversation_id)
            text = frames.encode(message_frame(message))
            item = (message.conversation_id, message.seq, text)
            self.hub.to_visitor(message.conversation_id, item)
            if conversation is None:
                self.hub.to_all_agents(item)
                continue
            if message.seq > conversation.last_seq:
                conversation = _with_last_seq(conversation, message.seq)
                self.hub.conversations.put(conversation)
            recipients = agents_for_conversation(
                conversation, self.hub.agents, self.hub.watchers.get(conversation.id, set()))
            self.hub.to_agents(recipients, item)

    def to_conversation(self, conversation: Conversation, text: str, *, visitor: bool = True,
                        agents: bool = True, except_agent: int | None = None) -> None:
        """Send a transient frame (typing, read) to whoever follows the conversation."""
        item = (conversation.id, 0, text)
        if visitor:
            self.hub.to_visitor(conversation.id, item)
        if agents:
            recipients = agents_for_conversation(
                conversation, self.hub.agents, self.hub.watchers.get(conversation.id, set()))
            recipients.discard(except_agent or 0)
            self.hub.to_agents(recipients, item)

    # ---- conversation events -----------------------------------------------
    def conversation_info(self, conversation: Conversation, visitor: Visitor | None,
                          last: StoredMessage | None = None) -> frames.ConversationInfo:
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
            updated_at=format_ts(conversation.updated_at),
            last_message=message_frame(last) if last else None,
        )

    async def announce(self, conversation: Conversation, visitor: Visitor | None = None) -> None:
        """Tell every online agent what a conversation looks like now."""
        if not self.hub.agents:
            return
        if visitor is None:
            visitor = await self.store.get_visitor(conversation.visitor_id)
        info = self.conversation_info(conversation, visitor)
        self.hub.to_all_agents(
            (conversation.id, 0, frames.encode(frames.ConversationOut(conversation=info))))


def _with_last_seq(conversation: Conversation, seq: int) -> Conversation:
    return replace(conversation, last_seq=seq)
