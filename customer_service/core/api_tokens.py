"""API tokens (``docs/api.md``): long-lived tokens for machines, each acting as a bot agent.

Pure decisions: a token's name and scope checked, and what each kind of credential may
do with each kind of endpoint (``may``). The server asks ``may`` for every request; the
store (``storage/_sql_api_tokens.py``) keeps only the tokens' SHA-256.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, get_args

from customer_service.errors import BadRequest

Scope = Literal["read", "write"]
SCOPES: Final[tuple[Scope, ...]] = get_args(Scope)
Access = Literal["public", "agent", "read", "write"]
"""What an endpoint needs: nothing, an agent's login token, or an API token's scope (an
agent's login token does everything a write token does)."""
Credential = Literal["agent", "read", "write"]
"""What a request carries: an agent's login token, or an API token of that scope."""

NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One API token as listed: never the secret."""

    id: int
    name: str
    scope: Scope
    agent_id: int
    """The bot agent its messages are sent as (named like the token)."""
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def check_name(name: str) -> str:
    """A token's name, which is also its bot agent's username and the name visitors see."""
    if not name.strip():
        raise BadRequest("the token name is empty: give a name such as 'crm-bot'")
    if not NAME.match(name):
        raise BadRequest(f"invalid token name {name[:80]!r}: 1-64 letters, digits or _ . @ -, "
                         "starting with a letter or digit")
    return name


def check_scope(value: str) -> Scope:
    for scope in SCOPES:
        if value == scope:
            return scope
    raise BadRequest(f"unknown scope {value[:40]!r}: read or write")


def may(access: Access, credential: Credential) -> str | None:
    """None when ``credential`` may use an endpoint needing ``access``; else why not (the
    message of a 403)."""
    if access == "public" or credential == "agent":
        return None
    if access == "agent":
        return "this endpoint is for agents (a login token); API tokens may not use it"
    if access == "write" and credential == "read":
        return "this token's scope is read: writing needs a token with the write scope"
    return None
