"""Canned replies in SQL, for both dialects (see ``_sql``): add, list, delete by shortcut.

The callers check shortcuts and texts (``core.canned``); here a shortcut is unique.
"""

from __future__ import annotations

from customer_service.core.canned import CannedReply
from customer_service.errors import Conflict, NotFound
from customer_service.storage._sql import Row, Tx, from_ms, now_ms

_COLUMNS = "id, shortcut, text, created_at"


def _reply_from(row: Row) -> CannedReply:
    return CannedReply(id=int(row[0]), shortcut=row[1], text=row[2],
                       created_at=from_ms(row[3]))


def add_canned_reply(tx: Tx, shortcut: str, text: str) -> CannedReply:
    taken = tx.one(f"SELECT id FROM canned_replies WHERE shortcut = ?{tx.dialect.for_update}",
                   (shortcut,))
    if taken is not None:
        raise Conflict(f"a canned reply with the shortcut {shortcut!r} exists already")
    created = now_ms()
    reply_id = tx.insert("INSERT INTO canned_replies (shortcut, text, created_at)"
                         " VALUES (?, ?, ?)", (shortcut, text, created))
    return CannedReply(id=reply_id, shortcut=shortcut, text=text, created_at=from_ms(created))


def list_canned_replies(tx: Tx) -> list[CannedReply]:
    rows = tx.all(f"SELECT {_COLUMNS} FROM canned_replies ORDER BY shortcut")
    return [_reply_from(row) for row in rows]


def delete_canned_reply(tx: Tx, shortcut: str) -> None:
    if tx.execute("DELETE FROM canned_replies WHERE shortcut = ?", (shortcut,)) == 0:
        raise NotFound(f"no canned reply with the shortcut {shortcut!r}")
