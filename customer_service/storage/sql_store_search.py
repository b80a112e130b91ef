"""The full-text search methods both SQL backends share (``SqlStore`` inherits them); the
SQL is in ``_sql_search``."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

from customer_service.core.search import SearchCursor, SearchHit, SearchQuery, check_limit
from customer_service.errors import StorageError
from customer_service.storage import _sql_search as search_sql
from customer_service.storage._sql import Tx

T = TypeVar("T")
log = logging.getLogger(__name__)

BACKFILL_LOG_EVERY = 50
"""Batches between two progress lines of a long backfill."""


class Search(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def search(self, query: SearchQuery, limit: int,
                     before: SearchCursor | None = None) -> list[SearchHit]:
        wanted = check_limit(limit)
        return await self._run(lambda tx: search_sql.search(tx, query, wanted, before),
                               write=False)

    async def backfill_search_index(self) -> int:
        """Index what was stored before the search migration (MySQL; SQLite's migration
        did it), a batch per transaction; return how many rows were indexed. A failure
        does not stop the start: it is logged, and the next start goes on from there."""
        total = batches = 0
        try:
            if not await self._run(search_sql.backfill_pending, write=False):
                return 0
            while (done := await self._run(search_sql.backfill_step, write=True)) is not None:
                if done and not total:
                    log.info("search index: indexing the messages and visitors stored"
                             " before it")
                total += done
                batches += 1
                if batches % BACKFILL_LOG_EVERY == 0:
                    log.info("search index: %s rows indexed so far", total)
        except StorageError as exc:
            log.warning("search index: %s rows indexed, then %s; the next start goes on",
                        total, exc)
            return total
        if total:
            log.info("search index: complete, %s rows indexed", total)
        return total
