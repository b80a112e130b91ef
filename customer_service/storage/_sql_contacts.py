"""Units of work on contacts: import (upsert), tags, unsubscribing, identified visitors.

Each function runs inside one transaction (a ``Tx``) that the backend opened;
see ``_sql`` for the conventions. A contact's tags live in ``contact_tags`` and
are read for a whole page at once (one primary-key range per page); attributes
are a JSON object in a text column.

MySQL lock order, shared with ``_sql_campaigns``: a campaign recipient, then the
contact, then a visitor, then a conversation (``_sql_chat`` locks conversations
last), so writers meeting on the same rows wait rather than deadlock.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from customer_service.core import webhooks as hooks
from customer_service.core.models import (
    Contact,
    ContactInput,
    Conversation,
    ConversationStatus,
    UpsertCounts,
)
from customer_service.errors import NotFound
from customer_service.storage import _sql_search as search_sql
from customer_service.storage import _sql_webhooks as webhooks_sql
from customer_service.storage._sql import (
    CONVERSATION_COLUMNS,
    IN_CHUNK,
    Row,
    Tx,
    chunks,
    conversation_from,
    from_ms,
    now_ms,
    placeholders,
)

CONTACT_COLUMNS = ("k.id, k.external_id, k.name, k.email, k.phone, k.attributes,"
                   " k.unsubscribed, k.last_campaign_at, k.created_at, k.updated_at")
CONTACT_WIDTH = 10

UPDATE_CHUNK = 100
"""Rows per multi-row ``UPDATE ... CASE``: each row costs a ``WHEN`` per column."""
STATEMENT_BYTES = 1 << 20
"""Bytes of values in one multi-row statement, at most (a row alone may be larger).
MySQL refuses a statement longer than ``max_allowed_packet`` by dropping the connection
(16 MiB by default on MariaDB, 4 MiB on older MySQL), and 500 contacts with attributes
at the import's limit, 65,000 bytes each, would make 32 MB or more."""

_encoder = msgspec.json.Encoder(order="sorted")
_attributes = msgspec.json.Decoder(dict[str, Any])


def encode_json(value: dict[str, Any]) -> str:
    return _encoder.encode(value).decode("utf-8")


def decode_json(text: str) -> dict[str, Any]:
    return _attributes.decode(text)


def contacts_from(tx: Tx, rows: Sequence[Row]) -> list[Contact]:
    """Contacts from rows of ``CONTACT_COLUMNS`` (in that order), with their tags."""
    ids = [int(row[0]) for row in rows]
    tags: dict[int, list[str]] = {}
    for chunk in chunks(ids):
        for contact_id, tag in tx.all(
                f"SELECT contact_id, tag FROM contact_tags WHERE contact_id IN"
                f" ({placeholders(len(chunk))}) ORDER BY contact_id, tag", chunk):
            tags.setdefault(int(contact_id), []).append(str(tag))
    return [Contact(
        id=int(row[0]), external_id=row[1], name=row[2], email=row[3], phone=row[4],
        tags=tuple(tags.get(int(row[0]), ())), attributes=decode_json(row[5]),
        unsubscribed=bool(row[6]),
        last_campaign_at=None if row[7] is None else from_ms(row[7]),
        created_at=from_ms(row[8]), updated_at=from_ms(row[9])) for row in rows]


def _contact_where(tx: Tx, where: str, params: Sequence[Any], *,
                   lock: bool = False) -> Contact | None:
    suffix = tx.dialect.for_update if lock else ""
    row = tx.one(f"SELECT {CONTACT_COLUMNS} FROM contacts k WHERE {where}{suffix}", params)
    return None if row is None else contacts_from(tx, [row])[0]


def get_contact(tx: Tx, contact_id: int) -> Contact | None:
    return _contact_where(tx, "k.id = ?", (contact_id,))


def get_contact_by_external_id(tx: Tx, external_id: str) -> Contact | None:
    return _contact_where(tx, "k.external_id = ?", (external_id,))


def contacts_by_external_ids(tx: Tx, external_ids: Sequence[str]) -> list[Contact]:
    """The contacts among ``external_ids`` (unknown ids left out), in no particular order."""
    rows: list[Row] = []
    for chunk in chunks(list(dict.fromkeys(external_ids))):
        rows += tx.all(f"SELECT {CONTACT_COLUMNS} FROM contacts k WHERE k.external_id IN"
                       f" ({placeholders(len(chunk))})", chunk)
    return contacts_from(tx, rows)


def _named(tx: Tx, external_id: str) -> Contact:
    contact = _contact_where(tx, "k.external_id = ?", (external_id,), lock=True)
    if contact is None:
        raise NotFound(f"no contact with external id {external_id!r}")
    return contact


# --- import -----------------------------------------------------------------

_FIELDS = ("name", "email", "phone", "attributes", "unsubscribed")


def upsert_contacts(tx: Tx, items: Sequence[ContactInput]) -> UpsertCounts:
    """A whole import batch in a few statements: the stored rows are read (and locked)
    by ``external_id``, merged with the input in Python, and written back with one
    multi-row INSERT (new contacts) and multi-row ``UPDATE ... CASE`` (the others)."""
    if not items:
        return UpsertCounts(created=0, updated=0)
    stored: dict[str, Row] = {}
    external_ids = [item.external_id for item in items]
    for chunk in chunks(external_ids):
        for row in tx.all(f"SELECT id, external_id, name, email, phone, attributes, unsubscribed"
                          f" FROM contacts WHERE external_id IN ({placeholders(len(chunk))})"
                          f"{tx.dialect.for_update}", chunk):
            stored[str(row[1])] = row
    moment = now_ms()
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    for item in items:
        old = stored.get(item.external_id)
        values = (
            item.name if item.name is not None else ("" if old is None else old[2]),
            item.email if item.email is not None else ("" if old is None else old[3]),
            item.phone if item.phone is not None else ("" if old is None else old[4]),
            encode_json(item.attributes) if item.attributes is not None
            else ("{}" if old is None else old[5]),
            int(item.unsubscribed) if item.unsubscribed is not None
            else (0 if old is None else int(old[6])),
        )
        if old is None:
            inserts.append((item.external_id, *values, moment, moment))
        else:
            updates.append((int(old[0]), *values))
    for chunk in _sized(inserts, IN_CHUNK):
        tx.execute("INSERT INTO contacts (external_id, name, email, phone, attributes,"
                   " unsubscribed, created_at, updated_at) VALUES "
                   + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                   [value for row in chunk for value in row])
    for chunk in _sized(updates, UPDATE_CHUNK):
        _update_rows(tx, chunk, moment)

    tagged = [item for item in items if item.tags is not None]
    if tagged:
        ids = _ids_by_external_id(tx, [item.external_id for item in tagged])
        contact_ids = [ids[item.external_id] for item in tagged]
        for chunk in chunks(contact_ids):
            tx.execute(f"DELETE FROM contact_tags WHERE contact_id IN"
                       f" ({placeholders(len(chunk))})", chunk)
        _insert_tags(tx, [(ids[item.external_id], tag) for item in tagged
                          for tag in sorted(set(item.tags or ()))])
    return UpsertCounts(created=len(inserts), updated=len(updates))


def _sized(rows: Sequence[tuple[Any, ...]], most: int) -> Iterator[Sequence[tuple[Any, ...]]]:
    """``rows`` in runs of at most ``most`` rows and about ``STATEMENT_BYTES`` of values,
    each text counted at twice its UTF-8 length (the most that escaping can make it)."""
    start = size = 0
    for end, row in enumerate(rows):
        cost = sum(2 * len(v.encode()) if isinstance(v, str) else 24 for v in row)
        if end > start and (end - start >= most or size + cost > STATEMENT_BYTES):
            yield rows[start:end]
            start, size = end, 0
        size += cost
    if start < len(rows):
        yield rows[start:]


def _update_rows(tx: Tx, rows: Sequence[tuple[Any, ...]], moment: int) -> None:
    """One statement for many rows, each column set by ``CASE id``: PyMySQL's
    ``executemany`` would make one round trip per UPDATE."""
    ids = [row[0] for row in rows]
    assignments: list[str] = []
    params: list[Any] = []
    for position, column in enumerate(_FIELDS, start=1):
        assignments.append(f"{column} = CASE id " + " ".join(["WHEN ? THEN ?"] * len(rows))
                           + " END")
        params.extend(value for row in rows for value in (row[0], row[position]))
    tx.execute(f"UPDATE contacts{tx.dialect.by_id} SET {', '.join(assignments)},"
               f" updated_at = ? WHERE id IN ({placeholders(len(ids))})",
               [*params, moment, *ids])


def _ids_by_external_id(tx: Tx, external_ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(external_ids):
        for contact_id, external_id in tx.all(
                f"SELECT id, external_id FROM contacts WHERE external_id IN"
                f" ({placeholders(len(chunk))})", chunk):
            found[str(external_id)] = int(contact_id)
    return found


def _insert_tags(tx: Tx, pairs: Sequence[tuple[int, str]]) -> None:
    for chunk in chunks(pairs):
        tx.execute("INSERT INTO contact_tags (contact_id, tag) VALUES "
                   + ", ".join(["(?, ?)"] * len(chunk)),
                   [value for pair in chunk for value in pair])


# --- lists ------------------------------------------------------------------

def use_index(tx: Tx, index: str) -> str:
    """A hint after a table name (MySQL): read this index's range in order. InnoDB's
    optimizer otherwise walks the primary key for ``ORDER BY ... LIMIT`` and filters,
    which reads every row for a rare tag or state."""
    return f" FORCE INDEX ({index})" if tx.dialect.name == "mysql" else ""


def _tag_filter(tx: Tx, tags: Sequence[str]) -> tuple[str, str, list[Any]]:
    """FROM and WHERE for contacts having every tag: the first tag's index range
    ``(tag, contact_id)`` drives the query in id order; the others are looked up."""
    wanted = sorted(set(tags))
    if not wanted:
        return "contacts k", "k.id > ?", []
    joins = (f"contact_tags t0{use_index(tx, 'contact_tags_tag')}"
             " JOIN contacts k ON k.id = t0.contact_id")
    where = ["t0.tag = ?"]
    for tag_index in range(1, len(wanted)):
        where.append(f"EXISTS (SELECT 1 FROM contact_tags t{tag_index} WHERE"
                     f" t{tag_index}.contact_id = t0.contact_id AND t{tag_index}.tag = ?)")
    return joins, " AND ".join([*where, "t0.contact_id > ?"]), wanted


def list_contacts(tx: Tx, after_id: int, limit: int, tags: Sequence[str],
                  unsubscribed: bool | None) -> list[Contact]:
    source, where, params = _tag_filter(tx, tags)
    order = "t0.contact_id" if tags else "k.id"
    params.append(after_id)
    if unsubscribed is not None:
        where += " AND k.unsubscribed = ?"
        params.append(int(unsubscribed))
    rows = tx.all(f"SELECT {CONTACT_COLUMNS} FROM {source} WHERE {where}"
                  f" ORDER BY {order} LIMIT ?", [*params, max(0, limit)])
    return contacts_from(tx, rows)


def count_contacts(tx: Tx, tags: Sequence[str]) -> int:
    source, where, params = _tag_filter(tx, tags)
    row = tx.one(f"SELECT COUNT(*) FROM {source} WHERE {where}", [*params, 0])
    return 0 if row is None else int(row[0])


# --- changes ----------------------------------------------------------------

def tag_contacts(tx: Tx, external_ids: Sequence[str], tags: Sequence[str], add: bool) -> int:
    wanted = list(dict.fromkeys(external_ids))
    ids = _ids_by_external_id(tx, wanted)
    if not ids:
        raise NotFound(f"no contact with external id {wanted[0]!r}" if wanted
                       else "no contact given")
    contact_ids = sorted(ids.values())
    tag_list = sorted(set(tags))
    if tag_list:
        for chunk in chunks(contact_ids):
            where = (f"contact_id IN ({placeholders(len(chunk))})"
                     f" AND tag IN ({placeholders(len(tag_list))})")
            if add:
                present = {(int(row[0]), str(row[1])) for row in tx.all(
                    f"SELECT contact_id, tag FROM contact_tags WHERE {where}",
                    [*chunk, *tag_list])}
                _insert_tags(tx, [(cid, tag) for cid in chunk for tag in tag_list
                                  if (cid, tag) not in present])
            else:
                tx.execute(f"DELETE FROM contact_tags WHERE {where}", [*chunk, *tag_list])
        moment = now_ms()
        for chunk in chunks(contact_ids):
            tx.execute(f"UPDATE contacts{tx.dialect.by_id} SET updated_at = ?"
                       f" WHERE id IN ({placeholders(len(chunk))})", [moment, *chunk])
    return len(ids)


def set_contact_unsubscribed(tx: Tx, external_id: str, unsubscribed: bool) -> Contact:
    contact = _named(tx, external_id)
    tx.execute("UPDATE contacts SET unsubscribed = ?, updated_at = ? WHERE id = ?",
               (int(unsubscribed), now_ms(), contact.id))
    found = get_contact(tx, contact.id)
    if found is None:
        raise NotFound(f"no contact with external id {external_id!r}")
    return found


def delete_contact(tx: Tx, external_id: str) -> None:
    """Visitors and conversations are unlinked (they stay); tags and recipients go."""
    contact = _named(tx, external_id)
    tx.execute("UPDATE visitors SET contact_id = NULL WHERE contact_id = ?", (contact.id,))
    tx.execute("UPDATE conversations SET contact_id = NULL WHERE contact_id = ?", (contact.id,))
    tx.execute("DELETE FROM contact_tags WHERE contact_id = ?", (contact.id,))
    tx.execute("DELETE FROM campaign_recipients WHERE contact_id = ?", (contact.id,))
    tx.execute("DELETE FROM contacts WHERE id = ?", (contact.id,))


# --- identified visitors ----------------------------------------------------

def _ensure_contact(tx: Tx, external_id: str) -> int:
    """The id of contact ``external_id``, created when new, locked. Two instances creating
    the same one at once both succeed: the insert does nothing when the key exists (the
    second waits for the first's row, then finds it)."""
    moment = now_ms()
    conflict = (" ON DUPLICATE KEY UPDATE id = id" if tx.dialect.name == "mysql"
                else " ON CONFLICT (external_id) DO NOTHING")
    tx.execute("INSERT INTO contacts (external_id, name, email, phone, attributes,"
               " unsubscribed, created_at, updated_at) VALUES (?, '', '', '', '{}', 0, ?, ?)"
               + conflict, (external_id, moment, moment))
    row = tx.one(f"SELECT id FROM contacts WHERE external_id = ?{tx.dialect.for_update}",
                 (external_id,))
    if row is None:
        raise NotFound(f"no contact with external id {external_id!r}")
    return int(row[0])


def link_visitor(tx: Tx, visitor_id: int, external_id: str, name: str | None,
                 email: str | None) -> tuple[Contact, Conversation]:
    """See ``Store.link_visitor``. Locks the contact, then the visitor (the order of
    ``_sql_campaigns.deliver``), and reads anything else only then: on MySQL the first
    plain read fixes what later ones see, so a second device linking at the same moment
    sees the conversation the first one chose."""
    contact_id = _ensure_contact(tx, external_id)
    if tx.one(f"SELECT id FROM visitors WHERE id = ?{tx.dialect.for_update}",
              (visitor_id,)) is None:
        raise NotFound(f"no visitor with id {visitor_id}")
    contact = get_contact(tx, contact_id)
    if contact is None:
        raise NotFound(f"no contact with external id {external_id!r}")
    fills = [(column, value) for column, value, current in
             (("name", name, contact.name), ("email", email, contact.email))
             if value and not current]
    if fills:
        tx.execute(f"UPDATE contacts SET {', '.join(f'{c} = ?' for c, _ in fills)},"
                   " updated_at = ? WHERE id = ?",
                   [*(value for _, value in fills), now_ms(), contact.id])
        contact = get_contact(tx, contact_id) or contact
    tx.execute("UPDATE visitors SET contact_id = ? WHERE id = ?", (contact.id, visitor_id))
    conversation = contact_conversation(tx, contact.id)
    if conversation is None:
        row = tx.one(f"SELECT {CONVERSATION_COLUMNS}, c.contact_id FROM conversations c"
                     " WHERE c.visitor_id = ? ORDER BY c.id DESC LIMIT 1", (visitor_id,))
        if row is not None and row[-1] in (None, contact.id):
            conversation = conversation_from(row)
            tx.execute("UPDATE conversations SET contact_id = ? WHERE id = ?",
                       (contact.id, conversation.id))
    if conversation is None:
        conversation = new_conversation(tx, visitor_id, contact.id)
    return contact, conversation


def contact_conversation(tx: Tx, contact_id: int) -> Conversation | None:
    """The contact's newest conversation, whichever device (or campaign) began it."""
    row = tx.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.contact_id = ?"
                 " ORDER BY c.id DESC LIMIT 1", (contact_id,))
    return None if row is None else conversation_from(row)


def new_conversation(tx: Tx, visitor_id: int, contact_id: int,
                     status: ConversationStatus = ConversationStatus.OPEN) -> Conversation:
    """A new conversation of the contact. A campaign begins its conversations ``closed``:
    a message sent to 100,000 people must not put 100,000 conversations in the agents'
    waiting queue. The contact's reply reopens it, as any visitor's does."""
    created = now_ms()
    conversation_id = tx.insert(
        "INSERT INTO conversations (visitor_id, contact_id, status, assigned_to, last_seq,"
        " agent_read_seq, visitor_read_seq, created_at, updated_at)"
        " VALUES (?, ?, ?, NULL, 0, 0, 0, ?, ?)",
        (visitor_id, contact_id, status.value, created, created))
    conversation = Conversation(id=conversation_id, visitor_id=visitor_id,
                                status=status, assigned_to=None, last_seq=0,
                                agent_read_seq=0, visitor_read_seq=0,
                                created_at=from_ms(created), updated_at=from_ms(created))
    webhooks_sql.enqueue_events(tx, [hooks.conversation_created(conversation, contact_id)])
    return conversation


def contact_visitor(tx: Tx, contact: Contact) -> int:
    """A visitor row of the contact's own (a campaign reaching a contact who never chatted):
    its token hash is no hash of any token, so nobody can sign in as it."""
    visitor_id = tx.insert(
        "INSERT INTO visitors (token_hash, name, email, page, created_at, contact_id)"
        " VALUES (?, ?, ?, '', ?, ?)",
        (f"contact:{secrets.token_hex(16)}", contact.name, contact.email, now_ms(),
         contact.id))
    search_sql.index_visitor(tx, visitor_id, contact.name, contact.email)
    return visitor_id


def contact_for_visitor(tx: Tx, visitor_id: int) -> Contact | None:
    row = tx.one(f"SELECT {CONTACT_COLUMNS} FROM visitors v JOIN contacts k"
                 " ON k.id = v.contact_id WHERE v.id = ?", (visitor_id,))
    return None if row is None else contacts_from(tx, [row])[0]


def contact_for_conversation(tx: Tx, conversation_id: int) -> Contact | None:
    row = tx.one(f"SELECT {CONTACT_COLUMNS} FROM conversations c JOIN contacts k"
                 " ON k.id = c.contact_id WHERE c.id = ?", (conversation_id,))
    return None if row is None else contacts_from(tx, [row])[0]
