"""Two server processes on one MariaDB: each webhook event is delivered by exactly one of
them (rows claimed with a lease in the database), in order per conversation."""

from __future__ import annotations

from collections import Counter

import trio

from customer_service.core.webhooks import DeliveryState
from customer_service.storage import open_store
from tests.cluster.conftest import Cluster, visitor_at
from tests.webhooks.receiver import Receiver, running

QUICK = {"webhooks": {"poll_interval": 0.05, "retry_base": 0.05, "retry_cap": 0.5,
                      "max_in_flight": 4}}


async def test_each_event_is_delivered_by_exactly_one_instance(cluster: Cluster) -> None:
    with running(Receiver()) as receiver:
        async with open_store(cluster.config) as store:
            await store.migrate()
            await store.add_webhook(receiver.url, ("message.created", "conversation.created"),
                                    "whsec_c")
        a = await cluster.start("a", **QUICK)
        b = await cluster.start("b", **QUICK)
        for server, prefix in ((a, "a"), (b, "b"), (a, "c"), (b, "d")):
            async with visitor_at(server) as (vis, _):
                for n in range(10):
                    await vis.send(type="text", id=f"{prefix}{n}", content=f"{prefix} {n}")
                await vis.recv_type("ack", id=f"{prefix}9")
        async with open_store(cluster.config) as store:
            with trio.fail_after(30):
                while True:
                    rows = await store.list_webhook_deliveries(limit=1000)
                    if all(r.state is DeliveryState.DELIVERED for r in rows):
                        break
                    await trio.sleep(0.05)
    assert len(rows) == 44  # 4 conversations created, 40 messages
    ids = Counter(e["id"] for e in receiver.events())
    assert set(ids) == {r.event_id for r in rows}
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert len(receiver.requests) == 44 and all(r.attempts == 1 for r in rows)
    by_conversation: dict[int, list[int]] = {}
    for event in receiver.events():
        if event["type"] == "message.created":
            by_conversation.setdefault(event["data"]["conversation_id"], []).append(
                event["data"]["seq"])
    assert all(seqs == list(range(1, 11)) for seqs in by_conversation.values())
