"""A scheduled campaign with two instances on one database: it runs once, by one of them,
and a contact online on either instance gets its message live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymysql
import trio

from customer_service.core.models import (
    CampaignKind,
    CampaignSpec,
    CampaignStatus,
    ContactInput,
    RecipientState,
    Role,
)
from customer_service.storage import open_store
from tests.cluster.conftest import Cluster, visitor_at
from tests.cluster.harness import MYSQL

CONTACTS = 300


async def test_two_instances_run_a_scheduled_campaign_once(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    async with visitor_at(b, name="Vera") as (vera, welcome), \
            open_store(cluster.config) as store:
        await store.upsert_contacts([ContactInput(f"c-{n}", name=f"Contact {n}", tags=("spring",))
                                     for n in range(CONTACTS)])
        vera_contact, _ = await store.link_visitor(welcome["visitor_id"], "c-7", None, None)
        contacts = await store.list_contacts(tags=["spring"], limit=CONTACTS)
        at = datetime.now(UTC) + timedelta(seconds=3)
        campaign = await store.create_campaign(CampaignSpec(
            name="spring", kind=CampaignKind.TEMPLATE, body="Hi {name}, spring is here",
            sender_role=Role.AI, sender_id=None, sender_name="Assistant",
            audience={"tags": ["spring"]}, concurrency=8, rate=1000.0, scheduled_at=at,
            fallback=None, max_tokens_total=None), CampaignStatus.SCHEDULED)
        assert await store.add_recipients(campaign.id, [c.id for c in contacts]) == CONTACTS

        live = await vera.recv_type("message", timeout=30, campaign_id=campaign.id)
        assert live["content"] == "Hi Contact 7, spring is here"
        with trio.fail_after(30):
            while (await store.get_campaign(campaign.id)).status is not (  # type: ignore[union-attr]
                    CampaignStatus.FINISHED):
                await trio.sleep(0.2)
        counts = await store.recipient_counts(campaign.id)
        assert counts[RecipientState.SENT] == CONTACTS, counts
        await vera.nothing_more(1.0)
        assert vera_contact.id in {c.id for c in contacts}

    def per_conversation() -> list[tuple[int, int]]:
        connection = pymysql.connect(database=cluster.database, **MYSQL)  # type: ignore[arg-type]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT conversation_id, COUNT(*) FROM messages"
                               " WHERE campaign_id = %s GROUP BY conversation_id",
                               (campaign.id,))
                return [(int(row[0]), int(row[1])) for row in cursor.fetchall()]
        finally:
            connection.close()

    rows = await trio.to_thread.run_sync(per_conversation)
    assert len(rows) == CONTACTS and all(count == 1 for _, count in rows)
    runners = [server.name for server in (a, b)
               if f"campaign {campaign.id}: running" in server.log_text()]
    assert len(runners) == 1, cluster.logs()


async def test_a_server_killed_mid_campaign_is_restarted_and_the_campaign_finishes_once(
        cluster: Cluster) -> None:
    """kill -9 of the server running a scheduled campaign; the restarted server sees its
    runner's pid is gone, takes the lease at once and goes on: each contact once."""
    a = await cluster.start("a")
    contacts_count = 1500
    async with open_store(cluster.config) as store:
        await store.upsert_contacts([ContactInput(f"k-{n}", name=f"K {n}", tags=("kill",))
                                     for n in range(contacts_count)])
        contacts = await store.list_contacts(tags=["kill"], limit=contacts_count)
        campaign = await store.create_campaign(CampaignSpec(
            name="survives", kind=CampaignKind.TEMPLATE, body="Hello {name}",
            sender_role=Role.AI, sender_id=None, sender_name="Assistant",
            audience={"tags": ["kill"]}, concurrency=8, rate=300.0,
            scheduled_at=datetime.now(UTC), fallback=None, max_tokens_total=None),
            CampaignStatus.SCHEDULED)
        await store.add_recipients(campaign.id, [c.id for c in contacts])
        with trio.fail_after(30):
            while (await store.recipient_counts(campaign.id))[RecipientState.SENT] < 200:
                await trio.sleep(0.1)
        a.kill9()
        sent_at_kill = (await store.recipient_counts(campaign.id))[RecipientState.SENT]
        assert sent_at_kill < contacts_count

        again = await cluster.start("a-again")
        with trio.fail_after(60):
            while (await store.get_campaign(campaign.id)).status is not (  # type: ignore[union-attr]
                    CampaignStatus.FINISHED):
                await trio.sleep(0.2)
        counts = await store.recipient_counts(campaign.id)
        assert counts[RecipientState.SENT] == contacts_count, counts
        # It did not wait for the dead runner's lease to expire:
        assert "is gone; taking over" in again.log_text()

    def per_conversation() -> list[int]:
        connection = pymysql.connect(database=cluster.database, **MYSQL)  # type: ignore[arg-type]
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM messages WHERE campaign_id = %s"
                               " GROUP BY conversation_id", (campaign.id,))
                return [int(row[0]) for row in cursor.fetchall()]
        finally:
            connection.close()

    counts_per_conversation = await trio.to_thread.run_sync(per_conversation)
    assert len(counts_per_conversation) == contacts_count
    assert set(counts_per_conversation) == {1}
