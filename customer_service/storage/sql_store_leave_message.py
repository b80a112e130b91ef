"""The leave-a-message method both SQL backends share (the SQL: ``_sql_leave_message``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from customer_service.core.models import Conversation
from customer_service.storage import _sql_leave_message as leave_sql
from customer_service.storage._sql import Tx

T = TypeVar("T")


class LeaveMessage(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def set_left_email(self, conversation_id: int, email: str) -> Conversation:
        return await self._run(
            lambda tx: leave_sql.set_left_email(tx, conversation_id, email), write=True)
