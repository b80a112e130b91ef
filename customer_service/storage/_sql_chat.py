"""Units of work on conversations and their messages, and the statistics.

Each function runs inside one transaction (a ``Tx``) that the backend opened;
see ``_sql`` for the conventions. What several MySQL writers rely on is here:
every write to a conversation locks its row first (``FOR UPDATE``; several rows
always in id order), and ``seq`` is assigned under that lock, in the
transaction that inserts the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from customer_service.core import webhooks as hooks
from customer_service.core.models import (
    AppendResult,
    Conversation,
    ConversationStatus,
    ConversationSummary,
    NewMessage,
    Role,
    Stats,
    StoredMessage,
)
from customer_service.errors import Conflict, NotFound
from customer_service.storage import _sql_search as search_sql
from customer_service.storage import _sql_webhooks as webhooks_sql
from customer_service.storage._sql import (
    CONVERSATION_COLUMNS,
    CONVERSATION_WIDTH,
    MESSAGE_COLUMNS,
    VISITOR_COLUMNS,
    VISITOR_WIDTH,
    Tx,
    chunks,
    conversation_from,
    dedupe_key,
    from_ms,
    message_from,
    now_ms,
    placeholders,
    to_ms,
    visitor_from,
)
from customer_service.storage._sql_labels import label_conditions, labels_by_conversation
from customer_service.storage._sql_people import get_agent

# --- conversations ----------------------------------------------------------

def _conversation(tx: Tx, conversation_id: int, *, lock: bool = False) -> Conversation | None:
    suffix = tx.dialect.for_update if lock else ""
    row = tx.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?{suffix}",
                 (conversation_id,))
    return None if row is None else conversation_from(row)


def _existing_conversation(tx: Tx, conversation_id: int) -> Conversation:
    conversation = _conversation(tx, conversation_id, lock=True)
    if conversation is None:
        raise NotFound(f"no conversation with id {conversation_id}")
    return conversation


def current_conversation(tx: Tx, visitor_id: int) -> Conversation:
    """The visitor's newest conversation, or a new one. Lock the visitor row first, so two
    instances cannot both create one.

    Only a conversation of nobody's or of the visitor's own contact: the visitor may have
    begun one for another user of a shared computer, then been relinked (and unlinked
    again, when that next user's contact was deleted), and its token alone must not open
    the first user's history. A deleted contact's conversations belong to nobody, so its
    visitors still get back the ones they had."""
    found = tx.one(f"SELECT contact_id FROM visitors WHERE id = ?{tx.dialect.for_update}",
                   (visitor_id,))
    if found is None:
        raise NotFound(f"no visitor with id {visitor_id}")
    row = tx.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.visitor_id = ?"
                 " AND (c.contact_id IS NULL OR c.contact_id = ?) ORDER BY c.id DESC LIMIT 1",
                 (visitor_id, found[0]))
    if row is not None:
        return conversation_from(row)
    created = now_ms()
    conversation_id = tx.insert(
        "INSERT INTO conversations (visitor_id, status, assigned_to, last_seq, agent_read_seq,"
        " visitor_read_seq, created_at, updated_at) VALUES (?, ?, NULL, 0, 0, 0, ?, ?)",
        (visitor_id, ConversationStatus.OPEN.value, created, created))
    conversation = Conversation(id=conversation_id, visitor_id=visitor_id,
                                status=ConversationStatus.OPEN, assigned_to=None, last_seq=0,
                                agent_read_seq=0, visitor_read_seq=0,
                                created_at=from_ms(created), updated_at=from_ms(created))
    webhooks_sql.enqueue_events(tx, [hooks.conversation_created(conversation, found[0])])
    return conversation


def get_conversation(tx: Tx, conversation_id: int) -> Conversation | None:
    return _conversation(tx, conversation_id)


def conversations_updated_since(tx: Tx, since: datetime, limit: int) -> list[Conversation]:
    rows = tx.all(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.updated_at >= ?"
                  " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (to_ms(since), max(0, limit)))
    return [conversation_from(row) for row in rows]


def list_conversations(tx: Tx, status: ConversationStatus | None, limit: int,
                       assigned_to: int | None = None, labels: Sequence[str] = ()
                       ) -> list[ConversationSummary]:
    """The last message is the row at ``seq = last_seq``: one primary-key lookup each;
    the labels of the whole page in one more query (``_sql_labels``)."""
    conditions: list[str] = []
    params: list[Any] = []
    if status is not None:
        conditions.append("c.status = ?")
        params.append(status.value)
    if assigned_to is not None:
        conditions.append("c.assigned_to = ?")
        params.append(assigned_to)
    label_terms, label_params = label_conditions(labels)
    conditions += label_terms
    params += label_params
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = tx.all(
        f"SELECT {CONVERSATION_COLUMNS}, {VISITOR_COLUMNS}, {MESSAGE_COLUMNS}"
        " FROM conversations c JOIN visitors v ON v.id = c.visitor_id"
        " LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq"
        f" {where} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
        [*params, max(0, limit)])
    summaries: list[ConversationSummary] = []
    page_labels = labels_by_conversation(tx, [int(row[0]) for row in rows])
    for row in rows:
        visitor_end = CONVERSATION_WIDTH + VISITOR_WIDTH
        message_row = row[visitor_end:]
        conversation = conversation_from(row[:CONVERSATION_WIDTH])
        summaries.append(ConversationSummary(
            conversation=conversation,
            visitor=visitor_from(row[CONVERSATION_WIDTH:visitor_end]),
            last_message=None if message_row[0] is None else message_from(message_row),
            labels=page_labels.get(conversation.id, ())))
    return summaries


def set_conversation_state(tx: Tx, conversation_id: int, status: ConversationStatus,
                           assigned_to: int | None,
                           expected: tuple[ConversationStatus, int | None] | None = None
                           ) -> Conversation:
    conversation = _existing_conversation(tx, conversation_id)
    if expected is not None and (conversation.status, conversation.assigned_to) != expected:
        raise Conflict(f"conversation {conversation_id} changed meanwhile; look again")
    agent = None if assigned_to is None else get_agent(tx, assigned_to)
    if assigned_to is not None and agent is None:
        raise NotFound(f"no agent with id {assigned_to}")
    updated = now_ms()
    needs_agent = conversation.needs_agent and status is not ConversationStatus.ASSIGNED
    # closed_at (reports, migration 0016): when an agent last closed it, NULL once reopened.
    keep = status is conversation.status is ConversationStatus.CLOSED
    closed_at = () if keep else (updated if status is ConversationStatus.CLOSED else None,)
    tx.execute("UPDATE conversations SET status = ?, assigned_to = ?, updated_at = ?,"
               f" needs_agent = ?, closed_at = {'closed_at' if keep else '?'} WHERE id = ?",
               (status.value, assigned_to, updated, int(needs_agent), *closed_at,
                conversation_id))
    changed = replace(conversation, status=status, assigned_to=assigned_to,
                      updated_at=from_ms(updated), needs_agent=needs_agent)
    webhooks_sql.enqueue_events(tx, hooks.state_events(conversation, changed,
                                                       agent.name if agent else ""))
    return changed


def set_needs_agent(tx: Tx, conversation_id: int, needs_agent: bool) -> Conversation:
    """An assigned conversation is never flagged: it has its agent already."""
    conversation = _existing_conversation(tx, conversation_id)
    if needs_agent and conversation.status is ConversationStatus.ASSIGNED:
        return conversation
    if conversation.needs_agent == needs_agent:
        return conversation
    tx.execute("UPDATE conversations SET needs_agent = ? WHERE id = ?",
               (int(needs_agent), conversation_id))
    return replace(conversation, needs_agent=needs_agent)


def find_message(tx: Tx, sender_role: Role, sender_id: int | None,
                 client_id: str) -> StoredMessage | None:
    key = dedupe_key(NewMessage(0, sender_role, sender_id, "", "", client_id=client_id))
    row = tx.one(f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.dedupe_key = ?", (key,))
    return None if row is None else message_from(row)


def mark_read(tx: Tx, conversation_id: int, by_visitor: bool, seq: int) -> Conversation:
    """Reading is not activity: ``updated_at`` stays, so listings do not reorder."""
    conversation = _existing_conversation(tx, conversation_id)
    current = conversation.visitor_read_seq if by_visitor else conversation.agent_read_seq
    wanted = max(current, min(seq, conversation.last_seq))
    if wanted == current:
        return conversation
    column = "visitor_read_seq" if by_visitor else "agent_read_seq"
    tx.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (wanted, conversation_id))
    if by_visitor:
        return replace(conversation, visitor_read_seq=wanted)
    return replace(conversation, agent_read_seq=wanted)


# --- messages ---------------------------------------------------------------

def append_messages(tx: Tx, batch: Sequence[NewMessage]) -> list[AppendResult]:
    """Store a batch in order; see ``Store.append_messages`` for the contract.

    The conversation rows are locked first, all at once and in id order, so two
    MySQL instances appending to overlapping conversations wait for each other
    instead of deadlocking, and each reads the ``last_seq`` the other committed.
    Reading the dedupe keys after taking those locks means a resend committed by
    another instance is seen; a resend racing into a *different* conversation is
    caught by the unique index (the MySQL backend retries the batch).
    """
    conversation_ids = sorted({message.conversation_id for message in batch})
    last_seq: dict[int, int] = {}
    assignee: dict[int, int | None] = {}
    owners: dict[int, tuple[int, int | None]] = {}
    """The visitor and contact of each conversation (``message.created`` carries them)."""
    for chunk in chunks(conversation_ids):
        for row in tx.all("SELECT id, last_seq, assigned_to, visitor_id, contact_id FROM"
                          f" conversations{tx.dialect.by_id}"
                          f" WHERE id IN ({placeholders(len(chunk))})"
                          f" ORDER BY id{tx.dialect.for_update}", chunk):
            last_seq[int(row[0])] = int(row[1])
            assignee[int(row[0])] = None if row[2] is None else int(row[2])
            owners[int(row[0])] = (int(row[3]), None if row[4] is None else int(row[4]))
    missing = [cid for cid in conversation_ids if cid not in last_seq]
    if missing:
        raise NotFound(f"no conversation with id {missing[0]}")

    keys = [dedupe_key(message) for message in batch]
    wanted_keys = sorted({key for key in keys if key is not None})
    stored: dict[str, StoredMessage] = {}
    for chunk in chunks(wanted_keys):
        for row in tx.all(f"SELECT m.dedupe_key, {MESSAGE_COLUMNS} FROM messages m"
                          f" WHERE m.dedupe_key IN ({placeholders(len(chunk))})", chunk):
            stored[row[0]] = message_from(row[1:])

    created = now_ms()
    created_at = from_ms(created)
    results: list[AppendResult] = []
    inserts: list[tuple[Any, ...]] = []
    for message, key in zip(batch, keys, strict=True):
        original = stored.get(key) if key is not None else None
        if original is not None:
            results.append(AppendResult(message=original, duplicate=True,
                                        assigned_to=assignee[message.conversation_id]))
            continue
        seq = last_seq[message.conversation_id] + 1
        last_seq[message.conversation_id] = seq
        new = StoredMessage(
            conversation_id=message.conversation_id, seq=seq, sender_role=message.sender_role,
            sender_id=message.sender_id, sender_name=message.sender_name,
            content=message.content, created_at=created_at, client_id=message.client_id,
            stream_id=message.stream_id, campaign_id=message.campaign_id)
        if key is not None:
            stored[key] = new
        inserts.append((new.conversation_id, new.seq, new.sender_role.value, new.sender_id,
                        new.sender_name, new.content, new.client_id, new.stream_id, key,
                        created, new.campaign_id))
        results.append(AppendResult(message=new, duplicate=False,
                                    assigned_to=assignee[message.conversation_id]))

    # One multi-row statement per chunk rather than a statement per row: SQLite's
    # driver gives up and retakes the GIL around every statement it steps, and
    # each retake waits behind the busy event loop.
    for chunk in chunks(inserts):
        tx.execute("INSERT INTO messages (conversation_id, seq, sender_role, sender_id,"
                   " sender_name, content, client_id, stream_id, dedupe_key, created_at,"
                   " campaign_id) VALUES "
                   + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                   [value for row in chunk for value in row])
    search_sql.index_messages(tx, [(row[0], row[1], created, row[5]) for row in inserts])
    webhooks_sql.enqueue_events(tx, (
        hooks.message_created(result.message, *owners[result.message.conversation_id])
        for result in results if not result.duplicate and hooks.reported(result.message)))
    touched = sorted({row[0] for row in inserts})
    for ids in chunks(touched):
        tx.execute(f"UPDATE conversations{tx.dialect.by_id} SET last_seq = CASE id "
                   + " ".join(["WHEN ? THEN ?"] * len(ids))
                   + f" END, updated_at = ? WHERE id IN ({placeholders(len(ids))})",
                   [*(v for cid in ids for v in (cid, last_seq[cid])), created, *ids])
    return results


def messages_after(tx: Tx, conversation_id: int, after_seq: int, limit: int) -> list[StoredMessage]:
    rows = tx.all(f"SELECT {MESSAGE_COLUMNS} FROM messages m"
                  " WHERE m.conversation_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?",
                  (conversation_id, after_seq, max(0, limit)))
    return [message_from(row) for row in rows]


def messages_before(tx: Tx, conversation_id: int, before_seq: int | None,
                    limit: int) -> list[StoredMessage]:
    if before_seq is None:
        rows = tx.all(f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ?"
                      " ORDER BY m.seq DESC LIMIT ?", (conversation_id, max(0, limit)))
    else:
        rows = tx.all(f"SELECT {MESSAGE_COLUMNS} FROM messages m"
                      " WHERE m.conversation_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?",
                      (conversation_id, before_seq, max(0, limit)))
    return [message_from(row) for row in reversed(rows)]


def stats(tx: Tx) -> Stats:
    """``messages`` is the sum of ``last_seq``: seqs are dense and messages are never
    deleted, and it spares a full count of the largest table."""
    agents, disabled = _aggregate(tx, "SELECT COUNT(*), COALESCE(SUM(disabled), 0) FROM agents")
    (visitors,) = _aggregate(tx, "SELECT COUNT(*) FROM visitors")
    (messages,) = _aggregate(tx, "SELECT COALESCE(SUM(last_seq), 0) FROM conversations")
    by_status = {status.value: 0 for status in ConversationStatus}
    for status, count in tx.all("SELECT status, COUNT(*) FROM conversations GROUP BY status"):
        by_status[str(status)] = int(count)
    return Stats(agents=agents, agents_disabled=disabled, visitors=visitors,
                 conversations_by_status=by_status, messages=messages)


def _aggregate(tx: Tx, sql: str) -> list[int]:
    row = tx.one(sql)
    if row is None:
        raise RuntimeError(f"an aggregate returned no row: {sql}")
    return [int(value) for value in row]
