"""Units of work on people: agents, their login tokens, visitors.

Each function runs inside one transaction (a ``Tx``) that the backend opened;
see ``_sql`` for the conventions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from customer_service.core.models import (
    TOKEN_ID_LENGTH,
    TOKEN_TOUCH_SECONDS,
    Agent,
    AgentToken,
    Visitor,
)
from customer_service.errors import Conflict, NotFound
from customer_service.storage import _sql_search as search_sql
from customer_service.storage._sql import (
    AGENT_COLUMNS,
    VISITOR_COLUMNS,
    Tx,
    agent_from,
    from_ms,
    now_ms,
    to_ms,
    visitor_from,
)

# --- agents -----------------------------------------------------------------

def _agent_where(tx: Tx, where: str, params: Sequence[Any]) -> Agent | None:
    row = tx.one(f"SELECT {AGENT_COLUMNS} FROM agents a WHERE {where}", params)
    return None if row is None else agent_from(row)


def _agent_named(tx: Tx, username: str) -> Agent:
    agent = _agent_where(tx, f"a.username = ?{tx.dialect.for_update}", (username,))
    if agent is None:
        raise NotFound(f"no agent named {username!r}")
    return agent


def create_agent(tx: Tx, username: str, name: str, password_hash: str) -> Agent:
    if _agent_where(tx, "a.username = ?", (username,)) is not None:
        raise Conflict(f"an agent named {username!r} exists already")
    created = now_ms()
    agent_id = tx.insert(
        "INSERT INTO agents (username, name, password_hash, disabled, created_at)"
        " VALUES (?, ?, ?, 0, ?)", (username, name, password_hash, created))
    return Agent(id=agent_id, username=username, name=name, password_hash=password_hash,
                 disabled=False, created_at=from_ms(created))


def get_agent(tx: Tx, agent_id: int) -> Agent | None:
    return _agent_where(tx, "a.id = ?", (agent_id,))


def get_agent_by_username(tx: Tx, username: str) -> Agent | None:
    return _agent_where(tx, "a.username = ?", (username,))


def list_agents(tx: Tx) -> list[Agent]:
    rows = tx.all(f"SELECT {AGENT_COLUMNS} FROM agents a ORDER BY a.id")
    return [agent_from(row) for row in rows]


def set_agent_disabled(tx: Tx, username: str, disabled: bool) -> Agent:
    agent = _agent_named(tx, username)
    tx.execute("UPDATE agents SET disabled = ? WHERE id = ?", (int(disabled), agent.id))
    if disabled:
        tx.execute("DELETE FROM agent_tokens WHERE agent_id = ?", (agent.id,))
    return replace(agent, disabled=disabled)


def set_agent_password(tx: Tx, username: str, password_hash: str) -> Agent:
    agent = _agent_named(tx, username)
    tx.execute("UPDATE agents SET password_hash = ? WHERE id = ?", (password_hash, agent.id))
    tx.execute("DELETE FROM agent_tokens WHERE agent_id = ?", (agent.id,))
    return replace(agent, password_hash=password_hash)


def replace_password_hash(tx: Tx, agent_id: int, old_hash: str, new_hash: str) -> bool:
    return tx.execute("UPDATE agents SET password_hash = ? WHERE id = ? AND password_hash = ?",
                      (new_hash, agent_id, old_hash)) > 0


def add_agent_token(tx: Tx, agent_id: int, token_hash: str, label: str,
                    expires_at: datetime | None) -> None:
    if tx.one(f"SELECT id FROM agents WHERE id = ?{tx.dialect.for_update}", (agent_id,)) is None:
        raise NotFound(f"no agent with id {agent_id}")
    if tx.one("SELECT 1 FROM agent_tokens WHERE token_hash = ?", (token_hash,)) is not None:
        raise Conflict("this token exists already")
    tx.execute(
        "INSERT INTO agent_tokens (token_hash, agent_id, label, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (token_hash, agent_id, label, now_ms(),
         None if expires_at is None else to_ms(expires_at)))


def agent_for_token(tx: Tx, token_hash: str, now: datetime) -> tuple[Agent, bool] | None:
    """The agent, and whether the token's ``last_used_at`` is due to be written."""
    row = tx.one(
        f"SELECT {AGENT_COLUMNS}, t.last_used_at FROM agent_tokens t"
        " JOIN agents a ON a.id = t.agent_id"
        " WHERE t.token_hash = ? AND a.disabled = 0 AND a.bot = 0"
        " AND (t.expires_at IS NULL OR t.expires_at > ?)", (token_hash, to_ms(now)))
    if row is None:
        return None
    last_used = row[-1]
    stale = last_used is None or int(last_used) <= to_ms(now) - TOKEN_TOUCH_SECONDS * 1000
    return agent_from(row), stale


def touch_agent_token(tx: Tx, token_hash: str, now: datetime) -> None:
    """Note a token's use; a no-op when another instance noted it within the minute."""
    moment = to_ms(now)
    tx.execute("UPDATE agent_tokens SET last_used_at = ? WHERE token_hash = ?"
               " AND (last_used_at IS NULL OR last_used_at <= ?)",
               (moment, token_hash, moment - TOKEN_TOUCH_SECONDS * 1000))


def revoke_agent_token(tx: Tx, token_hash: str) -> bool:
    return tx.execute("DELETE FROM agent_tokens WHERE token_hash = ?", (token_hash,)) > 0


def list_agent_tokens(tx: Tx, agent_id: int) -> list[AgentToken]:
    rows = tx.all("SELECT token_hash, label, created_at, last_used_at, expires_at"
                  " FROM agent_tokens WHERE agent_id = ? ORDER BY created_at, token_hash",
                  (agent_id,))
    return [AgentToken(id=str(row[0])[:TOKEN_ID_LENGTH], label=row[1],
                       created_at=from_ms(row[2]),
                       last_used_at=None if row[3] is None else from_ms(row[3]),
                       expires_at=None if row[4] is None else from_ms(row[4])) for row in rows]


def revoke_agent_token_by_id(tx: Tx, agent_id: int, token_id: str) -> str:
    """Token ids are hex digits: anything else matches nothing (and no LIKE pattern)."""
    wanted = token_id.strip().lower()
    if not wanted or any(c not in "0123456789abcdef" for c in wanted):
        raise NotFound(f"no token {token_id!r}: a token id is hex digits from 'agents tokens'")
    rows = tx.all("SELECT token_hash FROM agent_tokens WHERE agent_id = ? AND token_hash LIKE ?",
                  (agent_id, wanted + "%"))
    if not rows:
        raise NotFound(f"no token {token_id!r} for this agent (see 'agents tokens')")
    if len(rows) > 1:
        raise Conflict(f"{len(rows)} tokens start with {token_id!r}; give more of the id")
    token_hash = str(rows[0][0])
    tx.execute("DELETE FROM agent_tokens WHERE token_hash = ?", (token_hash,))
    return token_hash


# --- visitors ---------------------------------------------------------------

def _visitor_where(tx: Tx, where: str, params: Sequence[Any]) -> Visitor | None:
    row = tx.one(f"SELECT {VISITOR_COLUMNS} FROM visitors v WHERE {where}", params)
    return None if row is None else visitor_from(row)


def create_visitor(tx: Tx, token_hash: str, name: str, email: str, page: str) -> Visitor:
    if tx.one("SELECT 1 FROM visitors WHERE token_hash = ?", (token_hash,)) is not None:
        raise Conflict("a visitor with this token exists already")
    created = now_ms()
    visitor_id = tx.insert(
        "INSERT INTO visitors (token_hash, name, email, page, created_at)"
        " VALUES (?, ?, ?, ?, ?)", (token_hash, name, email, page, created))
    search_sql.index_visitor(tx, visitor_id, name, email)
    return Visitor(id=visitor_id, name=name, email=email, page=page, created_at=from_ms(created))


def visitor_for_token(tx: Tx, token_hash: str) -> Visitor | None:
    return _visitor_where(tx, "v.token_hash = ?", (token_hash,))


def get_visitor(tx: Tx, visitor_id: int) -> Visitor | None:
    return _visitor_where(tx, "v.id = ?", (visitor_id,))


def update_visitor(tx: Tx, visitor_id: int, name: str | None, email: str | None,
                   page: str | None) -> Visitor:
    changes = [(column, value) for column, value in
               (("name", name), ("email", email), ("page", page)) if value is not None]
    if changes:
        assignments = ", ".join(f"{column} = ?" for column, _ in changes)
        tx.execute(f"UPDATE visitors SET {assignments} WHERE id = ?",
                   [value for _, value in changes] + [visitor_id])
    visitor = get_visitor(tx, visitor_id)
    if visitor is None:
        raise NotFound(f"no visitor with id {visitor_id}")
    if name is not None or email is not None:
        search_sql.index_visitor(tx, visitor_id, visitor.name, visitor.email)
    return visitor
