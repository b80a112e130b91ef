"""Units of work on private notes (``core/notes.py``): both dialects, one ``Tx`` each.

Writing a note locks its conversation's row first (``FOR UPDATE`` on MySQL; SQLite's
write transactions exclude each other), the same lock every message takes: the
``last_seq`` read as the note's ``after_seq`` is then the one of the messages committed
before it, and two resends of one note cannot both insert it.
"""

from __future__ import annotations

from customer_service.core.notes import AddedNote, Note
from customer_service.errors import NotFound
from customer_service.storage._sql import Row, Tx, from_ms, now_ms

NOTE_COLUMNS = ("n.id, n.conversation_id, n.agent_id, n.agent_name, n.content, n.after_seq,"
                " n.created_at, n.client_id")


def note_from(row: Row) -> Note:
    return Note(id=int(row[0]), conversation_id=int(row[1]), agent_id=int(row[2]),
                agent_name=row[3], content=row[4], after_seq=int(row[5]),
                created_at=from_ms(row[6]), client_id=row[7])


def _by_client_id(tx: Tx, agent_id: int, client_id: str) -> Note | None:
    row = tx.one(f"SELECT {NOTE_COLUMNS} FROM notes n WHERE n.agent_id = ? AND n.client_id = ?",
                 (agent_id, client_id))
    return None if row is None else note_from(row)


def add_note(tx: Tx, conversation_id: int, agent_id: int, agent_name: str, content: str,
             *, client_id: str | None) -> AddedNote:
    found = tx.one(f"SELECT last_seq FROM conversations WHERE id = ?{tx.dialect.for_update}",
                   (conversation_id,))
    if found is None:
        raise NotFound(f"no conversation {conversation_id}")
    if client_id is not None:
        before = _by_client_id(tx, agent_id, client_id)
        if before is not None:
            return AddedNote(before, duplicate=True)
    created = now_ms()
    note_id = tx.insert(
        "INSERT INTO notes (conversation_id, agent_id, agent_name, content, after_seq,"
        " client_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (conversation_id, agent_id, agent_name, content, int(found[0]), client_id, created))
    return AddedNote(Note(id=note_id, conversation_id=conversation_id, agent_id=agent_id,
                          agent_name=agent_name, content=content, after_seq=int(found[0]),
                          created_at=from_ms(created), client_id=client_id), duplicate=False)


def list_notes(tx: Tx, conversation_id: int, limit: int) -> list[Note]:
    """The newest ``limit`` notes of a conversation, oldest first."""
    rows = tx.all(f"SELECT {NOTE_COLUMNS} FROM notes n WHERE n.conversation_id = ?"
                  " ORDER BY n.id DESC LIMIT ?", (conversation_id, max(0, limit)))
    return [note_from(row) for row in reversed(rows)]
