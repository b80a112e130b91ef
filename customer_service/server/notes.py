"""Private notes on the agent socket and over REST: written, fanned out to agents only,
read back with a conversation's history.

The ``note`` frame travels as a ``FrameEvent`` with ``to_visitor`` False: the hub (and
every other instance's hub, over the bus) hands it to the conversation's agents (its
assignee or the queue's followers, and its watchers) and never looks at its visitor
sockets. Nothing here writes to ``messages``, so replay and the AI never see a note.
"""

from __future__ import annotations

import logging
from typing import Any

from customer_service.core import frames
from customer_service.core.models import Agent, format_ts
from customer_service.core.notes import AddedNote
from customer_service.errors import BadRequest, NotFound
from customer_service.server.service import ChatService
from customer_service.storage.base import Store
from customer_service.transport.interface import Scope

log = logging.getLogger(__name__)


async def write_note(service: ChatService, agent: Agent, frame: frames.AgentNote,
                     max_chars: int) -> frames.AckOut:
    """Store the note (once per client id) and send it to the conversation's agents; the
    writer follows the conversation from now on (a watcher), so its other tabs get it too.
    Any agent may write one, in any conversation, whoever it is assigned to."""
    frames.check_content(frame.content, max_chars)
    conversation = await service.conversation(frame.conversation_id)
    added: AddedNote = await service.store.add_note(
        conversation.id, agent.id, agent.name, frame.content, client_id=frame.id)
    note = added.note
    service.hub.watch(conversation.id, agent.id)
    if added.duplicate:
        log.info("[conv %s] note %s by agent %s resent; acked again", conversation.id, note.id,
                 agent.id)
    else:
        log.info("[conv %s] note %s by agent %s", conversation.id, note.id, agent.id)
        service.to_conversation(conversation, frames.encode(frames.note_out(note)),
                                visitor=False)
    return frames.AckOut(id=frame.id, note_id=note.id, ts=format_ts(note.created_at))


async def history_notes(store: Store, conversation_id: int) -> list[frames.NoteOut]:
    """The notes that come with a conversation's newest history page."""
    return [frames.note_out(note) for note in await store.list_notes(conversation_id)]


async def list_notes(store: Store, scope: Scope) -> dict[str, Any]:
    """``GET /api/v1/conversations/{id}/notes``: ``{"conversation_id", "notes": [...]}``, the
    newest ``NOTES_LIMIT`` oldest first, each shaped like the ``note`` frame."""
    raw = scope["path"].removeprefix("/api/v1/conversations/").removesuffix("/notes")
    if "/" in raw:
        raise NotFound(f"no route {scope['path']}")
    conversation_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else 0
    if not 1 <= conversation_id <= frames.MAX_INT:
        raise BadRequest(f"the conversation id must be an integer between 1 and "
                         f"{frames.MAX_INT}, not {raw[:40]!r}")
    if await store.get_conversation(conversation_id) is None:
        raise NotFound(f"no conversation {conversation_id}")
    return {"conversation_id": conversation_id,
            "notes": await history_notes(store, conversation_id)}
