"""The SQL of leave-a-message, written once for both dialects (``sql_store_leave_message``).

The address lives on the conversation (``conversations.left_email``, migration 0011), so
every read of a conversation carries it to the agents without another query.
"""

from __future__ import annotations

from dataclasses import replace

from customer_service.core.models import Conversation
from customer_service.errors import NotFound
from customer_service.storage._sql import CONVERSATION_COLUMNS, Tx, conversation_from, from_ms, now_ms


def set_left_email(tx: Tx, conversation_id: int, email: str) -> Conversation:
    row = tx.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?"
                 f"{tx.dialect.for_update}", (conversation_id,))
    if row is None:
        raise NotFound(f"no conversation with id {conversation_id}")
    conversation = conversation_from(row)
    updated = now_ms()
    tx.execute("UPDATE conversations SET left_email = ?, updated_at = ? WHERE id = ?",
               (email, updated, conversation_id))
    return replace(conversation, left_email=email, updated_at=from_ms(updated))
