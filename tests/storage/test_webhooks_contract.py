"""The ``Store`` contract for webhooks, run against every backend (see conftest.py): the
outbox written in the change's own transaction, claims with a lease, ordering per
conversation, dead letters and replay. Two pools racing for claims on MariaDB at the end."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
import trio

from customer_service.config import StorageConfig
from customer_service.core import webhooks as hooks
from customer_service.core.models import CampaignStatus, ConversationStatus, NewMessage, Role
from customer_service.core.webhooks import AttemptResult, DeliveryState, WebhookDelivery
from customer_service.errors import NotFound
from customer_service.storage import _sql_chat as chat
from customer_service.storage._sql import Tx
from customer_service.storage.base import Store
from customer_service.storage.mysql import open_mysql_store
from customer_service.storage.sql_store import SqlStore
from tests.storage.test_contacts_campaigns_contract import spec

ALL = hooks.EVENT_TYPES
LEASE = 60.0


def now() -> datetime:
    return datetime.now(UTC)


def msg(conversation_id: int, text: str, *, role: Role = Role.VISITOR,
        client_id: str | None = None) -> NewMessage:
    return NewMessage(conversation_id=conversation_id, sender_role=role, sender_id=None,
                      sender_name="Vera", content=text, client_id=client_id)


async def conversation(store: Store, token: str = "t1") -> int:
    visitor = await store.create_visitor(token, "Vera", "", "/")
    return (await store.current_conversation(visitor.id)).id


async def outbox(store: Store, webhook_id: int | None = None) -> list[WebhookDelivery]:
    """Every row, oldest first."""
    return list(reversed(await store.list_webhook_deliveries(webhook_id=webhook_id,
                                                             limit=1000)))


def data(delivery: WebhookDelivery) -> dict[str, object]:
    body = json.loads(delivery.body)
    assert body["id"] == delivery.event_id and body["type"] == delivery.event_type
    assert body["created_at"].endswith("Z")
    result: dict[str, object] = body["data"]
    return result


async def record(store: Store, delivery_id: int, owner: str, result: AttemptResult) -> bool:
    (written,) = await store.record_webhook_attempts(owner, [(delivery_id, result)])
    return written


def delivered(at: datetime) -> AttemptResult:
    return AttemptResult(DeliveryState.DELIVERED, at, at, 200, "", 3)


async def test_add_list_get_and_remove(store: Store) -> None:
    assert await store.list_webhooks() == []
    one = await store.add_webhook("https://a.example/h", ("message.created",), "whsec_1")
    two = await store.add_webhook("http://127.0.0.1:9/x", ALL, "s2")
    assert [w.id for w in await store.list_webhooks()] == [one.id, two.id]
    assert await store.get_webhook(two.id) == two
    assert two.events == ALL and two.secret == "s2" and not two.disabled
    assert await store.remove_webhook(one.id) == one
    assert await store.get_webhook(one.id) is None
    with pytest.raises(NotFound, match=f"no webhook with id {one.id}"):
        await store.remove_webhook(one.id)


async def test_no_webhook_no_outbox_row(store: Store) -> None:
    cid = await conversation(store)
    await store.append_messages([msg(cid, "hello")])
    assert await outbox(store) == []


async def test_events_are_queued_with_the_change(store: Store) -> None:
    hook = await store.add_webhook("https://a.example/h", ALL, "s")
    other = await store.add_webhook("https://b.example/h", ("conversation.closed",), "s")
    agent = await store.create_agent("ann", "Ann", "x")
    cid = await conversation(store)
    results = await store.append_messages([
        msg(cid, "hi", client_id="c1"), msg(cid, "welcome", role=Role.SYSTEM),
        msg(cid, "again", client_id="c1")])  # a resend: no second event
    assert [r.duplicate for r in results] == [False, False, True]
    await store.set_conversation_state(cid, ConversationStatus.ASSIGNED, agent.id)
    await store.set_conversation_state(cid, ConversationStatus.CLOSED, agent.id)
    await store.set_conversation_state(cid, ConversationStatus.CLOSED, agent.id)  # no change
    rows = await outbox(store, hook.id)
    assert [r.event_type for r in rows] == ["conversation.created", "message.created",
                                            "conversation.assigned", "conversation.closed"]
    assert all(r.conversation_id == cid and r.state is DeliveryState.PENDING for r in rows)
    assert data(rows[0])["conversation_id"] == cid
    stored = await store.get_conversation(cid)
    assert stored is not None
    visitor_id = stored.visitor_id
    assert data(rows[1]) | {"created_at": None} == {
        "conversation_id": cid, "visitor_id": visitor_id, "contact_id": None,
        "seq": 1, "role": "visitor", "sender_id": None,
        "sender_name": "Vera", "text": "hi", "client_id": "c1", "campaign_id": None,
        "created_at": None}
    assert data(rows[2])["agent_id"] == agent.id and data(rows[2])["previous_agent_id"] is None
    assert data(rows[2])["agent_name"] == "Ann" and data(rows[2])["visitor_id"] == visitor_id
    assert data(rows[3])["agent_id"] == agent.id and data(rows[3])["agent_name"] == "Ann"
    (closed,) = await outbox(store, other.id)
    assert closed.event_type == "conversation.closed"
    assert len({r.event_id for r in rows}) == 4
    assert closed.event_id == rows[3].event_id  # one event, one id, for every webhook


async def test_a_rolled_back_append_leaves_no_outbox_row(store: Store) -> None:
    assert isinstance(store, SqlStore)
    await store.add_webhook("https://a.example/h", ("message.created",), "s")
    cid = await conversation(store)

    def work(tx: Tx) -> None:
        chat.append_messages(tx, [msg(cid, "lost")])
        raise NotFound("fails after the append, in the same transaction")

    with pytest.raises(NotFound):
        await store._run(work, write=True)
    assert await outbox(store) == []
    assert await store.messages_after(cid, 0) == []


async def test_auto_assignment_and_campaign_finish_are_reported(store: Store) -> None:
    hook = await store.add_webhook("https://a.example/h",
                                   ("conversation.assigned", "campaign.finished"), "s")
    agent = await store.create_agent("ann", "Ann", "x")
    await store.set_agent_status(agent.id, "online")
    cid = await conversation(store)
    await store.append_messages([msg(cid, "help")])
    assert await store.assign_waiting(cid, agent.id, 5) is not None
    (assigned,) = await outbox(store, hook.id)
    assert data(assigned)["agent_name"] == "Ann"
    campaign = await store.create_campaign(spec(), CampaignStatus.READY)
    await store.set_campaign_status(campaign.id, CampaignStatus.RUNNING)
    await store.set_campaign_status(campaign.id, CampaignStatus.FINISHED)
    rows = await outbox(store, hook.id)
    assert [r.event_type for r in rows] == ["conversation.assigned", "campaign.finished"]
    assert data(rows[0])["agent_id"] == agent.id
    assert rows[1].conversation_id is None
    finished = data(rows[1])
    assert finished["campaign_id"] == campaign.id and finished["name"] == "Spring sale"
    assert finished["recipients"] == {"pending": 0, "generating": 0, "sent": 0, "failed": 0,
                                      "skipped": 0}


async def test_claims_follow_each_conversations_order(store: Store) -> None:
    hook = await store.add_webhook("https://a.example/h", ("message.created",), "s")
    a = await conversation(store, "a")
    b = await conversation(store, "b")
    await store.append_messages([msg(a, "a1"), msg(a, "a2"), msg(b, "b1"), msg(b, "b2")])
    first = await store.claim_webhook_deliveries("one", now(), LEASE, 10)
    assert [data(d)["text"] for d in first] == ["a1", "b1"]  # one head per conversation
    assert {d.url for d in first} == {hook.url} and first[0].secret == "s"
    assert await store.claim_webhook_deliveries("two", now(), LEASE, 10) == []  # claimed
    assert await record(store, first[0].id, "one", delivered(now()))
    fail = AttemptResult(DeliveryState.PENDING, now(), now(), 503, "HTTP 503", 5)
    assert await record(store, first[1].id, "one", fail)
    second = await store.claim_webhook_deliveries("two", now(), LEASE, 10)
    # b1 failed and is pending again: b2 still waits behind it
    assert [data(d)["text"] for d in second] == ["a2", "b1"]
    assert second[1].attempts == 1 and second[1].last_status == 503


async def test_one_webhook_gets_no_more_than_its_share_while_others_wait(store: Store) -> None:
    """A receiver that hangs cannot hold every slot of the sender: with ``share`` and more
    than one webhook, each gets at most ``share`` rows counting those still being sent."""
    slow = await store.add_webhook("https://slow.example/h", ("message.created",), "s")
    await store.append_messages([msg(await conversation(store, f"s{n}"), "x")
                                 for n in range(6)])  # six conversations: six heads
    alone = await store.claim_webhook_deliveries("me", now(), 1.0, 4, share=2)
    assert len(alone) == 4  # the only webhook: no share applies
    fast = await store.add_webhook("https://fast.example/h", ("message.created",), "s")
    await store.append_messages([msg(await conversation(store, f"f{n}"), "y")
                                 for n in range(6)])
    later = now() + timedelta(seconds=5)  # the first claims lapsed
    claimed = await store.claim_webhook_deliveries("me", later, LEASE, 10, share=2)
    by_hook = [d.webhook_id for d in claimed]
    assert by_hook.count(slow.id) == 2 and by_hook.count(fast.id) == 2
    more = await store.claim_webhook_deliveries("me", later, LEASE, 10, share=3,
                                                busy={slow.id: 3, fast.id: 2})
    assert [d.webhook_id for d in more] == [fast.id]  # slow is at its share


async def test_a_lapsed_lease_goes_to_another_and_the_old_holder_loses(store: Store) -> None:
    await store.add_webhook("https://a.example/h", ("message.created",), "s")
    cid = await conversation(store)
    await store.append_messages([msg(cid, "x")])
    (held,) = await store.claim_webhook_deliveries("one", now(), 1.0, 10)
    assert not await store.webhook_work_due(now())
    later = now() + timedelta(seconds=5)
    assert await store.webhook_work_due(later)
    (taken,) = await store.claim_webhook_deliveries("two", later, LEASE, 10)
    assert taken.id == held.id
    assert not await record(store, held.id, "one", delivered(now()))
    assert await record(store, taken.id, "two", delivered(now()))
    (row,) = await outbox(store)
    assert row.state is DeliveryState.DELIVERED and row.attempts == 1
    assert len(row.log) == 2  # both attempts are logged


async def test_dead_letters_are_listed_and_replayed(store: Store) -> None:
    hook = await store.add_webhook("https://a.example/h", ("message.created",), "s")
    cid = await conversation(store)
    await store.append_messages([msg(cid, "one"), msg(cid, "two")])
    (first,) = await store.claim_webhook_deliveries("me", now(), LEASE, 10)
    dead = AttemptResult(DeliveryState.DEAD, now(), now(), 410, "HTTP 410", 4)
    assert await record(store, first.id, "me", dead)
    (failed,) = await store.list_webhook_deliveries(failed=True)
    assert failed.id == first.id and failed.state is DeliveryState.DEAD
    assert failed.log[0].status == 410 and failed.last_error == "HTTP 410"
    (second,) = await store.claim_webhook_deliveries("me", now(), LEASE, 10)  # not blocked
    assert data(second)["text"] == "two"
    with pytest.raises(NotFound, match="evt_nope"):
        await store.replay_webhook_deliveries("evt_nope")
    with pytest.raises(NotFound, match="no webhook with id 999"):
        await store.replay_webhook_deliveries(None, 999)
    assert await store.replay_webhook_deliveries(first.event_id, hook.id) == 1
    assert await store.replay_webhook_deliveries(None) == 0  # nothing dead any more
    rows = await outbox(store)
    assert rows[0].state is DeliveryState.PENDING and rows[0].attempts == 1


async def test_attempts_log_is_bounded_and_delivered_rows_are_pruned(store: Store) -> None:
    await store.add_webhook("https://a.example/h", ("message.created",), "s")
    cid = await conversation(store)
    await store.append_messages([msg(cid, "x")])
    for _ in range(hooks.ATTEMPTS_KEPT + 3):
        (claimed,) = await store.claim_webhook_deliveries("me", now(), LEASE, 10)
        retry = AttemptResult(DeliveryState.PENDING, now(), now(), None, "timed out", 1)
        await record(store, claimed.id, "me", retry)
    (row,) = await outbox(store)
    assert row.attempts == hooks.ATTEMPTS_KEPT + 3 and len(row.log) == hooks.ATTEMPTS_KEPT
    (claimed,) = await store.claim_webhook_deliveries("me", now(), LEASE, 10)
    await record(store, claimed.id, "me", delivered(now()))
    assert await store.prune_webhook_deliveries(now() - timedelta(days=7)) == 0
    assert await store.prune_webhook_deliveries(now() + timedelta(seconds=1)) == 1
    assert await outbox(store) == []


async def test_removing_a_webhook_drops_its_outbox(store: Store) -> None:
    hook = await store.add_webhook("https://a.example/h", ("message.created",), "s")
    cid = await conversation(store)
    await store.append_messages([msg(cid, "x")])
    (claimed,) = await store.claim_webhook_deliveries("me", now(), LEASE, 10)
    await store.remove_webhook(hook.id)
    assert not await record(store, claimed.id, "me", delivered(now()))
    assert await store.list_webhook_deliveries() == []


async def test_store_order_matches_the_core_rule(store: Store) -> None:
    """The SQL's choice equals ``core.webhooks.deliverable`` on the same rows."""
    await store.add_webhook("https://a.example/h", ("message.created",), "s")
    await store.add_webhook("https://b.example/h", ("message.created",), "s")
    ids = [await conversation(store, f"v{i}") for i in range(3)]
    await store.append_messages([msg(ids[i % 3], f"m{i}") for i in range(9)])
    moment = now()
    rows = await outbox(store)
    expected = hooks.deliverable([hooks.Pending(r.id, r.webhook_id, r.conversation_id,
                                                r.next_attempt_at, None) for r in rows], moment)
    claimed = await store.claim_webhook_deliveries("me", moment, LEASE, 100)
    assert sorted(d.id for d in claimed) == sorted(expected)
    assert len(claimed) == 6  # 3 conversations x 2 webhooks


@pytest.mark.mysql
async def test_two_pools_racing_claim_each_row_once(
        mysql_databases: Callable[[], StorageConfig]) -> None:
    cfg = mysql_databases()
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(open_mysql_store(cfg))
        two = await stack.enter_async_context(open_mysql_store(cfg))
        await one.migrate()
        await one.add_webhook("https://a.example/h", ("message.created",), "s")
        conversations = [await conversation(one, f"v{i}") for i in range(40)]
        await one.append_messages([msg(cid, f"m{cid}-{n}") for n in range(3)
                                   for cid in conversations])
        got: dict[str, list[int]] = {"one": [], "two": []}

        async def claimer(store: Store, name: str) -> None:
            idle = 0
            while idle < 3:
                claimed = await store.claim_webhook_deliveries(name, now(), LEASE, 7)
                idle = 0 if claimed else idle + 1
                got[name] += [delivery.id for delivery in claimed]
                assert all(await store.record_webhook_attempts(
                    name, [(delivery.id, delivered(now())) for delivery in claimed]))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(claimer, one, "one")
                nursery.start_soon(claimer, two, "two")
        every = got["one"] + got["two"]
        assert len(every) == len(set(every)) == 120
        assert got["one"] and got["two"]
        rows = await one.list_webhook_deliveries(limit=1000)
        assert all(r.state is DeliveryState.DELIVERED and r.attempts == 1 for r in rows)


async def test_rows_behind_a_rescheduled_head_wait_with_it(store: Store) -> None:
    """A failure moves the rows queued behind it to the same time: a look at the queue
    finds nothing due (rather than stepping over each blocked row) until then."""
    await store.add_webhook("https://a.example/h", ("message.created",), "s")
    cid = await conversation(store)
    await store.append_messages([msg(cid, f"m{n}") for n in range(5)])
    moment = now()
    (head,) = await store.claim_webhook_deliveries("me", moment, LEASE, 10)
    later = moment + timedelta(minutes=5)
    retry = AttemptResult(DeliveryState.PENDING, later, moment, 503, "HTTP 503", 2)
    assert await record(store, head.id, "me", retry)
    assert not await store.webhook_work_due(moment)
    rows = await outbox(store)
    assert {r.next_attempt_at for r in rows} == {rows[0].next_attempt_at}
    assert await store.webhook_work_due(later)
    (again,) = await store.claim_webhook_deliveries("me", later, LEASE, 10)
    assert again.id == head.id
