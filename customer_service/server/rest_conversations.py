"""REST: conversations and their messages. ``GET /api/v1/conversations`` (a page, by
status and labels), ``GET /api/v1/conversations/{id}`` (with its contact),
``GET /api/v1/conversations/{id}/messages`` (a page of history), and the writes an agent
or a write API token may make: ``POST …/messages`` (send as the caller) and ``POST
…/close``.

The writes go through the same service path as the agent socket (``server/agent.py``):
the committer stores and fans out the message (hub, bus, webhooks), ``transition`` closes
and announces. An API token writes as its bot agent, which may write in and close any
conversation not closed (``core/conversation.bot_*``); an agent's login token only in
those assigned to it, as on its socket.
"""

from __future__ import annotations

import logging

import msgspec

from customer_service.core import conversation as machine
from customer_service.core import frames
from customer_service.core.api_types import (
    ConversationOne,
    ConversationsOut,
    ConversationsQuery,
    MessagesOut,
    MessagesQuery,
    SendBody,
)
from customer_service.core.frames import MAX_INT, decode_json, explain, message_out
from customer_service.core.models import Conversation, ConversationStatus, NewMessage, Role
from customer_service.errors import BadRequest, Conflict, NotFound, ProtocolError
from customer_service.server import rest_labels
from customer_service.server.routes import Reply, Request
from customer_service.server.service import contact_info

log = logging.getLogger(__name__)

_send_body = msgspec.json.Decoder(SendBody)
_SEND_SHAPE = '{"text": "…", "client_id": "optional, makes a resend safe"}'


def query_int(query: dict[str, str], name: str, default: int | None, low: int,
              high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter '{name}' must be between {low} and {high}")
    return value


def path_id(raw: str, name: str) -> int:
    """An id in a path (ASCII digits, maybe a minus sign), within what a database row can
    have: 1 to 2^63-1."""
    value = int(raw) if len(raw) <= 40 else MAX_INT + 1
    if not 1 <= value <= MAX_INT:
        raise BadRequest(f"the {name} must be an integer between 1 and {MAX_INT}")
    return value


def conversations_query(req: Request) -> ConversationsQuery:
    query = req.app.query(req.scope)
    status = query.get("status")
    if status is not None and status not in {s.value for s in ConversationStatus}:
        raise BadRequest("status must be open, assigned or closed")
    return ConversationsQuery(status=status,  # type: ignore[arg-type]  # checked above
                              limit=query_int(query, "limit", 100, 1, 1000) or 100,
                              label=rest_labels.query_labels(req.scope))


async def list_conversations(req: Request) -> Reply:
    query = conversations_query(req)
    summaries = await req.store.list_conversations(
        ConversationStatus(query.status) if query.status else None, query.limit,
        labels=query.label)
    infos = [req.service.conversation_info(s.conversation, s.visitor, s.last_message,
                                           labels=s.labels) for s in summaries]
    return 200, ConversationsOut(conversations=infos)


async def _stored(req: Request) -> Conversation:
    conversation_id = path_id(req.params["conversation_id"], "conversation id")
    conversation = await req.store.get_conversation(conversation_id)
    if conversation is None:
        raise NotFound(f"no conversation {conversation_id}")
    return conversation


async def conversation_one(req: Request, conversation: Conversation | None = None) -> Reply:
    """One conversation as the dashboard shows it, with its contact's profile."""
    if conversation is None:
        conversation = await _stored(req)
    store = req.store
    visitor = await store.get_visitor(conversation.visitor_id)
    last = await store.messages_before(conversation.id, None, 1)
    contact, labels = await store.conversation_extras(conversation.id)
    info = req.service.conversation_info(conversation, visitor, last[-1] if last else None,
                                         contact_info(contact), labels)
    return 200, ConversationOne(conversation=info)


async def messages(req: Request) -> Reply:
    conversation = await _stored(req)
    query = req.app.query(req.scope)
    page = MessagesQuery(before_seq=query_int(query, "before_seq", None, 0, MAX_INT),
                         limit=query_int(query, "limit", 50, 1, 500) or 50)
    found = await req.store.messages_before(conversation.id, page.before_seq, page.limit)
    return 200, MessagesOut(conversation_id=conversation.id,
                            messages=[message_out(m) for m in found])


def _send_data(body: bytes) -> SendBody:
    try:
        return decode_json(_send_body, body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid message: {explain(exc)}; the body must be "
                         f"{_SEND_SHAPE}") from None
    except BadRequest as exc:
        raise BadRequest(f"{exc.message}; the body must be {_SEND_SHAPE}") from None


async def send_message(req: Request) -> Reply:
    """Send ``text`` as the caller (201 with the stored message); a resend with the same
    ``client_id`` answers the message stored the first time (200) and sends nothing."""
    service, agent = req.service, req.caller
    conversation_id = path_id(req.params["conversation_id"], "conversation id")
    data = _send_data(await req.body())
    frames.check_content(data.text, service.config.server.max_message_chars)
    conversation = await service.conversation(conversation_id)
    try:
        if agent.bot:
            machine.bot_may_write(conversation)
        else:
            machine.agent_may_write(conversation, agent)
    except ProtocolError:
        earlier = None if data.client_id is None else await service.store.find_message(
            Role.AGENT, agent.id, data.client_id)
        if earlier is None or earlier.conversation_id != conversation_id:
            raise
        return 200, message_out(earlier)
    if agent.bot and service.ai is not None:
        await service.ai.stop(conversation_id, f"bot agent {agent.username} wrote")
    result = await service.post(NewMessage(conversation_id, Role.AGENT, agent.id, agent.name,
                                           data.text, client_id=data.client_id))
    if result.duplicate and result.message.conversation_id != conversation_id:
        # client_id is unique per sender: the message it names is in another conversation,
        # and nothing was sent to this one.
        raise Conflict(f"client_id {data.client_id!r} was used for a message in conversation "
                       f"{result.message.conversation_id}: give each message its own")
    log.info("[conv %s] message %s by %s %s over REST%s", conversation_id, result.message.seq,
             "bot agent" if agent.bot else "agent", agent.username,
             " (a resend)" if result.duplicate else "")
    return (200 if result.duplicate else 201), message_out(result.message)


async def close(req: Request) -> Reply:
    """Close the conversation as the caller (recorded and announced like a close on the
    agent socket); 200 with the conversation."""
    service, agent = req.service, req.caller
    conversation_id = path_id(req.params["conversation_id"], "conversation id")
    if agent.bot:
        await service.conversation(conversation_id)
        if service.ai is not None:
            await service.ai.stop(conversation_id, f"bot agent {agent.username} closes it")
        updated = await service.transition(
            conversation_id, lambda c: machine.bot_close(c, agent), agent)
    else:
        updated = await service.transition(
            conversation_id, lambda c: machine.close(c, agent), agent)
    log.info("[conv %s] closed by %s over REST", conversation_id, agent.username)
    return await conversation_one(req, updated)
