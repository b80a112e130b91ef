"""Messages another process commits (``campaigns run`` in a shell, no bus) reach the
sockets of a running server: the server looks for them while a campaign runs elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from customer_service.config import Config
from customer_service.core.identity import expected_hash
from customer_service.core.models import (
    CampaignKind,
    CampaignSpec,
    CampaignStatus,
    RecipientState,
    Role,
)
from customer_service.server.run import Server
from customer_service.storage import open_store
from tests.integration.helpers import visitor

SECRET = "outside-writes-test-secret"


@pytest.fixture
def config(config: Config) -> Config:
    return config.with_changes(identity__secret=SECRET)


def _who(user_id: str) -> dict[str, str]:
    return {"user_id": user_id, "user_hash": expected_hash(SECRET, user_id)}


def _spec(name: str) -> CampaignSpec:
    return CampaignSpec(name=name, kind=CampaignKind.TEMPLATE, body="Hello {name}",
                        sender_role=Role.AI, sender_id=None, sender_name="Assistant",
                        audience={"tags": ["vip"]}, concurrency=4, rate=10.0,
                        scheduled_at=None, fallback=None, max_tokens_total=None)


async def test_a_campaign_message_committed_by_another_process_arrives_live(
        server: Server) -> None:
    async with visitor(server, name="Ann", **_who("u-1")) as (client, _), \
            open_store(server.config) as other_process:
        # The runner in "another process": its own store on the same database file.
        contact = await other_process.get_contact_by_external_id("u-1")
        assert contact is not None
        campaign = await other_process.create_campaign(_spec("spring"), CampaignStatus.READY)
        await other_process.add_recipients(campaign.id, [contact.id])
        now = datetime.now(UTC)
        assert await other_process.claim_campaign(campaign.id, "cli-test", 30, now) is not None
        await other_process.set_campaign_status(campaign.id, CampaignStatus.RUNNING)

        delivery = await other_process.deliver_campaign_message(
            campaign.id, contact.id, "Hello Ann, spring is here", 0, now)
        assert delivery.result is not None
        frame = await client.recv_type("message", timeout=5, campaign_id=campaign.id)
        assert frame["content"] == "Hello Ann, spring is here"
        assert frame["seq"] == delivery.result.message.seq
        assert frame["sender"]["role"] == "ai"

        counts = await other_process.recipient_counts(campaign.id)
        assert counts[RecipientState.SENT] == 1
        await client.nothing_more(1.5)  # delivered once, not again at the next look


async def test_a_contact_offline_sees_the_campaign_message_on_the_next_visit(
        server: Server) -> None:
    async with visitor(server, name="Bo", **_who("u-2")) as (_, welcome):
        pass  # a first visit made the contact; now Bo is gone
    async with open_store(server.config) as other_process:
        contact = await other_process.get_contact_by_external_id("u-2")
        assert contact is not None
        campaign = await other_process.create_campaign(_spec("news"), CampaignStatus.READY)
        await other_process.add_recipients(campaign.id, [contact.id])
        delivery = await other_process.deliver_campaign_message(
            campaign.id, contact.id, "late news", 0, datetime.now(UTC))
        assert delivery.result is not None
    # Next visit, on another device (no token): the same conversation, the message in it.
    async with visitor(server, last_seq=0, **_who("u-2")) as (again, welcome_again):
        assert welcome_again["conversation_id"] == welcome["conversation_id"]
        assert welcome_again["visitor_read_seq"] < delivery.result.message.seq  # unread
        replayed = await again.recv_type("message", campaign_id=campaign.id)
        assert replayed["content"] == "late news"
