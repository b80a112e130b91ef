"""Private notes: what agents write in a conversation for each other, never for its visitor.

A note is not a message. It lives in its own table (``notes``), has no ``seq`` and never
enters the message stream: the visitor's socket, replay after ``last_seq``, the visitor's
pages and the AI's context all read ``messages`` only, so a note cannot reach them by
construction rather than by a filter someone could forget. A note records ``after_seq``,
the conversation's ``last_seq`` when it was written, which places it in the agents'
timeline exactly (after that message, before the next) whatever the clocks say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

NOTES_LIMIT: Final = 500
"""At most this many notes (the newest) come with a conversation's history."""


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    conversation_id: int
    agent_id: int
    agent_name: str
    content: str
    after_seq: int
    """The conversation's ``last_seq`` when the note was written: it follows that message."""
    created_at: datetime
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class AddedNote:
    """What storing a note gave: the row, and whether it existed already (a resend)."""

    note: Note
    duplicate: bool


def timeline_key(note: Note) -> tuple[int, int, int]:
    """Where a note sorts among a conversation's messages (keyed ``(seq, 0, 0)``): after
    message ``after_seq`` and before the next, notes in the order they were written."""
    return (note.after_seq, 1, note.id)
