"""The webhook methods of ``SqlStore`` (each one unit of work; SQL in ``_sql_webhooks``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from customer_service.core.webhooks import AttemptResult, Webhook, WebhookDelivery, WebhookEvent
from customer_service.storage import _sql_webhooks as webhooks
from customer_service.storage._sql import Tx

T = TypeVar("T")


class Webhooks(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def add_webhook(self, url: str, events: Sequence[str], secret: str) -> Webhook:
        wanted = list(events)
        return await self._run(lambda tx: webhooks.add_webhook(tx, url, wanted, secret),
                               write=True)

    async def list_webhooks(self) -> list[Webhook]:
        return await self._run(webhooks.list_webhooks, write=False)

    async def get_webhook(self, webhook_id: int) -> Webhook | None:
        return await self._run(lambda tx: webhooks.get_webhook(tx, webhook_id), write=False)

    async def remove_webhook(self, webhook_id: int) -> Webhook:
        return await self._run(lambda tx: webhooks.remove_webhook(tx, webhook_id), write=True)

    async def enqueue_webhook_events(self, events: Sequence[WebhookEvent]) -> int:
        items = list(events)
        return await self._run(lambda tx: webhooks.enqueue_events(tx, items), write=True)

    async def webhook_work_due(self, now: datetime) -> bool:
        return await self._run(lambda tx: webhooks.any_deliverable(tx, now), write=False)

    async def claim_webhook_deliveries(self, owner: str, now: datetime, lease_seconds: float,
                                       limit: int, *, share: int | None = None,
                                       busy: Mapping[int, int] | None = None
                                       ) -> list[WebhookDelivery]:
        return await self._run(
            lambda tx: webhooks.claim_deliveries(tx, owner, now, lease_seconds, limit,
                                                 share=share, busy=busy),
            write=True)

    async def record_webhook_attempts(self, owner: str,
                                      results: Sequence[tuple[int, AttemptResult]]
                                      ) -> list[bool]:
        items = list(results)
        if not items:
            return []
        return await self._run(lambda tx: webhooks.record_attempts(tx, owner, items),
                               write=True)

    async def list_webhook_deliveries(self, *, failed: bool = False,
                                      webhook_id: int | None = None,
                                      limit: int = 50) -> list[WebhookDelivery]:
        return await self._run(
            lambda tx: webhooks.list_deliveries(tx, failed=failed, webhook_id=webhook_id,
                                                limit=limit), write=False)

    async def replay_webhook_deliveries(self, event_id: str | None,
                                        webhook_id: int | None = None) -> int:
        return await self._run(lambda tx: webhooks.replay(tx, event_id, webhook_id),
                               write=True)

    async def prune_webhook_deliveries(self, before: datetime, limit: int = 1000) -> int:
        return await self._run(lambda tx: webhooks.prune_delivered(tx, before, limit),
                               write=True)
