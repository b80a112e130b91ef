"""Units of work on visitor context (migration 13): the recorder's batched writes and the
panel's one read. See ``core/visitor_context.py`` for the rules and ``_sql`` for the
conventions.

A batch writes each conversation's row (insert or update: one ``SELECT`` then one
statement, the same on both dialects), appends its pages and deletes those beyond the
last ``MAX_PAGES``. Writes lock the context row (``FOR UPDATE`` on MySQL), not the
conversation: a page view never waits for a message's commit. A conversation that does
not exist (any more) is skipped, never an error: the batch holds other visitors' pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from customer_service.core.models import Contact
from customer_service.core.visitor_context import (
    EARLIER_LIMIT,
    MAX_PAGES,
    ContextUpdate,
    ConversationBrief,
    ConversationContext,
    PageSeen,
    StoredContext,
    starts_visit,
)
from customer_service.storage._sql import (
    VISITOR_COLUMNS,
    Tx,
    from_ms,
    placeholders,
    to_ms,
    visitor_from,
)
from customer_service.storage._sql_contacts import CONTACT_COLUMNS, contacts_from

_CONTEXT_COLUMNS = ("user_agent, ip, timezone, referrer, page, title, visit_started_at,"
                    " updated_at")


def _stored(tx: Tx, conversation_id: int, *, lock: bool = False) -> StoredContext | None:
    row = tx.one(f"SELECT {_CONTEXT_COLUMNS} FROM visitor_context WHERE conversation_id = ?"
                 f"{tx.dialect.for_update if lock else ''}", (conversation_id,))
    if row is None:
        return None
    return StoredContext(user_agent=row[0], ip=row[1], timezone=row[2], referrer=row[3],
                         page=row[4], title=row[5], visit_started_at=from_ms(row[6]),
                         updated_at=from_ms(row[7]))


def _last_page_url(tx: Tx, conversation_id: int) -> str | None:
    row = tx.one("SELECT url FROM visitor_pages WHERE conversation_id = ? ORDER BY id DESC"
                 " LIMIT 1", (conversation_id,))
    return None if row is None else str(row[0])


def _record_one(tx: Tx, update: ContextUpdate) -> None:
    cid = update.conversation_id
    if tx.one("SELECT id FROM conversations WHERE id = ?", (cid,)) is None:
        return
    before = _stored(tx, cid, lock=True)
    new_visit = starts_visit(before.updated_at if before else None, update.at)
    first_at = update.pages[0].at if update.pages else update.at
    visit_start = to_ms(first_at) if new_visit or before is None else to_ms(
        before.visit_started_at)
    visit = update.visit
    last = update.pages[-1] if update.pages else None
    values: dict[str, Any] = {
        "user_agent": visit.user_agent if visit else (before.user_agent if before else ""),
        "ip": visit.ip if visit else (before.ip if before else ""),
        "timezone": visit.timezone if visit else (before.timezone if before else ""),
        "referrer": visit.referrer if visit else (
            "" if new_visit or before is None else before.referrer),
        "page": last.url if last else (before.page if before else ""),
        "title": last.title if last else (before.title if before else ""),
        "visit_started_at": visit_start,
        "updated_at": to_ms(update.at),
    }
    if before is None:
        tx.execute(f"INSERT INTO visitor_context (conversation_id, {', '.join(values)})"
                   f" VALUES (?, {placeholders(len(values))})", [cid, *values.values()])
    else:
        tx.execute(f"UPDATE visitor_context SET {', '.join(f'{k} = ?' for k in values)}"
                   " WHERE conversation_id = ?", [*values.values(), cid])
    pages = list(update.pages)
    if pages and not new_visit and _last_page_url(tx, cid) == pages[0].url:
        pages = pages[1:]  # the page it is on, seen again (a reload, a second tab's hello)
    if not pages:
        return
    tx.executemany("INSERT INTO visitor_pages (conversation_id, url, title, seen_at)"
                   " VALUES (?, ?, ?, ?)",
                   [(cid, page.url, page.title, to_ms(page.at)) for page in pages])
    keep = tx.one("SELECT id FROM visitor_pages WHERE conversation_id = ? ORDER BY id DESC"
                  f" LIMIT 1 OFFSET {MAX_PAGES - 1}", (cid,))
    if keep is not None:
        tx.execute("DELETE FROM visitor_pages WHERE conversation_id = ? AND id < ?",
                   (cid, int(keep[0])))


def record(tx: Tx, updates: Sequence[ContextUpdate]) -> None:
    """Write a batch of coalesced updates, in conversation id order (locks in one order)."""
    for update in sorted(updates, key=lambda u: u.conversation_id):
        _record_one(tx, update)


def _contact_of(tx: Tx, contact_id: int | None) -> Contact | None:
    if contact_id is None:
        return None
    row = tx.one(f"SELECT {CONTACT_COLUMNS} FROM contacts k WHERE k.id = ?", (contact_id,))
    return None if row is None else contacts_from(tx, [row])[0]


def _others_where(conversation_id: int, visitor_id: int,
                  contact_id: int | None) -> tuple[str, list[Any]]:
    """The other conversations of this visitor, and of its contact: the contact's own and
    those of every visitor linked to it (its other devices, before they signed in)."""
    where = "c.id <> ? AND (c.visitor_id = ?"
    params: list[Any] = [conversation_id, visitor_id]
    if contact_id is not None:
        where += " OR c.contact_id = ? OR c.visitor_id IN (SELECT id FROM visitors WHERE contact_id = ?)"
        params += [contact_id, contact_id]
    return where + ")", params


def conversation_context(tx: Tx, conversation_id: int) -> ConversationContext | None:
    """Everything the panel shows, or None for an unknown conversation."""
    row = tx.one("SELECT c.visitor_id, c.contact_id, v.contact_id FROM conversations c"
                 " LEFT JOIN visitors v ON v.id = c.visitor_id WHERE c.id = ?",
                 (conversation_id,))
    if row is None:
        return None
    visitor_id = int(row[0])
    contact_id = int(row[1]) if row[1] is not None else (
        int(row[2]) if row[2] is not None else None)
    found = tx.one(f"SELECT {VISITOR_COLUMNS} FROM visitors v WHERE v.id = ?", (visitor_id,))
    visitor = visitor_from(found) if found is not None else None
    stored = _stored(tx, conversation_id)
    pages: tuple[PageSeen, ...] = ()
    if stored is not None:
        pages = tuple(PageSeen(str(url), str(title), from_ms(at)) for url, title, at in tx.all(
            "SELECT url, title, seen_at FROM visitor_pages WHERE conversation_id = ?"
            " AND seen_at >= ? ORDER BY id", (conversation_id, to_ms(stored.visit_started_at))))
    where, params = _others_where(conversation_id, visitor_id, contact_id)
    earlier = tuple(ConversationBrief(id=int(cid), status=str(status), created_at=from_ms(created),
                                      last_message_at=from_ms(last) if last is not None else None)
                    for cid, status, created, last in tx.all(
        "SELECT c.id, c.status, c.created_at, m.created_at FROM conversations c"
        " LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq"
        f" WHERE {where} ORDER BY c.id DESC LIMIT {EARLIER_LIMIT}", params))
    total = len(earlier)
    if total == EARLIER_LIMIT:
        counted = tx.one(f"SELECT COUNT(*) FROM conversations c WHERE {where}", params)
        total = int(counted[0]) if counted else total
    return ConversationContext(conversation_id=conversation_id, visitor=visitor,
                               contact=_contact_of(tx, contact_id), stored=stored,
                               pages=pages, earlier=earlier, earlier_total=total)
