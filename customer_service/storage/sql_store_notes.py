"""The private-note methods both SQL backends share (``SqlStore`` inherits them); the SQL
is in ``_sql_notes``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from customer_service.core.notes import NOTES_LIMIT, AddedNote, Note
from customer_service.storage import _sql_notes as notes
from customer_service.storage._sql import Tx

T = TypeVar("T")


class Notes(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def add_note(self, conversation_id: int, agent_id: int, agent_name: str,
                       content: str, client_id: str | None = None) -> AddedNote:
        return await self._run(
            lambda tx: notes.add_note(tx, conversation_id, agent_id, agent_name, content,
                                      client_id=client_id), write=True)

    async def list_notes(self, conversation_id: int, limit: int = NOTES_LIMIT) -> list[Note]:
        return await self._run(lambda tx: notes.list_notes(tx, conversation_id, limit),
                               write=False)
