"""The conversation label methods both SQL backends share (the SQL: ``_sql_labels``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TypeVar

from customer_service.storage import _sql_labels as labels_sql
from customer_service.storage._sql import Tx

T = TypeVar("T")


class ConversationLabels(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def conversation_labels(self, conversation_id: int) -> list[str]:
        return await self._run(lambda tx: labels_sql.conversation_labels(tx, conversation_id),
                               write=False)

    async def add_conversation_labels(self, conversation_id: int,
                                      labels: Sequence[str]) -> list[str]:
        wanted = list(labels)
        return await self._run(lambda tx: labels_sql.add_labels(tx, conversation_id, wanted),
                               write=True)

    async def remove_conversation_labels(self, conversation_id: int,
                                         labels: Sequence[str]) -> list[str]:
        wanted = list(labels)
        return await self._run(lambda tx: labels_sql.remove_labels(tx, conversation_id, wanted),
                               write=True)
