"""Auto-assignment across two server processes on one MariaDB and one Redis: agents on
both instances, round-robin with capacity 1. Visitors on either instance write at once;
each conversation is assigned exactly once (one system line, one assignee), nobody past
capacity, to agents on either instance; a close on one instance lets a waiting
conversation go on by itself; a status set on one instance reaches the other's
dashboards and its widget status."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pymysql
import trio

from customer_service.storage import open_store
from tests.cluster.conftest import Cluster, agent_at, visitor_at
from tests.cluster.harness import MYSQL
from tests.integration.helpers import Client

DEADLINE = 20.0
ROUTING = {"routing": {"mode": "round_robin", "default_capacity": 1}}


def assignments(database: str) -> tuple[dict[int, int | None], Counter[int]]:
    """conversation id → assignee (None: waiting), and system "joined" lines per
    conversation, read straight from the database."""
    conn = pymysql.connect(database=database, connect_timeout=5, **MYSQL)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT id, assigned_to FROM conversations WHERE status <> 'closed'")
            state = {int(r[0]): None if r[1] is None else int(r[1]) for r in cursor.fetchall()}
            cursor.execute("SELECT conversation_id FROM messages WHERE sender_role = 'system'"
                           " AND content LIKE '% joined the conversation'")
            joined = Counter(int(r[0]) for r in cursor.fetchall())
        return state, joined
    finally:
        conn.close()


async def given(client: Client, agent_id: int) -> int:
    """The conversation the ``conversation`` events say went to ``agent_id``."""
    event = await client.recv_type("conversation", timeout=DEADLINE, where=lambda f: (
        f["conversation"]["status"] == "assigned" and f["conversation"]["assigned_to"] == agent_id))
    cid: int = event["conversation"]["conversation_id"]
    return cid


async def test_round_robin_across_instances_assigns_each_conversation_once(
        cluster: Cluster) -> None:
    a = await cluster.start("a", **ROUTING)
    b = await cluster.start("b", **ROUTING)
    names = {"alice": a, "bob": b, "carol": a, "dave": b}
    made = {name: await cluster.make_agent(name) for name in names}
    async with AsyncExitStack() as stack:
        agents: dict[str, tuple[int, Client]] = {}
        for name, server in names.items():
            agent, token = made[name]
            client, _ = await stack.enter_async_context(agent_at(server, token))
            agents[name] = (agent.id, client)
        visitors: list[tuple[Client, int]] = []
        for index in range(6):
            vis, welcome = await stack.enter_async_context(
                visitor_at(a if index % 2 else b, name=f"V{index}"))
            visitors.append((vis, welcome["conversation_id"]))

        async def write(vis: Client, number: int) -> None:
            await vis.send(type="text", id=f"v{number}", content="Hello?")
            await vis.recv_type("ack", id=f"v{number}", timeout=DEADLINE)

        async with trio.open_nursery() as nursery:  # all at once, on both instances
            for number, (vis, _) in enumerate(visitors):
                nursery.start_soon(write, vis, number)

        got: dict[str, int] = {}
        for name, (agent_id, client) in agents.items():
            got[name] = await given(client, agent_id)
        assert len(set(got.values())) == 4  # four different conversations, one each

        state, joined = await trio.to_thread.run_sync(assignments, cluster.database)
        ids = {name: agent_id for name, (agent_id, _) in agents.items()}
        for name, cid in got.items():
            assert state[cid] == ids[name]
        assert Counter(v for v in state.values() if v is not None) == {i: 1 for i in ids.values()}
        waiting = [cid for cid, assignee in state.items() if assignee is None]
        assert sorted(waiting) == sorted(set(c for _, c in visitors) - set(got.values()))
        assert all(joined[cid] == 1 for cid in got.values()), joined
        assert not any(joined[cid] for cid in waiting)

        # bob (on b) closes his: one of the waiting ones goes to him, by itself
        bob_id, bob = agents["bob"]
        await bob.send(type="close", id="c1", conversation_id=got["bob"])
        await bob.recv_type("ack", id="c1", timeout=DEADLINE)
        second = await given(bob, bob_id)
        assert second in waiting
        state, joined = await trio.to_thread.run_sync(assignments, cluster.database)
        assert state[second] == bob_id and joined[second] == 1
        assert sum(1 for v in state.values() if v is None) == 1
        assert Counter(v for v in state.values() if v is not None) == {i: 1 for i in ids.values()}

        # a status set on a reaches b's dashboards
        alice_id, alice = agents["alice"]
        await alice.send(type="status", id="s1", status="away")
        await alice.recv_type("ack", id="s1", timeout=DEADLINE)
        heard = await bob.recv_type("agent_status", agent_id=alice_id, timeout=DEADLINE)
        assert heard["status"] == "away"


async def test_widget_status_counts_available_agents_on_every_instance(
        cluster: Cluster) -> None:
    a = await cluster.start("a", **ROUTING)
    b = await cluster.start("b", **ROUTING)
    alice, token = await cluster.make_agent("alice")
    async with open_store(cluster.config) as store:
        await store.set_agent_status(alice.id, "away")
    async with agent_at(a, token) as (client, welcome), httpx.AsyncClient() as http:
        assert welcome["agent"]["status"] == "away"

        async def widget_status() -> Any:
            return (await http.get(f"{b.url}/api/v1/widget")).json()["status"]

        # b hears of alice (presence) and of her status (read when she signed in on a)
        with trio.fail_after(DEADLINE):
            while not (await http.get(f"{b.url}/api/v1/agents", headers={
                    "Authorization": f"Bearer {token}"})).json()["agents"][0]["online"]:
                await trio.sleep(0.05)
        assert await widget_status() == "away"
        await client.send(type="status", id="s1", status="online")
        await client.recv_type("ack", id="s1")
        with trio.fail_after(DEADLINE):
            while await widget_status() != "online":
                await trio.sleep(0.05)
