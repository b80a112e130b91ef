"""The reports' and exports' methods of ``SqlStore`` (each one unit of work, read-only; SQL
in ``_sql_reports``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from customer_service.core.export import ExportRow
from customer_service.core.reports import GroupBy, RawReport
from customer_service.storage import _sql_reports as reports
from customer_service.storage._sql import Tx, to_ms

T = TypeVar("T")


class Reports(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def report(self, since: datetime, until: datetime, by: GroupBy | None
                     ) -> tuple[RawReport, RawReport | None]:
        return await self._run(lambda tx: reports.report(tx, to_ms(since), to_ms(until), by),
                               write=False)

    async def export_bounds(self, since: datetime, until: datetime) -> tuple[int, int] | None:
        return await self._run(
            lambda tx: reports.export_bounds(tx, to_ms(since), to_ms(until)), write=False)

    async def export_page(self, since: datetime, until: datetime, *, last_id: int,
                          after: tuple[int, int], limit: int) -> list[ExportRow]:
        return await self._run(lambda tx: reports.export_page(
            tx, to_ms(since), to_ms(until), last_id=last_id, after=after, limit=limit), write=False)
