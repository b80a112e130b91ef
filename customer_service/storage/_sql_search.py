"""Units of work for full-text search over messages and visitors (``Store.search``).

What a query means and how it is put to each database is decided in ``core/search.py``;
this module writes the SQL. The two dialects index differently (migration 0012):

**SQLite**: FTS5 tables with the ``trigram`` tokenizer, ``message_search`` over
``messages.content`` and ``visitor_search`` over ``visitors.name, email``, external
content kept in step by triggers. Terms of 3+ characters go to ``MATCH``; shorter ones
are ``LIKE`` conditions; a query of short terms only (``退款``) scans the messages.

**MySQL/MariaDB**: ``message_search`` and ``visitor_search`` hold tokens
(``core.search.index_tokens``) under a ``FULLTEXT`` index, queried ``IN BOOLEAN MODE``.
No triggers (they would need privileges a deployment may not grant, and cannot make
tokens): this module writes the rows, in the transaction that writes the message
(``index_messages``, called by ``_sql_chat.append_messages``) or the visitor
(``index_visitor``, called where ``_sql_people`` / ``_sql_contacts`` write one).
Rows stored before migration 0012 are indexed by ``backfill_step``, a batch per
transaction, from the position ``search_backfill`` keeps (the store runs it after
migrating). ``LIKE`` conditions (short terms) compare with ``utf8mb4_unicode_ci``:
case-insensitive, as the index is.

A first page holds the matching visitors (a few, by their newest conversation's last
activity), then the messages, newest first; a following page (``before``) holds the next
messages.
Private notes live in their own table and are never searched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from customer_service.core.models import Role
from customer_service.core.search import (
    MESSAGE,
    VISITOR,
    VISITOR_HITS,
    SearchCursor,
    SearchHit,
    SearchQuery,
    fulltext_query,
    index_tokens,
    like_pattern,
    snippet,
    trigram_match,
    visitor_text,
)
from customer_service.storage._sql import MYSQL, Tx, chunks, from_ms

BACKFILL_BATCH: Final = 2000
"""Rows indexed per backfill transaction (MySQL)."""

_MESSAGE_COLUMNS: Final = ("m.conversation_id, m.seq, m.sender_role, m.sender_name,"
                           " m.content, m.created_at, v.name")
_VISITOR_COLUMNS: Final = "c.id, c.updated_at, v.name, v.email"
_NEWEST_CONVERSATION: Final = ("JOIN conversations c ON c.id = (SELECT MAX(c2.id) FROM"
                               " conversations c2 WHERE c2.visitor_id = v.id)")


def _like(tx: Tx, column: str) -> str:
    """A case-insensitive ``LIKE`` on a column (patterns from ``like_pattern``)."""
    if tx.dialect is MYSQL:  # backslash is MySQL's LIKE escape already
        return f"{column} COLLATE utf8mb4_unicode_ci LIKE ?"
    return f"{column} LIKE ? ESCAPE '\\'"


def search(tx: Tx, query: SearchQuery, limit: int,
           before: SearchCursor | None) -> list[SearchHit]:
    """A first page (no ``before``): up to ``VISITOR_HITS`` visitors, then up to ``limit``
    messages; a following page: the next ``limit`` messages."""
    visitors = _visitors(tx, query) if before is None else []
    return visitors + _messages(tx, query, limit, before)


def _messages(tx: Tx, query: SearchQuery, limit: int,
              before: SearchCursor | None) -> list[SearchHit]:
    """Newest first. SQLite: by rowid (commit order), so that FTS5 walks its index from
    the newest match and stops at ``limit``, and a scan for short terms reads the table
    backwards until it has them. MySQL: by (created_at, conversation id, seq), every
    match sorted (FULLTEXT has no order of its own); a scan for short terms walks
    ``message_search_recent`` backwards."""
    conditions: list[str] = []
    params: list[Any] = []
    if tx.dialect is MYSQL:
        expression, short = fulltext_query(query)
        source = ("message_search s JOIN messages m ON m.conversation_id ="
                  " s.conversation_id AND m.seq = s.seq")
        if expression is not None:
            conditions.append("MATCH (s.terms) AGAINST (? IN BOOLEAN MODE)")
            params.append(expression)
        order = "s.created_at DESC, s.conversation_id DESC, s.seq DESC"
        if before is not None:
            conditions.append("(s.created_at < ? OR (s.created_at = ? AND (s.conversation_id"
                              " < ? OR (s.conversation_id = ? AND s.seq < ?))))")
            params += [before.created_ms, before.created_ms, before.conversation_id,
                       before.conversation_id, before.seq]
        if expression is not None and not short:
            # Sort the matches on the narrow index rows, then read only the page's messages.
            source = ("(SELECT s.conversation_id, s.seq, s.created_at FROM message_search s"
                      f" WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT ?) s"
                      " JOIN messages m ON m.conversation_id = s.conversation_id"
                      " AND m.seq = s.seq")
            params.append(limit)
            conditions = []
    else:
        expression, short = trigram_match(query)
        if expression is not None:
            source = "message_search s JOIN messages m ON m.rowid = s.rowid"
            conditions.append("message_search MATCH ?")
            params.append(expression)
            order = "s.rowid DESC"
        else:
            source, order = "messages m", "m.rowid DESC"
        if before is not None:
            row = tx.one("SELECT rowid FROM messages WHERE conversation_id = ? AND seq = ?",
                         (before.conversation_id, before.seq))
            if row is None:  # not a message of this database
                return []
            conditions.append(f"{order.split()[0]} < ?")
            params.append(int(row[0]))
    for term in short:
        conditions.append(_like(tx, "m.content"))
        params.append(like_pattern(term))
    rows = tx.all(f"SELECT {_MESSAGE_COLUMNS} FROM {source}"
                  " JOIN conversations c ON c.id = m.conversation_id"
                  " JOIN visitors v ON v.id = c.visitor_id"
                  f" WHERE {' AND '.join(conditions) or '1 = 1'} ORDER BY {order} LIMIT ?",
                  [*params, limit])
    hits = []
    for cid, seq, role, sender, content, created, visitor_name in rows:
        shown, ranges = snippet(str(content), query.terms)
        hits.append(SearchHit(kind=MESSAGE, conversation_id=int(cid), seq=int(seq),
                              role=Role(role), sender_name=str(sender),
                              created_at=from_ms(created), created_ms=int(created),
                              snippet=shown, highlights=ranges,
                              visitor_name=str(visitor_name)))
    return hits


def _visitors(tx: Tx, query: SearchQuery) -> list[SearchHit]:
    """Visitors whose name or email match, by their newest conversation's last activity
    (a visitor who never had a conversation is left out: there is nothing to open)."""
    conditions: list[str] = []
    params: list[Any] = []
    expression: str | None
    if tx.dialect is MYSQL:
        expression, short = fulltext_query(query)
        source = "visitor_search s JOIN visitors v ON v.id = s.visitor_id"
        match = "MATCH (s.terms) AGAINST (? IN BOOLEAN MODE)"
    else:
        expression, short = trigram_match(query)
        source = "visitor_search s JOIN visitors v ON v.id = s.rowid"
        match = "visitor_search MATCH ?"
    if expression is not None:
        conditions.append(match)
        params.append(expression)
    else:
        source = "visitors v"
    for term in short:
        conditions.append(f"({_like(tx, 'v.name')} OR {_like(tx, 'v.email')})")
        params += [like_pattern(term)] * 2
    rows = tx.all(f"SELECT {_VISITOR_COLUMNS} FROM {source} {_NEWEST_CONVERSATION}"
                  f" WHERE {' AND '.join(conditions)}"
                  " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", [*params, VISITOR_HITS])
    hits = []
    for cid, updated, name, email in rows:
        shown, ranges = snippet(visitor_text(str(name), str(email)), query.terms)
        hits.append(SearchHit(kind=VISITOR, conversation_id=int(cid), seq=0,
                              role=Role.VISITOR, sender_name=str(name),
                              created_at=from_ms(updated), created_ms=int(updated),
                              snippet=shown, highlights=ranges, visitor_name=str(name)))
    return hits


# --- keeping the MySQL index in step ------------------------------------------------

def index_messages(tx: Tx, rows: Sequence[tuple[int, int, int, str]]) -> None:
    """Index new messages (conversation id, seq, created_at ms, content) on MySQL, in the
    transaction that stores them; SQLite's triggers do it there."""
    if tx.dialect is not MYSQL or not rows:
        return
    for chunk in chunks(rows):
        tx.execute("INSERT INTO message_search (conversation_id, seq, created_at, terms)"
                   " VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(chunk)),
                   [value for cid, seq, created, content in chunk
                    for value in (cid, seq, created, index_tokens([content]))])


def index_visitor(tx: Tx, visitor_id: int, name: str, email: str) -> None:
    """(Re)index a visitor's name and email on MySQL; SQLite's triggers do it there."""
    if tx.dialect is not MYSQL:
        return
    terms = index_tokens([name, email])
    tx.execute("INSERT INTO visitor_search (visitor_id, terms) VALUES (?, ?)"
               " ON DUPLICATE KEY UPDATE terms = ?", (visitor_id, terms, terms))


def backfill_pending(tx: Tx) -> bool:
    """Whether rows stored before migration 0012 may still lack their index rows (MySQL
    with the migration applied and the backfill not finished)."""
    if tx.dialect is not MYSQL or tx.one(tx.dialect.table_exists,
                                         ("search_backfill",)) is None:
        return False
    return tx.one("SELECT 1 FROM search_backfill WHERE done = 0 LIMIT 1") is not None


BACKFILL_LOCK: Final = "customer_service.search_backfill"


def backfill_step(tx: Tx) -> int | None:
    """Index the next batch of old rows (messages first, then visitors), moving the
    kept position; return how many rows it indexed, None when nothing is left or another
    instance is indexing now (it holds the named lock ``BACKFILL_LOCK``: this one need not
    wait for it, and goes on starting). Rows indexed meanwhile by a write stay as they
    are."""
    locked = tx.one("SELECT GET_LOCK(?, 0)", (BACKFILL_LOCK,))
    if locked is None or locked[0] != 1:
        return None
    try:
        return _backfill_batch(tx)
    finally:
        tx.one("SELECT RELEASE_LOCK(?)", (BACKFILL_LOCK,))


def _backfill_batch(tx: Tx) -> int | None:
    for name in ("messages", "visitors"):
        row = tx.one("SELECT after_a, after_b FROM search_backfill WHERE name = ? AND done = 0"
                     " FOR UPDATE", (name,))
        if row is None:
            continue
        after_a, after_b = int(row[0]), int(row[1])
        if name == "messages":
            found = tx.all("SELECT conversation_id, seq, created_at, content FROM messages"
                           " WHERE conversation_id > ? OR (conversation_id = ? AND seq > ?)"
                           " ORDER BY conversation_id, seq LIMIT ?",
                           (after_a, after_a, after_b, BACKFILL_BATCH))
            for chunk in chunks(found):
                tx.execute("INSERT INTO message_search (conversation_id, seq, created_at,"
                           " terms) VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(chunk))
                           + " ON DUPLICATE KEY UPDATE seq = seq",
                           [value for cid, seq, created, content in chunk
                            for value in (cid, seq, created, index_tokens([str(content)]))])
            last = (int(found[-1][0]), int(found[-1][1])) if found else (after_a, after_b)
        else:
            found = tx.all("SELECT id, name, email FROM visitors WHERE id > ? ORDER BY id"
                           " LIMIT ?", (after_a, BACKFILL_BATCH))
            for chunk in chunks(found):
                tx.execute("INSERT INTO visitor_search (visitor_id, terms) VALUES "
                           + ", ".join(["(?, ?)"] * len(chunk))
                           + " ON DUPLICATE KEY UPDATE visitor_id = visitor_id",
                           [value for vid, vname, vemail in chunk
                            for value in (vid, index_tokens([str(vname), str(vemail)]))])
            last = (int(found[-1][0]), 0) if found else (after_a, after_b)
        tx.execute("UPDATE search_backfill SET after_a = ?, after_b = ?, done = ?"
                   " WHERE name = ?", (*last, int(len(found) < BACKFILL_BATCH), name))
        return len(found)
    return None
