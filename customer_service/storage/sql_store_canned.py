"""The canned-reply methods of ``SqlStore`` (each one unit of work; SQL in ``_sql_canned``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from customer_service.core.canned import CannedReply
from customer_service.storage import _sql_canned as canned
from customer_service.storage._sql import Tx

T = TypeVar("T")


class CannedReplies(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def add_canned_reply(self, shortcut: str, text: str) -> CannedReply:
        return await self._run(lambda tx: canned.add_canned_reply(tx, shortcut, text),
                               write=True)

    async def list_canned_replies(self) -> list[CannedReply]:
        return await self._run(canned.list_canned_replies, write=False)

    async def delete_canned_reply(self, shortcut: str) -> None:
        await self._run(lambda tx: canned.delete_canned_reply(tx, shortcut), write=True)
