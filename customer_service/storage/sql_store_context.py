"""The visitor context methods both SQL backends share (the SQL: ``_sql_context``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from customer_service.core.visitor_context import ContextUpdate, ConversationContext
from customer_service.storage import _sql_context as context_sql
from customer_service.storage._sql import Tx

T = TypeVar("T")


class VisitorContexts(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def record_visitor_context(self, updates: Sequence[ContextUpdate]) -> None:
        if not updates:
            return
        batch = list(updates)
        await self._run(lambda tx: context_sql.record(tx, batch), write=True)

    async def conversation_context(self, conversation_id: int) -> ConversationContext | None:
        return await self._run(
            lambda tx: context_sql.conversation_context(tx, conversation_id), write=False)
