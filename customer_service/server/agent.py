"""The agent socket: the welcome list, then accept, text, transfer, close, history (with
the private notes), typing, read marks, notes and the agent's status."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio

from customer_service.core import conversation as machine
from customer_service.core import frames
from customer_service.core.models import (
    Agent,
    ConversationStatus,
    ConversationSummary,
    NewMessage,
    Role,
    format_ts,
    utc_now,
)
from customer_service.errors import CustomerServiceError, NotFound, ProtocolError, Unavailable
from customer_service.server import agent_status, notes
from customer_service.server.service import ChatService
from customer_service.server.session import Session
from customer_service.transport.interface import Connection

log = logging.getLogger(__name__)

WELCOME_MINE = 200
WELCOME_WAITING = 200
WELCOME_RECENT = 50
TOKEN_RECHECK_SECONDS = 30.0


class AgentSession(Session):
    role = "agent"

    __slots__ = ("agent", "follows_queue", "token_hash")

    def __init__(self, conn: Connection, service: ChatService, agent: Agent,
                 token_hash: str, *, follows_queue: bool = True, client: str = "") -> None:
        super().__init__(conn, service, agent.id, client)
        self.agent = agent
        self.token_hash = token_hash
        self.peer.token_hash = token_hash
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
        with trio.move_on_after(self.config.message_timeout) as reading:
            status = await agent_status.sign_in_status(self.service, self.agent)
        if reading.cancelled_caught:
            raise Unavailable("the database did not answer in time")
        hub.add_agent(self.peer, self.follows_queue)
        log.info("[%s] agent %s (%s) connected from %s%s", self.peer.conn_id, self.agent.id,
                 self.agent.username, self.client,
                 "" if self.follows_queue else " (not following the queue)")
        with trio.move_on_after(self.config.message_timeout * 3) as listing:
            summaries = await self._welcome_list()
        if listing.cancelled_caught:
            raise Unavailable("the database did not answer in time")
        infos = []
        for summary in summaries:
            hub.sequencer.seed(summary.conversation.id, summary.conversation.last_seq)
            conversation = hub.conversations.get(summary.conversation.id) or summary.conversation
            infos.append(self.service.conversation_info(conversation, summary.visitor,
                                                        summary.last_message,
                                                        labels=summary.labels))
        await self.send_now(frames.AgentWelcomeOut(
            agent=frames.AgentInfo(id=self.agent.id, username=self.agent.username,
                                   name=self.agent.name, status=status),
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
                self.reply(frames.HistoryOut(
                    id=client_id, conversation_id=cid,
                    messages=[frames.message_out(m) for m in messages],
                    notes=msgspec.UNSET if before is not None else
                    await notes.history_notes(service.store, cid)))
            case frames.SetStatus(id=client_id, status=status):
                await agent_status.set_status(service, agent, status)
                self.reply(frames.AckOut(id=client_id))
            case frames.AgentNote():
                self.reply(await notes.write_note(service, agent, frame,
                                                  self.config.max_message_chars))
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
