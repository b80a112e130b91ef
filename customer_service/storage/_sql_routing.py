"""Units of work for auto-assignment: agents' capacity and status, their open counts, the
waiting conversations, and the compare-and-set that assigns one (migration 0010).

Each function runs inside one transaction (a ``Tx``) that the backend opened; see
``_sql`` for the conventions.

``assign_waiting`` is the one write auto-assignment makes. It locks the agent's row first
(``FOR UPDATE``; SQLite's write transactions exclude each other already), so two instances
giving conversations to one agent at once take turns, and only then counts the agent's
open conversations: on MySQL that count is the transaction's first plain read, so its
snapshot is taken after the lock and sees what the previous holder committed. Then the
conversation's row is locked and the assignment made only while it still waits (status
open, nobody assigned). Lock order is agent, then conversation; nothing else locks an
agent row while holding a conversation row, so this adds no deadlock.
"""

from __future__ import annotations

from dataclasses import replace

from customer_service.core import webhooks as hooks
from customer_service.core.assignment import AgentLoad, AgentStatus, check_status
from customer_service.core.models import Conversation, ConversationStatus, Role
from customer_service.errors import NotFound
from customer_service.storage import _sql_webhooks as webhooks_sql
from customer_service.storage._sql import (
    CONVERSATION_COLUMNS,
    Row,
    Tx,
    conversation_from,
    from_ms,
    now_ms,
)

_OPEN_COUNT = ("(SELECT COUNT(*) FROM conversations c WHERE c.assigned_to = a.id"
               " AND c.status = 'assigned')")
_LOAD_COLUMNS = (f"a.id, a.username, a.name, a.status, a.capacity, {_OPEN_COUNT},"
                 " a.last_assigned_at, a.disabled, a.bot")


def _load_from(row: Row) -> AgentLoad:
    return AgentLoad(agent_id=int(row[0]), username=row[1], name=row[2],
                     status=check_status(row[3]),
                     capacity=None if row[4] is None else int(row[4]),
                     open_count=int(row[5]), last_assigned_at=int(row[6]),
                     disabled=bool(row[7]), bot=bool(row[8]))


def agent_loads(tx: Tx) -> list[AgentLoad]:
    return [_load_from(row) for row in tx.all(
        f"SELECT {_LOAD_COLUMNS} FROM agents a ORDER BY a.id")]


def agent_load(tx: Tx, agent_id: int) -> AgentLoad | None:
    row = tx.one(f"SELECT {_LOAD_COLUMNS} FROM agents a WHERE a.id = ?", (agent_id,))
    return None if row is None else _load_from(row)


def _locked_agent(tx: Tx, where: str, value: object, missing: str) -> int:
    row = tx.one(f"SELECT id FROM agents WHERE {where} = ?{tx.dialect.for_update}", (value,))
    if row is None:
        raise NotFound(missing)
    return int(row[0])


def set_agent_capacity(tx: Tx, username: str, capacity: int | None) -> AgentLoad:
    agent_id = _locked_agent(tx, "username", username, f"no agent named {username!r}")
    tx.execute("UPDATE agents SET capacity = ? WHERE id = ?", (capacity, agent_id))
    found = agent_load(tx, agent_id)
    assert found is not None
    return found


def set_agent_status(tx: Tx, agent_id: int, status: AgentStatus) -> AgentLoad:
    found_id = _locked_agent(tx, "id", agent_id, f"no agent with id {agent_id}")
    tx.execute("UPDATE agents SET status = ? WHERE id = ?", (status, found_id))
    found = agent_load(tx, found_id)
    assert found is not None
    return found


def waiting_conversations(tx: Tx, limit: int) -> list[Conversation]:
    """Open, nobody assigned, and the visitor has written (a page view alone is not
    waiting); the oldest conversations first."""
    rows = tx.all(
        f"SELECT {CONVERSATION_COLUMNS} FROM conversations c"
        " WHERE c.status = 'open' AND c.assigned_to IS NULL AND c.last_seq > 0"
        " AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
        " AND m.sender_role = ?)"
        " ORDER BY c.created_at, c.id LIMIT ?", (Role.VISITOR.value, limit))
    return [conversation_from(row) for row in rows]


def assign_waiting(tx: Tx, conversation_id: int, agent_id: int,
                   capacity: int) -> Conversation | None:
    agent = tx.one("SELECT status, disabled, bot, name FROM agents"
                   f" WHERE id = ?{tx.dialect.for_update}", (agent_id,))
    if agent is None or agent[0] != "online" or agent[1] or agent[2]:
        return None
    open_row = tx.one("SELECT COUNT(*) FROM conversations WHERE assigned_to = ?"
                      " AND status = 'assigned'", (agent_id,))
    if open_row is not None and int(open_row[0]) >= capacity:
        return None
    row = tx.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?"
                 f"{tx.dialect.for_update}", (conversation_id,))
    if row is None:
        return None
    conversation = conversation_from(row)
    if conversation.status is not ConversationStatus.OPEN or conversation.assigned_to is not None:
        return None
    updated = now_ms()
    tx.execute("UPDATE conversations SET status = 'assigned', assigned_to = ?, updated_at = ?,"
               " needs_agent = 0 WHERE id = ?", (agent_id, updated, conversation_id))
    # Strictly later than any other agent's turn, so round-robin's order holds even for
    # assignments made within one millisecond.
    newest = tx.one("SELECT MAX(last_assigned_at) FROM agents")
    turn = max(updated, int(newest[0] or 0) + 1 if newest is not None else updated)
    tx.execute("UPDATE agents SET last_assigned_at = ? WHERE id = ?", (turn, agent_id))
    assigned = replace(conversation, status=ConversationStatus.ASSIGNED, assigned_to=agent_id,
                       updated_at=from_ms(updated), needs_agent=False)
    webhooks_sql.enqueue_events(tx, hooks.state_events(conversation, assigned, str(agent[3])))
    return assigned
