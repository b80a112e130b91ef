"""API tokens in SQL, for both dialects (see ``_sql``): create (with the token's bot agent),
list, revoke by name, and the lookup of a request's token.

A token is stored as its SHA-256 only. Its bot agent is an ``agents`` row with ``bot = 1``
named like the token, with a password hash no password matches (``!``): it never logs in.
"""

from __future__ import annotations

from datetime import datetime

from customer_service.core.api_tokens import ApiToken, check_scope
from customer_service.core.models import TOKEN_TOUCH_SECONDS, Agent
from customer_service.errors import Conflict, NotFound
from customer_service.storage._sql import AGENT_COLUMNS, Row, Tx, agent_from, from_ms, now_ms, to_ms

_COLUMNS = "k.id, k.name, k.scope, k.agent_id, k.created_at, k.last_used_at, k.revoked_at"
BOT_PASSWORD_HASH = "!"
"""Matches no password (``auth.verify_password`` refuses what is not an scrypt hash)."""


def _token_from(row: Row) -> ApiToken:
    return ApiToken(id=int(row[0]), name=row[1], scope=check_scope(row[2]),
                    agent_id=int(row[3]), created_at=from_ms(row[4]),
                    last_used_at=None if row[5] is None else from_ms(row[5]),
                    revoked_at=None if row[6] is None else from_ms(row[6]))


def create_api_token(tx: Tx, name: str, scope: str, token_hash: str) -> ApiToken:
    if tx.one(f"SELECT id FROM api_tokens WHERE name = ?{tx.dialect.for_update}",
              (name,)) is not None:
        raise Conflict(f"an API token named {name!r} exists already (revoked ones keep "
                       "their name)")
    if tx.one(f"SELECT id FROM agents WHERE username = ?{tx.dialect.for_update}",
              (name,)) is not None:
        raise Conflict(f"an agent named {name!r} exists already: the token's bot agent "
                       "takes its name, choose another")
    created = now_ms()
    agent_id = tx.insert(
        "INSERT INTO agents (username, name, password_hash, disabled, created_at, bot)"
        " VALUES (?, ?, ?, 0, ?, 1)", (name, name, BOT_PASSWORD_HASH, created))
    token_id = tx.insert(
        "INSERT INTO api_tokens (name, scope, token_hash, agent_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)", (name, check_scope(scope), token_hash, agent_id, created))
    return ApiToken(id=token_id, name=name, scope=check_scope(scope), agent_id=agent_id,
                    created_at=from_ms(created), last_used_at=None, revoked_at=None)


def list_api_tokens(tx: Tx) -> list[ApiToken]:
    return [_token_from(row) for row in tx.all(
        f"SELECT {_COLUMNS} FROM api_tokens k ORDER BY k.id")]


def revoke_api_token(tx: Tx, name: str) -> ApiToken:
    row = tx.one(f"SELECT {_COLUMNS} FROM api_tokens k WHERE k.name = ?"
                 f"{tx.dialect.for_update}", (name,))
    if row is None:
        raise NotFound(f"no API token named {name!r}")
    token = _token_from(row)
    if token.revoked_at is not None:
        return token
    revoked = now_ms()
    tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (revoked, token.id))
    return ApiToken(id=token.id, name=token.name, scope=token.scope, agent_id=token.agent_id,
                    created_at=token.created_at, last_used_at=token.last_used_at,
                    revoked_at=from_ms(revoked))


def api_token_for(tx: Tx, token_hash: str, now: datetime
                  ) -> tuple[ApiToken, Agent, bool] | None:
    """The unrevoked token with this hash and its (enabled) bot agent, and whether its
    ``last_used_at`` is due to be written."""
    row = tx.one(f"SELECT {_COLUMNS}, {AGENT_COLUMNS} FROM api_tokens k"
                 " JOIN agents a ON a.id = k.agent_id"
                 " WHERE k.token_hash = ? AND k.revoked_at IS NULL AND a.disabled = 0",
                 (token_hash,))
    if row is None:
        return None
    token = _token_from(row[:7])
    last = row[5]
    stale = last is None or int(last) <= to_ms(now) - TOKEN_TOUCH_SECONDS * 1000
    return token, agent_from(row[7:]), stale


def touch_api_token(tx: Tx, token_id: int, now: datetime) -> None:
    """Note a token's use; a no-op when another instance noted it within the minute."""
    moment = to_ms(now)
    tx.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?"
               " AND (last_used_at IS NULL OR last_used_at <= ?)",
               (moment, token_id, moment - TOKEN_TOUCH_SECONDS * 1000))
