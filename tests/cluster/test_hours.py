"""Auto-replies across two server processes on one MariaDB and one Redis: a visitor's first
messages sent at once through both instances get one welcome and one away message between
them; an agent online on one instance makes the other say "online" (presence over the
bus) and send no away message."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.cluster.chat import stored_messages
from tests.cluster.conftest import Cluster, agent_at, visitor_at

REPLIES = {"auto_replies": {"welcome": {"en": "Hi!"}, "away": {"en": "Nobody is here."}}}


async def test_one_welcome_and_one_away_message_whichever_instance_posts(
        cluster: Cluster) -> None:
    a = await cluster.start("a", **REPLIES)
    b = await cluster.start("b", **REPLIES)
    async with visitor_at(a, name="Vera") as (on_a, welcome):
        cid, token = welcome["conversation_id"], welcome["visitor_token"]
        assert welcome["availability"] == "away"
        async with visitor_at(b, visitor_token=token) as (on_b, _):
            async def say(client: Any, client_id: str) -> None:
                await client.send(type="text", id=client_id, content=client_id)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(say, on_a, "from-a")
                nursery.start_soon(say, on_b, "from-b")
            await on_a.recv_type("ack", id="from-a", timeout=10)
            await on_b.recv_type("ack", id="from-b", timeout=10)
    rows = [r for r in await trio.to_thread.run_sync(stored_messages, cluster.database)
            if r[0] == cid]
    roles = [(role, client_id) for _, _, role, client_id in rows]
    assert roles.count(("system", f"auto:welcome:{cid}")) == 1
    assert roles.count(("system", f"auto:away:{cid}")) == 1
    assert roles[0] == ("system", f"auto:welcome:{cid}")  # before either visitor message
    assert sorted(c for r, c in roles if r == "visitor") == ["from-a", "from-b"]
    assert [seq for _, seq, _, _ in rows] == list(range(1, len(rows) + 1))


async def test_an_agent_on_one_instance_makes_the_other_online(cluster: Cluster) -> None:
    a = await cluster.start("a", **REPLIES)
    b = await cluster.start("b", **REPLIES)
    _, token = await cluster.make_agent("alice")
    async with agent_at(b, token), httpx.AsyncClient() as http:
        with trio.fail_after(15):
            while (await http.get(f"{a.url}/api/v1/widget")).json()["status"] != "online":
                await trio.sleep(0.1)
        async with visitor_at(a) as (ben, welcome):
            assert welcome["availability"] == "online"
            cid = welcome["conversation_id"]
            await ben.send(type="text", id="q", content="hello")
            await ben.recv_type("ack", id="q", timeout=10)
            await ben.nothing_more(0.5)
    rows = [r for r in await trio.to_thread.run_sync(stored_messages, cluster.database)
            if r[0] == cid]
    assert [(role, client_id) for _, _, role, client_id in rows] == [
        ("system", f"auto:welcome:{cid}"), ("visitor", "q")]
