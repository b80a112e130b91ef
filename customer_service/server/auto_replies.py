"""Auto-replies and leave-a-message at the edge: the core's decisions posted and stored.

Auto-replies are ``system`` messages posted through the service's normal path (the group
committer): sequenced, fanned out, published on the bus and replayed like any message.
Their client ids (``auto:welcome:<conversation>``, ``core/auto_replies.py``) meet the
store's unique dedupe key, so a conversation gets each at most once, however many sockets
or instances post it; a repeat is answered with the stored one and sends nothing.

When a conversation begins (the visitor's first message): the welcome is stored before
the visitor's message; right after it, the away or closed message when nobody can answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from customer_service.config import LANGUAGES
from customer_service.core.auto_replies import (
    AutoReply,
    resolve_language,
    unavailable_reply,
    welcome_reply,
)
from customer_service.core.leave_message import check_email
from customer_service.core.models import Conversation, NewMessage, Role, Visitor

if TYPE_CHECKING:
    from customer_service.server.service import ChatService

log = logging.getLogger(__name__)

BEGINNING = 2
"""A conversation whose ``last_seq`` is at most this may still be beginning: its messages
are read to see whether they are all auto-replies (a welcome stored, then the visitor's
message missed its deadline and comes again)."""


def language(service: ChatService, wanted: str | None) -> str:
    """The visitor's language from ``hello`` (unknown or absent: ``[web] default_language``)."""
    return resolve_language(wanted, LANGUAGES, service.config.web.default_language)


async def begins(service: ChatService, conversation: Conversation) -> bool:
    """Whether the visitor's message about to be posted is the conversation's first: no
    message yet, or only auto-replies. False without a single auto-reply text: there is
    nothing to post, so the first messages of a conversation read nothing more."""
    texts = service.config.auto_replies
    if not any(any(table.values()) for table in (texts.welcome, texts.away, texts.closed)):
        return False
    if conversation.last_seq == 0:
        return True
    if conversation.last_seq > BEGINNING:
        return False
    stored = await service.store.messages_after(conversation.id, 0, BEGINNING)
    return all(m.sender_role is Role.SYSTEM and (m.client_id or "").startswith("auto:")
               for m in stored)


async def _post(service: ChatService, conversation_id: int, reply: AutoReply) -> None:
    result = await service.post(NewMessage(
        conversation_id, Role.SYSTEM, None, "system", reply.text,
        client_id=reply.client_id(conversation_id)))
    if not result.duplicate:
        log.info("[conv %s] %s auto-reply stored (seq %s)", conversation_id, reply.kind,
                 result.message.seq)


async def before_first_message(service: ChatService, conversation_id: int, lang: str) -> None:
    """The welcome, stored before the visitor's first message (none: no text for ``lang``)."""
    config = service.config
    reply = welcome_reply(config.auto_replies.welcome, lang, config.web.default_language)
    if reply is not None:
        await _post(service, conversation_id, reply)


async def after_first_message(service: ChatService, conversation_id: int, lang: str) -> None:
    """The away or closed message right after the visitor's first message, when nobody
    can answer."""
    config = service.config
    conversation = await service.conversation(conversation_id)
    state = service.availability.state(conversation)
    reply = unavailable_reply(state, config.auto_replies.away, config.auto_replies.closed,
                              language=lang, default=config.web.default_language,
                              now=service.clock())
    if reply is not None:
        await _post(service, conversation_id, reply)


async def leave_message(service: ChatService, conversation_id: int, visitor: Visitor,
                        email: str) -> Conversation:
    """Store the address the visitor left (checked: ``BadRequest`` when it is not one) and
    tell the agents (the conversation event carries ``left_email``)."""
    address = check_email(email)
    conversation = await service.store.set_left_email(conversation_id, address)
    service.hub.conversations.put(conversation)
    log.info("[conv %s] visitor %s left an email address", conversation_id, visitor.id)
    await service.announce(conversation, visitor, changed=True)
    return conversation
