"""Units of work on conversation labels, and the label filter of the conversation list.

Each function runs inside one transaction (a ``Tx``) that the backend opened; see
``_sql`` for the conventions. A change locks the conversation's row first (``FOR
UPDATE``, as every conversation write in ``_sql_chat`` does), so two agents labelling
one conversation at once are serialized and the ``MAX_LABELS`` check holds. Labels
arrive normalized (``core/labels.py``); this module stores them as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from customer_service.core.labels import MAX_LABELS
from customer_service.errors import Conflict, NotFound
from customer_service.storage._sql import Tx, chunks, now_ms, placeholders


def _lock_conversation(tx: Tx, conversation_id: int) -> None:
    row = tx.one(f"SELECT id FROM conversations WHERE id = ?{tx.dialect.for_update}",
                 (conversation_id,))
    if row is None:
        raise NotFound(f"no conversation {conversation_id}")


def conversation_labels(tx: Tx, conversation_id: int) -> list[str]:
    return [str(row[0]) for row in tx.all(
        "SELECT label FROM conversation_labels WHERE conversation_id = ? ORDER BY label",
        (conversation_id,))]


def labels_by_conversation(tx: Tx, conversation_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """The labels of a page of conversations: one primary-key range per few hundred."""
    found: dict[int, list[str]] = {}
    for chunk in chunks(list(conversation_ids)):
        for conversation_id, label in tx.all(
                "SELECT conversation_id, label FROM conversation_labels WHERE conversation_id"
                f" IN ({placeholders(len(chunk))}) ORDER BY conversation_id, label", chunk):
            found.setdefault(int(conversation_id), []).append(str(label))
    return {cid: tuple(labels) for cid, labels in found.items()}


def add_labels(tx: Tx, conversation_id: int, labels: Sequence[str]) -> list[str]:
    _lock_conversation(tx, conversation_id)
    current = conversation_labels(tx, conversation_id)
    new = [label for label in dict.fromkeys(labels) if label not in current]
    if len(current) + len(new) > MAX_LABELS:
        raise Conflict(f"conversation {conversation_id} would have {len(current) + len(new)}"
                       f" labels; at most {MAX_LABELS} (remove one first)")
    if new:
        created = now_ms()
        tx.executemany("INSERT INTO conversation_labels (conversation_id, label, created_at)"
                       " VALUES (?, ?, ?)", [(conversation_id, label, created) for label in new])
    return sorted([*current, *new])


def remove_labels(tx: Tx, conversation_id: int, labels: Sequence[str]) -> list[str]:
    _lock_conversation(tx, conversation_id)
    wanted = list(dict.fromkeys(labels))
    if wanted:
        tx.execute(f"DELETE FROM conversation_labels WHERE conversation_id = ? AND label IN"
                   f" ({placeholders(len(wanted))})", [conversation_id, *wanted])
    return conversation_labels(tx, conversation_id)


def label_conditions(labels: Sequence[str]) -> tuple[list[str], list[Any]]:
    """``WHERE`` terms (on conversations ``c``) for conversations carrying every label."""
    conditions = ["c.id IN (SELECT l.conversation_id FROM conversation_labels l"
                  " WHERE l.label = ?)" for _ in labels]
    return conditions, list(labels)
