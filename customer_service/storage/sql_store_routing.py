"""The auto-assignment methods both SQL backends share (``SqlStore`` inherits them): agents'
capacity and status, open counts, waiting conversations, the assignment's compare-and-set.
The SQL is in ``_sql_routing``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from customer_service.core.assignment import AgentLoad, AgentStatus
from customer_service.core.models import Conversation
from customer_service.storage import _sql_routing as routing
from customer_service.storage._sql import Tx

T = TypeVar("T")


class AgentRouting(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def agent_loads(self) -> list[AgentLoad]:
        return await self._run(routing.agent_loads, write=False)

    async def agent_load(self, agent_id: int) -> AgentLoad | None:
        return await self._run(lambda tx: routing.agent_load(tx, agent_id), write=False)

    async def set_agent_capacity(self, username: str, capacity: int | None) -> AgentLoad:
        return await self._run(lambda tx: routing.set_agent_capacity(tx, username, capacity),
                               write=True)

    async def set_agent_status(self, agent_id: int, status: AgentStatus) -> AgentLoad:
        return await self._run(lambda tx: routing.set_agent_status(tx, agent_id, status),
                               write=True)

    async def waiting_conversations(self, limit: int = 100) -> list[Conversation]:
        return await self._run(lambda tx: routing.waiting_conversations(tx, limit), write=False)

    async def assign_waiting(self, conversation_id: int, agent_id: int,
                             capacity: int) -> Conversation | None:
        return await self._run(
            lambda tx: routing.assign_waiting(tx, conversation_id, agent_id, capacity),
            write=True)
