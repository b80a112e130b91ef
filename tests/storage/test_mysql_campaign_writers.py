"""Campaign runners and identified visitors on one MySQL database through two
independent pools (two processes or instances): exactly once, one lease holder, one
contact per external id. What is checked is read back from the database."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
import trio

from customer_service.config import StorageConfig
from customer_service.core.models import (
    CampaignKind,
    CampaignSpec,
    CampaignStatus,
    ContactInput,
    RecipientState,
    Role,
)
from customer_service.storage.mysql import MysqlStore, open_mysql_store

pytestmark = pytest.mark.mysql

TIMEOUT = 120
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def pools(mysql_databases: Callable[[], StorageConfig]) -> AsyncIterator[list[MysqlStore]]:
    cfg = mysql_databases()
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(open_mysql_store(cfg))
        two = await stack.enter_async_context(open_mysql_store(cfg))
        await one.migrate()
        yield [one, two]


def spec() -> CampaignSpec:
    return CampaignSpec(name="race", kind=CampaignKind.TEMPLATE, body="Hi {name}",
                        sender_role=Role.AI, sender_id=None, sender_name="Assistant",
                        audience={}, concurrency=8, rate=100.0, scheduled_at=None,
                        fallback=None, max_tokens_total=None)


async def test_two_runners_deliver_each_recipient_exactly_once(pools: list[MysqlStore]) -> None:
    """Both pools walk the same 150 recipients (half with a conversation already, half
    without) with 8 tasks each, in opposite orders: each contact ends with exactly one
    campaign message and a sent recipient pointing at it; every delivery was either the
    one stored or "already sent"."""
    one, two = pools
    count = 150
    await one.upsert_contacts([ContactInput(f"c{i}", name=f"C{i}") for i in range(count)])
    ids = [c.id for c in await one.list_contacts(limit=count)]
    for contact_id in ids[::2]:                 # half have chatted already
        contact = await one.get_contact(contact_id)
        assert contact is not None
        visitor = await one.create_visitor(f"h{contact_id}", "", "", "/")
        await one.link_visitor(visitor.id, contact.external_id, None, None)
    campaign = await one.create_campaign(spec(), CampaignStatus.RUNNING)
    assert await one.add_recipients(campaign.id, ids) == count

    outcomes: Counter[str] = Counter()

    async def runner(store: MysqlStore, order: list[int], task: int) -> None:
        for contact_id in order[task::8]:
            delivery = await store.deliver_campaign_message(
                campaign.id, contact_id, f"Hi {contact_id}", 3600.0, NOW)
            outcomes["sent" if delivery.result is not None else delivery.skipped] += 1
            if delivery.result is not None:
                assert not delivery.result.duplicate

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for task in range(8):
                nursery.start_soon(runner, one, ids, task)
                nursery.start_soon(runner, two, ids[::-1], task)

    assert outcomes == {"sent": count, "already sent": count}
    report = await two.recipients_page(campaign.id, 0, 1000)
    assert [r.state for r in report] == [RecipientState.SENT] * count
    for recipient in report:
        assert recipient.conversation_id is not None
        messages = await two.messages_after(recipient.conversation_id, 0)
        assert [(m.campaign_id, m.content, m.seq) for m in messages] == [
            (campaign.id, f"Hi {recipient.contact_id}", recipient.message_seq)]
        owner = await two.contact_for_conversation(recipient.conversation_id)
        assert owner is not None and owner.id == recipient.contact_id
    assert (await one.stats()).messages == count


async def test_one_lease_holder_among_concurrent_claims(pools: list[MysqlStore]) -> None:
    one, two = pools
    campaign = await one.create_campaign(spec(), CampaignStatus.RUNNING)
    winners: list[str] = []

    async def claim(store: MysqlStore, owner: str) -> None:
        if await store.claim_campaign(campaign.id, owner, 15, NOW) is not None:
            winners.append(owner)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(claim, pools[i % 2], f"runner-{i}")
    assert len(winners) == 1
    stored = await two.get_campaign(campaign.id)
    assert stored is not None and stored.lease_owner == winners[0]
    later = NOW + timedelta(seconds=16)
    taken = await two.claim_campaign(campaign.id, "late", 15, later)
    assert taken is not None and taken.lease_owner == "late"


async def test_devices_linking_one_new_external_id_at_once(pools: list[MysqlStore]) -> None:
    """Ten devices (five per pool) identify as the same new user at the same moment:
    none fails, one contact is made, and all continue one conversation."""
    one, _ = pools
    visitors = [await one.create_visitor(f"dev-{i}", "", "", "/") for i in range(10)]
    answers: list[tuple[int, int]] = []

    async def link(store: MysqlStore, visitor_id: int) -> None:
        contact, conversation = await store.link_visitor(visitor_id, "new-user", "Ann", None)
        answers.append((contact.id, conversation.id))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for i, visitor in enumerate(visitors):
                nursery.start_soon(link, pools[i % 2], visitor.id)
    assert len(answers) == 10 and len(set(answers)) == 1
    assert await one.count_contacts() == 1
    for visitor in visitors:
        contact = await one.contact_for_visitor(visitor.id)
        assert contact is not None and contact.id == answers[0][0]


async def test_concurrent_imports_of_overlapping_batches(pools: list[MysqlStore]) -> None:
    """Two pools importing overlapping batches at once: every contact exists once."""
    one, two = pools

    async def load(store: MysqlStore, start: int) -> None:
        for base in range(start, start + 3000, 500):
            await store.upsert_contacts([ContactInput(f"i{n}", name=f"N{n}", tags=("t",))
                                         for n in range(base, base + 500)])

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load, one, 0)
            nursery.start_soon(load, two, 1500)
    assert await one.count_contacts() == 4500
    assert await two.count_contacts(tags=["t"]) == 4500
