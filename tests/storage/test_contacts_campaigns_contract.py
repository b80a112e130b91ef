"""The ``Store`` contract for contacts and campaigns, run against every backend
(see conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from customer_service.core.models import (
    CampaignKind,
    CampaignSpec,
    CampaignStatus,
    ContactInput,
    RecipientState,
    Role,
    UpsertCounts,
)
from customer_service.errors import Conflict, NotFound
from customer_service.storage.base import Store

NOW = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)
DAY = 24 * 3600.0


def spec(name: str = "Spring sale", *, scheduled_at: datetime | None = None,
         sender_role: Role = Role.AI, sender_id: int | None = None) -> CampaignSpec:
    return CampaignSpec(
        name=name, kind=CampaignKind.PROMPT, body="Write to {name}", sender_role=sender_role,
        sender_id=sender_id, sender_name="Assistant", audience={"tags": ["vip"]},
        concurrency=10, rate=5.5, scheduled_at=scheduled_at, fallback="Hello!",
        max_tokens_total=1000)


async def contacts(store: Store, count: int, prefix: str = "u", **fields: object) -> list[int]:
    items = [ContactInput(external_id=f"{prefix}{i}", name=f"Name {i}", **fields)  # type: ignore[arg-type]
             for i in range(count)]
    await store.upsert_contacts(items)
    found = [await store.get_contact_by_external_id(item.external_id) for item in items]
    return [c.id for c in found if c is not None]


async def campaign_to(store: Store, contact_ids: list[int], **kwargs: object) -> int:
    campaign = await store.create_campaign(spec(**kwargs), CampaignStatus.READY)  # type: ignore[arg-type]
    await store.add_recipients(campaign.id, contact_ids)
    return campaign.id


# --- contacts -----------------------------------------------------------------

async def test_upsert_creates_then_updates_and_keeps_what_is_not_given(store: Store) -> None:
    counts = await store.upsert_contacts([
        ContactInput("a1", name="Ann", email="ann@example.com", phone="+1",
                     tags=("vip", "beta", "vip"), attributes={"plan": "pro", "seats": 3}),
        ContactInput("b2", name="Bob")])
    assert counts == UpsertCounts(created=2, updated=0)
    ann = await store.get_contact_by_external_id("a1")
    assert ann is not None
    assert (ann.name, ann.email, ann.phone) == ("Ann", "ann@example.com", "+1")
    assert ann.tags == ("beta", "vip")
    assert ann.attributes == {"plan": "pro", "seats": 3}
    assert ann.unsubscribed is False and ann.last_campaign_at is None
    assert await store.get_contact(ann.id) == ann

    counts = await store.upsert_contacts([
        ContactInput("a1", email="ann@new.example", tags=("gold",), unsubscribed=True),
        ContactInput("c3")])
    assert counts == UpsertCounts(created=1, updated=1)
    again = await store.get_contact_by_external_id("a1")
    assert again is not None and again.id == ann.id
    assert (again.name, again.email, again.phone) == ("Ann", "ann@new.example", "+1")
    assert again.tags == ("gold",)                      # tags replace the set
    assert again.attributes == {"plan": "pro", "seats": 3}
    assert again.unsubscribed is True and again.created_at == ann.created_at
    await store.upsert_contacts([ContactInput("a1", attributes={"x": [1, None]}, tags=())])
    last = await store.get_contact_by_external_id("a1")
    assert last is not None and last.attributes == {"x": [1, None]} and last.tags == ()
    c3 = await store.get_contact_by_external_id("c3")
    assert c3 is not None and (c3.name, c3.tags, c3.attributes) == ("", (), {})
    assert await store.get_contact_by_external_id("nobody") is None
    assert await store.upsert_contacts([]) == UpsertCounts(0, 0)


async def test_external_ids_compare_exactly(store: Store) -> None:
    counts = await store.upsert_contacts([ContactInput("x"), ContactInput("x "),
                                          ContactInput("X")])
    assert counts == UpsertCounts(created=3, updated=0)
    found = await store.get_contact_by_external_id("x ")
    assert found is not None and found.external_id == "x "


async def test_a_batch_of_contacts_with_the_largest_attributes_is_written(store: Store) -> None:
    """300 contacts with attributes at the import's limit (65,000 bytes of JSON, made of
    quotes, which MySQL's escaping doubles) are ~40 MB of SQL as one multi-row statement:
    past MariaDB's max_allowed_packet (16 MiB), which drops the connection."""
    def fat(i: int) -> ContactInput:
        return ContactInput(f"fat{i}", name='"' * 255, tags=("big",),
                            attributes={"q": '"' * 32_400, "i": i})

    items = [fat(i) for i in range(300)]
    assert await store.upsert_contacts(items) == UpsertCounts(created=300, updated=0)
    assert await store.upsert_contacts(items) == UpsertCounts(created=0, updated=300)
    last = await store.get_contact_by_external_id("fat299")
    assert last is not None and last.attributes == {"q": '"' * 32_400, "i": 299}
    assert await store.count_contacts(tags=["big"]) == 300


async def test_large_batches_list_in_pages_by_id_and_by_tags(store: Store) -> None:
    items = [ContactInput(f"e{i:04d}", name=f"N{i}",
                          tags=tuple(t for t, every in (("even", 2), ("third", 3))
                                     if i % every == 0),
                          unsubscribed=i % 5 == 0) for i in range(1200)]
    assert await store.upsert_contacts(items) == UpsertCounts(created=1200, updated=0)
    assert await store.upsert_contacts(items) == UpsertCounts(created=0, updated=1200)
    assert await store.count_contacts() == 1200
    assert await store.count_contacts(tags=["even"]) == 600
    assert await store.count_contacts(tags=["even", "third"]) == 200
    assert await store.count_contacts(tags=["unknown"]) == 0

    seen: list[str] = []
    after = 0
    while page := await store.list_contacts(after_id=after, limit=250, tags=["third", "even"]):
        assert [c.id for c in page] == sorted(c.id for c in page) and page[0].id > after
        seen.extend(c.external_id for c in page)
        after = page[-1].id
    assert seen == [f"e{i:04d}" for i in range(0, 1200, 6)]
    everyone = await store.list_contacts(limit=2000)
    assert len(everyone) == 1200 and everyone[0].external_id == "e0000"
    subscribed = await store.list_contacts(limit=2000, tags=["even"], unsubscribed=False)
    assert len(subscribed) == 600 - 120
    assert all(not c.unsubscribed and "even" in c.tags for c in subscribed)


async def test_contacts_by_external_ids_reads_many_at_once_and_leaves_out_unknown_ones(
        store: Store) -> None:
    await store.upsert_contacts([ContactInput(f"e{n}", name=f"E {n}", tags=("t",))
                                 for n in range(1200)])
    wanted = [f"e{n}" for n in range(0, 1200, 2)] + ["nobody", "E1", "e1 ", "e0"]
    found = await store.contacts_by_external_ids(wanted)
    assert sorted(c.external_id for c in found) == sorted(f"e{n}" for n in range(0, 1200, 2))
    assert all(c.tags == ("t",) for c in found)
    assert await store.contacts_by_external_ids([]) == []


async def test_tag_untag_unsubscribe(store: Store) -> None:
    await store.upsert_contacts([ContactInput("a", tags=("old",)), ContactInput("b")])
    assert await store.tag_contacts(["a", "b", "ghost"], ["new", "vip"], add=True) == 2
    assert await store.tag_contacts(["a"], ["new"], add=True) == 1          # no duplicate
    a = await store.get_contact_by_external_id("a")
    assert a is not None and a.tags == ("new", "old", "vip")
    assert await store.tag_contacts(["a", "b"], ["vip", "old"], add=False) == 2
    a, b = [await store.get_contact_by_external_id(x) for x in ("a", "b")]
    assert a is not None and a.tags == ("new",)
    assert b is not None and b.tags == ("new",)
    with pytest.raises(NotFound, match="ghost"):
        await store.tag_contacts(["ghost"], ["x"], add=True)

    contact = await store.set_contact_unsubscribed("a", True)
    assert contact.unsubscribed is True and contact.tags == ("new",)
    assert (await store.set_contact_unsubscribed("a", False)).unsubscribed is False
    with pytest.raises(NotFound, match="ghost"):
        await store.set_contact_unsubscribed("ghost", True)


async def test_delete_unlinks_visitors_and_keeps_their_conversations(store: Store) -> None:
    visitor = await store.create_visitor("h1", "", "", "/")
    contact, conversation = await store.link_visitor(visitor.id, "ext-1", "Ann", None)
    (cid,) = await contacts(store, 1, prefix="other")
    campaign_id = await campaign_to(store, [contact.id, cid])
    await store.tag_contacts(["ext-1"], ["vip"], add=True)

    await store.delete_contact("ext-1")
    assert await store.get_contact(contact.id) is None
    assert await store.contact_for_visitor(visitor.id) is None
    assert await store.contact_for_conversation(conversation.id) is None
    assert await store.get_conversation(conversation.id) is not None
    assert await store.get_visitor(visitor.id) is not None
    assert [r.contact_id for r in await store.recipients_page(campaign_id, 0, 10)] == [cid]
    assert await store.count_contacts(tags=["vip"]) == 0
    with pytest.raises(NotFound, match="ext-1"):
        await store.delete_contact("ext-1")


# --- identified visitors ---------------------------------------------------------

async def test_link_visitor_two_devices_share_one_conversation(store: Store) -> None:
    phone = await store.create_visitor("h-phone", "", "", "/")
    laptop = await store.create_visitor("h-laptop", "", "", "/")
    own = await store.current_conversation(phone.id)    # began before identifying

    contact, first = await store.link_visitor(phone.id, "user-7", "Ann", "ann@example.com")
    assert first.id == own.id                            # adopted by the contact
    assert (contact.external_id, contact.name, contact.email) == (
        "user-7", "Ann", "ann@example.com")
    same, second = await store.link_visitor(laptop.id, "user-7", "Other", "other@example.com")
    assert second.id == own.id and same.id == contact.id
    assert (same.name, same.email) == ("Ann", "ann@example.com")   # filled only when empty
    for visitor in (phone, laptop):
        linked = await store.contact_for_visitor(visitor.id)
        assert linked is not None and linked.id == contact.id
    linked = await store.contact_for_conversation(own.id)
    assert linked is not None and linked.id == contact.id
    assert await store.contact_for_visitor(
        (await store.create_visitor("h-anon", "", "", "/")).id) is None


async def test_link_visitor_fills_an_imported_contact_and_makes_a_conversation(
        store: Store) -> None:
    await store.upsert_contacts([ContactInput("imp", phone="+33", tags=("vip",))])
    visitor = await store.create_visitor("h", "", "", "/")
    contact, conversation = await store.link_visitor(visitor.id, "imp", "Zoe", "")
    assert (contact.name, contact.email, contact.phone, contact.tags) == (
        "Zoe", "", "+33", ("vip",))
    assert conversation.visitor_id == visitor.id and conversation.last_seq == 0
    assert (await store.current_conversation(visitor.id)).id == conversation.id
    with pytest.raises(NotFound):
        await store.link_visitor(999_999, "imp", None, None)


async def test_an_unlinked_visitor_is_never_served_a_contacts_conversation(store: Store) -> None:
    """A visitor linked to Alice, relinked to Bob (a shared computer), then unlinked by
    Bob's deletion: its current conversation is a new one, not Alice's it began."""
    phone = await store.create_visitor("bobs-phone", "", "", "")
    await store.link_visitor(phone.id, "bob", None, None)  # Bob's conversation: his phone's
    shared = await store.create_visitor("shared-browser", "", "", "")
    _, alice_conversation = await store.link_visitor(shared.id, "alice", None, None)
    assert alice_conversation.visitor_id == shared.id
    await store.link_visitor(shared.id, "bob", None, None)
    await store.delete_contact("bob")
    assert await store.contact_for_visitor(shared.id) is None
    current = await store.current_conversation(shared.id)
    assert current.id != alice_conversation.id
    again = await store.current_conversation(shared.id)
    assert again.id == current.id  # and that new one is its own from then on
    # a visitor whose own contact was deleted keeps its conversation (no longer a contact's)
    own = await store.create_visitor("own-browser", "", "", "")
    _, own_conversation = await store.link_visitor(own.id, "carol", None, None)
    await store.delete_contact("carol")
    assert (await store.current_conversation(own.id)).id == own_conversation.id


async def test_a_visitor_conversation_of_another_contact_is_not_adopted(store: Store) -> None:
    visitor = await store.create_visitor("h", "", "", "/")
    _, first = await store.link_visitor(visitor.id, "alice", None, None)
    _, second = await store.link_visitor(visitor.id, "bob", None, None)
    assert second.id != first.id
    bob = await store.contact_for_conversation(second.id)
    alice = await store.contact_for_conversation(first.id)
    assert bob is not None and bob.external_id == "bob"
    assert alice is not None and alice.external_id == "alice"


# --- campaigns ---------------------------------------------------------------------

async def test_create_get_list_and_status_stamps(store: Store) -> None:
    at = NOW + timedelta(hours=1)
    campaign = await store.create_campaign(spec(scheduled_at=at), CampaignStatus.SCHEDULED)
    assert campaign.spec == spec(scheduled_at=at)
    assert campaign.status is CampaignStatus.SCHEDULED and campaign.tokens_used == 0
    assert campaign.started_at is None and campaign.finished_at is None
    assert await store.get_campaign(campaign.id) == campaign
    other = await store.create_campaign(spec("second"), CampaignStatus.READY)
    assert [c.id for c in await store.list_campaigns()] == [other.id, campaign.id]
    assert await store.get_campaign(999_999) is None

    running = await store.set_campaign_status(campaign.id, CampaignStatus.RUNNING,
                                              expected=[CampaignStatus.SCHEDULED])
    assert running.status is CampaignStatus.RUNNING and running.started_at is not None
    await store.claim_campaign(campaign.id, "runner-a", 15, NOW)
    paused = await store.set_campaign_status(campaign.id, CampaignStatus.PAUSED)
    again = await store.set_campaign_status(campaign.id, CampaignStatus.RUNNING)
    assert again.started_at == running.started_at and paused.finished_at is None
    with pytest.raises(Conflict, match="running"):
        await store.set_campaign_status(campaign.id, CampaignStatus.RUNNING,
                                        expected=[CampaignStatus.PAUSED])
    done = await store.set_campaign_status(campaign.id, CampaignStatus.CANCELLED,
                                           stop_reason="cancelled by ann")
    assert done.finished_at is not None and done.stop_reason == "cancelled by ann"
    assert done.lease_owner is None and done.lease_until is None
    with pytest.raises(NotFound):
        await store.set_campaign_status(999_999, CampaignStatus.RUNNING)


async def test_claim_is_refused_while_another_lease_lives(store: Store) -> None:
    campaign = await store.create_campaign(spec(), CampaignStatus.READY)
    claimed = await store.claim_campaign(campaign.id, "a", 15, NOW)
    assert claimed is not None and claimed.lease_owner == "a"
    assert claimed.lease_until == NOW + timedelta(seconds=15)
    assert await store.claim_campaign(campaign.id, "b", 15, NOW + timedelta(seconds=10)) is None
    renewed = await store.claim_campaign(campaign.id, "a", 15, NOW + timedelta(seconds=10))
    assert renewed is not None and renewed.lease_until == NOW + timedelta(seconds=25)
    assert await store.claim_campaign(campaign.id, "b", 15, NOW + timedelta(seconds=24)) is None
    taken = await store.claim_campaign(campaign.id, "b", 15, NOW + timedelta(seconds=25))
    assert taken is not None and taken.lease_owner == "b"
    forced = await store.claim_campaign(campaign.id, "c", 15, NOW + timedelta(seconds=26),
                                        force=True)
    assert forced is not None and forced.lease_owner == "c"
    await store.release_campaign(campaign.id, "b")                # not b's: no-op
    still = await store.get_campaign(campaign.id)
    assert still is not None and still.lease_owner == "c"
    await store.release_campaign(campaign.id, "c")
    released = await store.get_campaign(campaign.id)
    assert released is not None and released.lease_owner is None
    assert await store.claim_campaign(campaign.id, "b", 15, NOW) is not None
    with pytest.raises(NotFound):
        await store.claim_campaign(999_999, "a", 15, NOW)


async def test_due_campaigns(store: Store) -> None:
    due = await store.create_campaign(spec("due", scheduled_at=NOW), CampaignStatus.SCHEDULED)
    await store.create_campaign(spec("later", scheduled_at=NOW + timedelta(minutes=1)),
                                CampaignStatus.SCHEDULED)
    await store.create_campaign(spec("ready"), CampaignStatus.READY)
    alive = await store.create_campaign(spec("alive"), CampaignStatus.READY)
    dead = await store.create_campaign(spec("dead"), CampaignStatus.READY)
    for campaign, until in ((alive, 60), (dead, 5)):
        await store.set_campaign_status(campaign.id, CampaignStatus.RUNNING)
        await store.claim_campaign(campaign.id, "runner", until, NOW - timedelta(seconds=10))
    paused = await store.create_campaign(spec("paused", scheduled_at=NOW),
                                         CampaignStatus.PAUSED)
    assert paused.status is CampaignStatus.PAUSED
    assert [c.spec.name for c in await store.due_campaigns(NOW)] == ["due", "dead"]
    await store.set_campaign_status(due.id, CampaignStatus.RUNNING)
    await store.claim_campaign(due.id, "me", 15, NOW)
    assert [c.spec.name for c in await store.due_campaigns(NOW)] == ["dead"]


async def test_recipients_pages_counts_and_generation(store: Store) -> None:
    ids = await contacts(store, 7)
    campaign_id = await campaign_to(store, ids[:5])
    assert await store.add_recipients(campaign_id, [*ids, 999_999]) == 2   # 5 there, 1 unknown
    counts = await store.recipient_counts(campaign_id)
    assert counts == {RecipientState.PENDING: 7, RecipientState.GENERATING: 0,
                      RecipientState.SENT: 0, RecipientState.FAILED: 0,
                      RecipientState.SKIPPED: 0}
    with pytest.raises(NotFound):
        await store.add_recipients(999_999, ids)

    assert await store.start_generating(campaign_id, ids[1]) == 1
    assert await store.start_generating(campaign_id, ids[1]) == 2
    assert await store.store_generated(campaign_id, ids[1], "Hi Name 1", 30) == 30
    assert await store.start_generating(campaign_id, ids[3]) == 1
    assert await store.store_generated(campaign_id, ids[3], "Hi Name 3", 12) == 42
    await store.finish_recipient(campaign_id, ids[0], RecipientState.FAILED, "upstream 500")
    await store.finish_recipient(campaign_id, ids[2], RecipientState.SKIPPED, "no name")
    campaign = await store.get_campaign(campaign_id)
    assert campaign is not None and campaign.tokens_used == 42

    page = await store.recipients_to_send(campaign_id, 0, 3)
    assert [r.contact_id for r, _ in page] == [ids[1], ids[3], ids[4]]   # generating included
    first, contact = page[0]
    assert (first.state, first.attempts, first.text, first.tokens) == (
        RecipientState.GENERATING, 2, "Hi Name 1", 30)
    assert contact.id == ids[1] and contact.name == "Name 1" and first.external_id == "u1"
    rest = await store.recipients_to_send(campaign_id, ids[4], 3)
    assert [r.contact_id for r, _ in rest] == ids[5:]

    report = await store.recipients_page(campaign_id, 0, 100)
    assert [r.contact_id for r in report] == ids
    assert (report[0].state, report[0].error) == (RecipientState.FAILED, "upstream 500")
    assert (report[2].state, report[2].error) == (RecipientState.SKIPPED, "no name")
    assert [r.contact_id for r in await store.recipients_page(campaign_id, ids[4], 100)] == ids[5:]
    counts = await store.recipient_counts(campaign_id)
    assert (counts[RecipientState.PENDING], counts[RecipientState.GENERATING],
            counts[RecipientState.FAILED], counts[RecipientState.SKIPPED]) == (3, 2, 1, 1)
    with pytest.raises(NotFound):
        await store.start_generating(campaign_id, 999_999)


# --- delivery ------------------------------------------------------------------------

async def test_deliver_exactly_once_into_a_new_conversation(store: Store) -> None:
    agent = await store.create_agent("ann", "Ann", "h")
    (contact_id,) = await contacts(store, 1, email="u0@example.com")
    campaign_id = await campaign_to(store, [contact_id], sender_role=Role.AGENT,
                                    sender_id=agent.id)
    delivery = await store.deliver_campaign_message(campaign_id, contact_id, "Hello Name 0",
                                                    DAY, NOW)
    assert delivery.skipped == "" and delivery.result is not None
    message = delivery.result.message
    assert not delivery.result.duplicate and delivery.result.assigned_to is None
    assert message.campaign_id == campaign_id and message.seq == 1
    assert message.client_id == f"campaign:{campaign_id}:{contact_id}"
    assert (message.sender_role, message.sender_id, message.sender_name) == (
        Role.AGENT, agent.id, "Assistant")

    conversation = await store.get_conversation(message.conversation_id)
    assert conversation is not None and conversation.last_seq == 1
    visitor = await store.get_visitor(conversation.visitor_id)
    assert visitor is not None and (visitor.name, visitor.email) == ("Name 0", "u0@example.com")
    linked = await store.contact_for_visitor(visitor.id)
    assert linked is not None and linked.id == contact_id
    assert linked.last_campaign_at == NOW
    assert await store.messages_after(message.conversation_id, 0) == [message]
    assert await store.find_message(Role.AGENT, agent.id, message.client_id) == message

    (recipient,) = await store.recipients_page(campaign_id, 0, 10)
    assert (recipient.state, recipient.conversation_id, recipient.message_seq) == (
        RecipientState.SENT, message.conversation_id, 1)

    again = await store.deliver_campaign_message(campaign_id, contact_id, "Hello again",
                                                 0, NOW + timedelta(days=2))
    assert again == type(again)(None, skipped="already sent")
    assert len(await store.messages_after(message.conversation_id, 0)) == 1
    (recipient,) = await store.recipients_page(campaign_id, 0, 10)
    assert recipient.state is RecipientState.SENT and recipient.error == ""


async def test_deliver_appends_to_the_contacts_newest_conversation(store: Store) -> None:
    visitor = await store.create_visitor("h", "", "", "/")
    contact, conversation = await store.link_visitor(visitor.id, "ext", "Ann", None)
    agent = await store.create_agent("bo", "Bo", "h")
    await store.set_conversation_state(conversation.id, conversation.status.ASSIGNED, agent.id)
    await store.append_messages([])
    campaign_id = await campaign_to(store, [contact.id])
    delivery = await store.deliver_campaign_message(campaign_id, contact.id, "Hi", DAY, NOW)
    assert delivery.result is not None
    assert delivery.result.message.conversation_id == conversation.id
    assert delivery.result.assigned_to == agent.id
    assert delivery.result.message.sender_role is Role.AI


async def test_deliver_skips_unsubscribed_and_frequency_capped(store: Store) -> None:
    quiet, recent, old = await contacts(store, 3)
    await store.set_contact_unsubscribed("u0", True)
    earlier = await campaign_to(store, [recent, old])
    await store.deliver_campaign_message(earlier, recent, "one", DAY, NOW - timedelta(hours=23))
    await store.deliver_campaign_message(earlier, old, "one", DAY, NOW - timedelta(hours=25))

    campaign_id = await campaign_to(store, [quiet, recent, old])
    skipped = await store.deliver_campaign_message(campaign_id, quiet, "two", DAY, NOW)
    assert skipped.result is None and skipped.skipped == "unsubscribed"
    capped = await store.deliver_campaign_message(campaign_id, recent, "two", DAY, NOW)
    assert capped.result is None and capped.skipped == "frequency cap"
    sent = await store.deliver_campaign_message(campaign_id, old, "two", DAY, NOW)
    assert sent.result is not None and sent.result.message.seq == 2

    report = {r.contact_id: r for r in await store.recipients_page(campaign_id, 0, 10)}
    assert (report[quiet].state, report[quiet].error) == (RecipientState.SKIPPED,
                                                          "unsubscribed")
    assert (report[recent].state, report[recent].error) == (RecipientState.SKIPPED,
                                                            "frequency cap")
    assert (report[old].state, report[old].message_seq) == (RecipientState.SENT, 2)
    assert await store.recipients_to_send(campaign_id, 0, 10) == []
    contact = await store.get_contact(recent)
    assert contact is not None and contact.last_campaign_at == NOW - timedelta(hours=23)
    # Without a cap (min gap 0) the recent one would have been sent.
    third = await campaign_to(store, [recent])
    assert (await store.deliver_campaign_message(third, recent, "3", 0, NOW)).result is not None


async def test_finish_recipient_never_touches_a_sent_one(store: Store) -> None:
    (contact_id,) = await contacts(store, 1)
    campaign_id = await campaign_to(store, [contact_id])
    await store.deliver_campaign_message(campaign_id, contact_id, "hi", DAY, NOW)
    await store.finish_recipient(campaign_id, contact_id, RecipientState.FAILED, "late")
    (recipient,) = await store.recipients_page(campaign_id, 0, 1)
    assert recipient.state is RecipientState.SENT and recipient.error == ""
    with pytest.raises(NotFound):
        await store.deliver_campaign_message(campaign_id, 999_999, "x", DAY, NOW)


async def test_recipients_done_since_counts_what_was_finished_lately(store: Store) -> None:
    ids = await contacts(store, 6, prefix="pace")
    campaign_id = await campaign_to(store, ids)
    before = datetime.now(UTC) - timedelta(seconds=1)
    for contact_id in ids[:3]:
        await store.deliver_campaign_message(campaign_id, contact_id, "hi", 0, datetime.now(UTC))
    await store.finish_recipient(campaign_id, ids[3], RecipientState.FAILED, "upstream")
    assert await store.recipients_done_since(campaign_id, before) == 4
    assert await store.recipients_done_since(
        campaign_id, datetime.now(UTC) + timedelta(seconds=5)) == 0
