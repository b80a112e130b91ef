"""The block methods both SQL backends share (the SQL is in ``_sql_blocks``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from customer_service.core.blocks import Block
from customer_service.storage import _sql_blocks as blocks
from customer_service.storage._sql import Tx

T = TypeVar("T")


class Blocks(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def add_block(self, *, visitor_id: int | None, network: str | None, reason: str,
                        created_by: str, expires_at: datetime | None) -> Block:
        return await self._run(
            lambda tx: blocks.add_block(tx, visitor_id, network, reason=reason,
                                        created_by=created_by, expires_at=expires_at), write=True)

    async def get_block(self, block_id: int) -> Block | None:
        return await self._run(lambda tx: blocks.get_block(tx, block_id), write=False)

    async def list_blocks(self, now: datetime | None) -> list[Block]:
        return await self._run(lambda tx: blocks.list_blocks(tx, now), write=False)

    async def remove_block(self, block_id: int) -> Block:
        return await self._run(lambda tx: blocks.remove_block(tx, block_id), write=True)
