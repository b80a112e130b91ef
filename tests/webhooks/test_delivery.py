"""Webhooks end to end: the real server (in process) sends to a real receiver on loopback.

Retries are quick here (``conftest.QUICK``): a base of 0.05 s, a cap of 2 s.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import trio
from click.testing import CliRunner

from customer_service.cli import cli
from customer_service.config import Config
from customer_service.core.webhooks import EVENT_TYPES, DeliveryState, WebhookDelivery
from customer_service.server.run import Server, open_server
from customer_service.storage.base import Store
from tests.integration.helpers import agent_socket, make_agent, visitor
from tests.webhooks.receiver import HANG, Receiver, Reply, running, wait_for

SECRET = "whsec_test"


async def all_delivered(store: Store, count: int = 1) -> list[WebhookDelivery]:
    """The outbox once every row (at least ``count``) is delivered (within 20 s)."""
    with trio.fail_after(20):
        while True:
            rows = await store.list_webhook_deliveries(limit=1000)
            if len(rows) >= count and all(r.state is DeliveryState.DELIVERED for r in rows):
                return rows
            await trio.sleep(0.02)


async def add_hook(server: Server, receiver: Receiver, events: tuple[str, ...] = EVENT_TYPES
                   ) -> int:
    return (await server.service.store.add_webhook(receiver.url, events, SECRET)).id


async def test_every_event_arrives_signed_once_and_in_order(server: Server,
                                                           receiver: Receiver) -> None:
    """The first three requests fail (503, 500, 502): retried; each conversation's events
    still arrive in commit order, each id once (counting 200s), every signature good."""
    receiver.secret = SECRET

    def plan(number: int, _event: dict[str, Any]) -> Reply:
        return (503, 500, 502)[number - 1] if number <= 3 else 200, {}, b"ok"

    receiver.plan = plan  # type: ignore[assignment]
    await add_hook(server, receiver)
    _, token = await make_agent(server, "alice")
    conversations: list[int] = []
    async with visitor(server, name="Ann") as (ann, ann_hello), \
            visitor(server, name="Bob") as (bob, bob_hello):
        conversations = [ann_hello["conversation_id"], bob_hello["conversation_id"]]
        for n in range(5):
            await ann.send(type="text", id=f"a{n}", content=f"ann {n}")
            await bob.send(type="text", id=f"b{n}", content=f"bob {n}")
        await ann.recv_type("ack", id="a4")
        await bob.recv_type("ack", id="b4")
        async with agent_socket(server, token) as (agent, _):
            await agent.send(type="accept", id="x1", conversation_id=conversations[0])
            await agent.recv_type("ack", id="x1")
            await agent.send(type="close", id="x2", conversation_id=conversations[0])
            await agent.recv_type("ack", id="x2")
    store = server.service.store
    rows = await all_delivered(store)
    events = receiver.events()
    assert receiver.bad_signatures == 0
    assert len(receiver.requests) == len(rows) + 3
    assert sorted(e["id"] for e in events) == sorted(r.event_id for r in rows)  # once each
    per_conversation: dict[int, list[str]] = defaultdict(list)
    for event in events:
        per_conversation[event["data"]["conversation_id"]].append(event["type"])
    assert [e["type"] for e in events if e["data"]["conversation_id"] == conversations[0]] == (
        ["conversation.created"] + ["message.created"] * 5 + ["conversation.assigned"]
        + ["conversation.closed"])
    for cid in conversations:
        seqs = [e["data"]["seq"] for e in events
                if e["type"] == "message.created" and e["data"]["conversation_id"] == cid]
        assert seqs == sorted(seqs) and len(seqs) >= 5
        times = [e["created_at"] for e in events if e["data"]["conversation_id"] == cid]
        assert times == sorted(times)
        assert next(e["type"] for e in events if e["data"]["conversation_id"] == cid) == \
            "conversation.created"
    request = receiver.answered()[0]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("customer-service/")
    assert request.headers["x-webhook-id"] == request.event["id"]
    assert request.headers["x-webhook-signature"].startswith("v1=")


async def test_429_waits_as_retry_after_says(server: Server, config: Config,
                                            receiver: Receiver) -> None:
    def plan(number: int, _event: dict[str, Any]) -> Reply:
        return (429, {"Retry-After": "1"}, b"slow down") if number == 1 else (200, {}, b"")

    receiver.plan = plan  # type: ignore[assignment]
    hook = await add_hook(server, receiver, ("conversation.created",))
    async with visitor(server):
        pass
    await all_delivered(server.service.store)
    first, second = receiver.requests[:2]
    assert second.at - first.at >= 0.9  # Retry-After: 1, not the backoff (0.05 s first)
    (row,) = await server.service.store.list_webhook_deliveries(webhook_id=hook)
    assert [a.status for a in row.log] == [200, 429]
    assert row.log[1].error == "HTTP 429: slow down"


async def test_410_is_a_dead_letter_at_once_and_replay_delivers(
        server: Server, config: Config, receiver: Receiver, tmp_path: Path) -> None:
    gone = True

    def plan(_number: int, _event: dict[str, Any]) -> Reply:
        return (410, {}, b"gone") if gone else (200, {}, b"ok")

    receiver.plan = plan  # type: ignore[assignment]
    hook = await add_hook(server, receiver, ("message.created",))
    store = server.service.store
    async with visitor(server) as (vis, _):
        await vis.send(type="text", id="m1", content="one")
        await vis.recv_type("ack", id="m1")

    async def dead() -> list[Any]:
        return await store.list_webhook_deliveries(failed=True)

    found: list[Any] = []

    async def poll() -> None:
        while not found:
            found.extend(r for r in await dead() if r.state is DeliveryState.DEAD)
            await trio.sleep(0.02)

    with trio.fail_after(20):
        await poll()
    (letter,) = found
    assert letter.attempts == 1 and letter.last_status == 410
    assert len(receiver.requests) == 1  # no retry
    gone = False
    path = tmp_path / "cli.toml"
    path.write_text(f'[storage]\nsqlite_path = "{config.storage.sqlite_path}"\n')

    def replay(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--config", str(path), "webhooks", *args],
                                  catch_exceptions=False)

    listed = await trio.to_thread.run_sync(replay, "deliveries", "--failed")
    assert letter.event_id in listed.output and "dead" in listed.output
    as_json = json.loads((await trio.to_thread.run_sync(
        replay, "deliveries", "--failed", "--json")).output)
    assert [(d["event_id"], d["state"], d["last_status"]) for d in as_json] == [
        (letter.event_id, "dead", 410)]
    assert as_json[0]["attempt_log"][0]["error"] == "HTTP 410: gone"
    result = await trio.to_thread.run_sync(replay, "replay", letter.event_id)
    assert result.exit_code == 0 and "Queued 1 dead letter again." in result.output, \
        result.output
    (row,) = await all_delivered(store)
    assert receiver.events()[0]["id"] == letter.event_id
    assert row.webhook_id == hook and row.attempts == 2


async def test_a_hanging_receiver_does_not_delay_chat(server: Server,
                                                      receiver: Receiver) -> None:
    """Every message is acked while the receiver holds the sender's requests; the timeout
    (1 s here) ends each attempt, which is retried; released, everything is delivered."""

    def plan(_number: int, _event: dict[str, Any]) -> Reply | str:
        return HANG

    receiver.plan = plan
    await add_hook(server, receiver, ("message.created",))
    async with visitor(server) as (vis, _):
        await vis.send(type="text", id="m0", content="first")
        await vis.recv_type("ack", id="m0")
        await wait_for(lambda: receiver.hanging, "the receiver holding a request")
        for n in range(1, 30):
            await vis.send(type="text", id=f"m{n}", content=f"text {n}")
        for n in range(1, 30):
            await vis.recv_type("ack", id=f"m{n}")
        assert not receiver.answered()  # all acked while nothing was delivered
    store = server.service.store

    async def timed_out() -> bool:
        rows = await store.list_webhook_deliveries(failed=True)
        return any("no answer within 1 s" in r.last_error for r in rows)

    with trio.fail_after(20):
        while not await timed_out():
            await trio.sleep(0.05)
    receiver.plan = lambda _n, _e: (200, {}, b"ok")
    receiver.release()
    await all_delivered(store, 30)
    seqs = [e["data"]["seq"] for e in receiver.events()]
    assert sorted(set(seqs)) == list(range(1, 31))
    assert [s for s in seqs] == sorted(seqs)  # one conversation: in order


async def test_a_hanging_receiver_leaves_the_other_webhooks_their_share(
        config: Config, receiver: Receiver) -> None:
    """Two slots, two webhooks: the hanging receiver holds one request (its timeout, 20 s,
    is longer than the test) and the other receiver gets every event through the other."""
    receiver.plan = lambda _n, _e: HANG
    two = dataclasses.replace(config, webhooks=dataclasses.replace(
        config.webhooks, max_in_flight=2, timeout=20.0))
    with running(Receiver()) as healthy:
        async with open_server(two) as srv, trio.open_nursery() as nursery:
            await nursery.start(srv.serve)
            await add_hook(srv, receiver, ("conversation.created",))
            await add_hook(srv, healthy, ("conversation.created",))
            for _ in range(4):  # four conversations: four events each, none waits for another
                async with visitor(srv):
                    pass
            await wait_for(lambda: len(healthy.events()) == 4, "the healthy receiver's events")
            assert receiver.hanging == 1  # one slot held, never both
            receiver.release()
            srv.shutdown()


async def test_sender_off_queues_but_does_not_send(config: Config, receiver: Receiver) -> None:
    quiet = dataclasses.replace(config, webhooks=dataclasses.replace(config.webhooks,
                                                                      sender=False))
    async with open_server(quiet) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        await add_hook(srv, receiver, ("conversation.created",))
        async with visitor(srv):
            pass
        await trio.sleep(0.3)  # several poll intervals of a sender, were there one
        (row,) = await srv.service.store.list_webhook_deliveries()
        assert row.state is DeliveryState.PENDING and row.attempts == 0
        assert receiver.requests == []
        srv.shutdown()


async def test_a_commit_wakes_the_sender_before_its_poll(config: Config,
                                                         receiver: Receiver) -> None:
    """With a poll interval of a minute, a message's event still leaves at once: the
    committer nudges the sender."""
    slow_poll = dataclasses.replace(config, webhooks=dataclasses.replace(
        config.webhooks, poll_interval=60.0))
    async with open_server(slow_poll) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        await add_hook(srv, receiver, ("message.created",))
        async with visitor(srv) as (vis, _):
            await vis.send(type="text", id="m1", content="now")
            await vis.recv_type("ack", id="m1")
            (row,) = await all_delivered(srv.service.store)
        assert receiver.events()[0]["id"] == row.event_id
        assert receiver.events()[0]["data"]["text"] == "now"
        srv.shutdown()
