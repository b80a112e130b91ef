"""Private notes in ``conversations show``: the JSON shape, and the rows of the table,
where notes sit among the messages (after message ``after_seq``) marked as notes."""

# rich is imported inside the function that uses it (`--help` does not pay for it).
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from customer_service.cli.common import esc, short_time, ts
from customer_service.core.notes import Note, timeline_key

if TYPE_CHECKING:
    from rich.text import Text

    from customer_service.core.models import StoredMessage

NOTE_MARK = "note"
"""What the ``seq`` column says for a note (it has no seq: it is not a message)."""


def note_dict(note: Note) -> dict[str, Any]:
    return {"id": note.id, "conversation_id": note.conversation_id,
            "agent_id": note.agent_id, "agent_name": note.agent_name,
            "content": note.content, "after_seq": note.after_seq,
            "created_at": ts(note.created_at), "private": True}


Row = tuple["str | Text", ...]


def timeline_rows(messages: Sequence[StoredMessage], notes: Sequence[Note],
                  sender: Callable[[StoredMessage], str]) -> list[Row]:
    """(seq, time, from, text) rows: messages by seq, each note after message
    ``after_seq``, in yellow and marked ``note`` / ``(private note)``. ``sender(message)``
    names a message's sender. Names and text are data, never markup."""
    from rich.text import Text

    keyed: list[tuple[tuple[int, int, int], Row]] = [
        ((m.seq, 0, 0), (str(m.seq), short_time(m.created_at), esc(sender(m)), esc(m.content)))
        for m in messages]
    keyed += [(timeline_key(n), (Text(NOTE_MARK, style="yellow"), short_time(n.created_at),
                                 Text(f"{n.agent_name} (private note)", style="yellow"),
                                 Text(n.content, style="yellow")))
              for n in notes]
    return [row for _, row in sorted(keyed, key=lambda pair: pair[0])]
