"""The contact and campaign methods both SQL backends share: each is one unit of work.

Split from ``sql_store`` (which inherits them) to keep each module short; the SQL
is in ``_sql_contacts`` and ``_sql_campaigns``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from customer_service.core.models import (
    Campaign,
    CampaignDelivery,
    CampaignSpec,
    CampaignStatus,
    Contact,
    ContactInput,
    Conversation,
    Recipient,
    RecipientState,
    UpsertCounts,
)
from customer_service.storage import _sql_campaigns as campaigns
from customer_service.storage import _sql_contacts as contacts
from customer_service.storage._sql import Tx

T = TypeVar("T")


class ContactsAndCampaigns(ABC):
    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    # --- contacts -----------------------------------------------------------

    async def upsert_contacts(self, items: Sequence[ContactInput]) -> UpsertCounts:
        if not items:
            return UpsertCounts(created=0, updated=0)
        batch = list(items)
        return await self._run(lambda tx: contacts.upsert_contacts(tx, batch), write=True)

    async def get_contact(self, contact_id: int) -> Contact | None:
        return await self._run(lambda tx: contacts.get_contact(tx, contact_id), write=False)

    async def get_contact_by_external_id(self, external_id: str) -> Contact | None:
        return await self._run(
            lambda tx: contacts.get_contact_by_external_id(tx, external_id), write=False)

    async def contacts_by_external_ids(self, external_ids: Sequence[str]) -> list[Contact]:
        return await self._run(
            lambda tx: contacts.contacts_by_external_ids(tx, external_ids), write=False)

    async def list_contacts(self, *, after_id: int = 0, limit: int = 100,
                            tags: Sequence[str] = (), unsubscribed: bool | None = None
                            ) -> list[Contact]:
        wanted = list(tags)
        return await self._run(
            lambda tx: contacts.list_contacts(tx, after_id, limit, wanted, unsubscribed),
            write=False)

    async def count_contacts(self, *, tags: Sequence[str] = ()) -> int:
        wanted = list(tags)
        return await self._run(lambda tx: contacts.count_contacts(tx, wanted), write=False)

    async def tag_contacts(self, external_ids: Sequence[str], tags: Sequence[str],
                           add: bool) -> int:
        ids, wanted = list(external_ids), list(tags)
        return await self._run(lambda tx: contacts.tag_contacts(tx, ids, wanted, add),
                               write=True)

    async def set_contact_unsubscribed(self, external_id: str, unsubscribed: bool) -> Contact:
        return await self._run(
            lambda tx: contacts.set_contact_unsubscribed(tx, external_id, unsubscribed),
            write=True)

    async def delete_contact(self, external_id: str) -> None:
        await self._run(lambda tx: contacts.delete_contact(tx, external_id), write=True)

    async def link_visitor(self, visitor_id: int, external_id: str, name: str | None,
                           email: str | None) -> tuple[Contact, Conversation]:
        return await self._run(
            lambda tx: contacts.link_visitor(tx, visitor_id, external_id, name, email),
            write=True)

    async def contact_for_visitor(self, visitor_id: int) -> Contact | None:
        return await self._run(lambda tx: contacts.contact_for_visitor(tx, visitor_id),
                               write=False)

    async def contact_for_conversation(self, conversation_id: int) -> Contact | None:
        return await self._run(
            lambda tx: contacts.contact_for_conversation(tx, conversation_id), write=False)

    # --- campaigns ----------------------------------------------------------

    async def create_campaign(self, spec: CampaignSpec, status: CampaignStatus) -> Campaign:
        return await self._run(lambda tx: campaigns.create_campaign(tx, spec, status),
                               write=True)

    async def get_campaign(self, campaign_id: int) -> Campaign | None:
        return await self._run(lambda tx: campaigns.get_campaign(tx, campaign_id), write=False)

    async def list_campaigns(self) -> list[Campaign]:
        return await self._run(campaigns.list_campaigns, write=False)

    async def add_recipients(self, campaign_id: int, contact_ids: Sequence[int]) -> int:
        ids = list(contact_ids)
        return await self._run(lambda tx: campaigns.add_recipients(tx, campaign_id, ids),
                               write=True)

    async def set_campaign_status(self, campaign_id: int, status: CampaignStatus,
                                  expected: Sequence[CampaignStatus] | None = None,
                                  stop_reason: str | None = None) -> Campaign:
        wanted = None if expected is None else tuple(expected)
        return await self._run(
            lambda tx: campaigns.set_campaign_status(tx, campaign_id, status, wanted,
                                                     stop_reason),
            write=True)

    async def claim_campaign(self, campaign_id: int, owner: str, lease_seconds: float,
                             now: datetime, *, force: bool = False) -> Campaign | None:
        return await self._run(
            lambda tx: campaigns.claim_campaign(tx, campaign_id, owner,
                                                lease_seconds=lease_seconds, now=now,
                                                force=force),
            write=True)

    async def release_campaign(self, campaign_id: int, owner: str) -> None:
        await self._run(lambda tx: campaigns.release_campaign(tx, campaign_id, owner),
                        write=True)

    async def due_campaigns(self, now: datetime) -> list[Campaign]:
        return await self._run(lambda tx: campaigns.due_campaigns(tx, now), write=False)

    async def recipients_to_send(self, campaign_id: int, after_contact_id: int,
                                 limit: int) -> list[tuple[Recipient, Contact]]:
        return await self._run(
            lambda tx: campaigns.recipients_to_send(tx, campaign_id, after_contact_id, limit),
            write=False)

    async def recipients_page(self, campaign_id: int, after_contact_id: int,
                              limit: int) -> list[Recipient]:
        return await self._run(
            lambda tx: campaigns.recipients_page(tx, campaign_id, after_contact_id, limit),
            write=False)

    async def recipients_done_since(self, campaign_id: int, since: datetime) -> int:
        return await self._run(
            lambda tx: campaigns.recipients_done_since(tx, campaign_id, since), write=False)

    async def recipient_counts(self, campaign_id: int) -> dict[RecipientState, int]:
        return await self._run(lambda tx: campaigns.recipient_counts(tx, campaign_id),
                               write=False)

    async def start_generating(self, campaign_id: int, contact_id: int) -> int:
        return await self._run(
            lambda tx: campaigns.start_generating(tx, campaign_id, contact_id), write=True)

    async def store_generated(self, campaign_id: int, contact_id: int, text: str,
                              tokens: int) -> int:
        return await self._run(
            lambda tx: campaigns.store_generated(tx, campaign_id, contact_id, text, tokens),
            write=True)

    async def finish_recipient(self, campaign_id: int, contact_id: int,
                               state: RecipientState, error: str) -> None:
        await self._run(
            lambda tx: campaigns.finish_recipient(tx, campaign_id, contact_id, state, error),
            write=True)

    async def deliver_campaign_message(self, campaign_id: int, contact_id: int, content: str,
                                       min_gap_seconds: float, now: datetime
                                       ) -> CampaignDelivery:
        return await self._run(
            lambda tx: campaigns.deliver(tx, campaign_id, contact_id, content,
                                         min_gap_seconds=min_gap_seconds, now=now),
            write=True)
