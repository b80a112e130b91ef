"""The API-token methods of ``SqlStore`` (each one unit of work; SQL in ``_sql_api_tokens``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from customer_service.core.api_tokens import ApiToken
from customer_service.core.models import Agent
from customer_service.storage import _sql_api_tokens as api_tokens
from customer_service.storage._sql import Tx

T = TypeVar("T")


class ApiTokens(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def create_api_token(self, name: str, scope: str, token_hash: str) -> ApiToken:
        return await self._run(
            lambda tx: api_tokens.create_api_token(tx, name, scope, token_hash), write=True)

    async def list_api_tokens(self) -> list[ApiToken]:
        return await self._run(api_tokens.list_api_tokens, write=False)

    async def revoke_api_token(self, name: str) -> ApiToken:
        return await self._run(lambda tx: api_tokens.revoke_api_token(tx, name), write=True)

    async def api_token_for(self, token_hash: str, now: datetime
                            ) -> tuple[ApiToken, Agent] | None:
        found = await self._run(lambda tx: api_tokens.api_token_for(tx, token_hash, now),
                                write=False)
        if found is None:
            return None
        token, agent, stale = found
        if stale:  # a write at most once a minute per token, not one per request
            await self._run(lambda tx: api_tokens.touch_api_token(tx, token.id, now),
                            write=True)
            token = replace(token, last_used_at=now)
        return token, agent
