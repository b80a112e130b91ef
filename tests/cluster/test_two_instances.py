"""Two server processes on one MariaDB and one Redis: a conversation split across them."""

from __future__ import annotations

import httpx
import trio

from tests.cluster.conftest import Cluster, agent_at, visitor_at


async def test_a_visitor_on_one_instance_and_an_agent_on_another_chat(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    agent, token = await cluster.make_agent("alice")
    async with agent_at(b, token) as (alice, _), visitor_at(a, name="Vera") as (vera, welcome):
        cid = welcome["conversation_id"]
        opened = await alice.recv_type("conversation", where=lambda f: f["conversation"][
            "conversation_id"] == cid)
        assert opened["conversation"]["visitor"]["online"] is True  # presence crosses instances

        await vera.send(type="text", id="v1", content="hello from A")
        assert (await vera.recv_type("ack", id="v1"))["seq"] == 1
        got = await alice.recv_type("message", conversation_id=cid)
        assert (got["seq"], got["content"], got["sender"]["role"]) == (1, "hello from A", "visitor")

        await alice.send(type="accept", id="acc", conversation_id=cid)
        await alice.recv_type("ack", id="acc")
        joined = await vera.recv_type("message", where=lambda f: f["sender"]["role"] == "system")
        assert joined["seq"] == 2 and "joined" in joined["content"]

        await alice.send(type="text", id="a1", conversation_id=cid, content="hi from B")
        assert (await alice.recv_type("ack", id="a1"))["seq"] == 3
        reply = await vera.recv_type("message", seq=3)
        assert (reply["content"], reply["sender"]["id"]) == ("hi from B", agent.id)

        await vera.send(type="typing", active=True)
        typing = await alice.recv_type("typing", conversation_id=cid)
        assert typing["active"] is True and typing["sender"]["role"] == "visitor"
        await alice.send(type="typing", conversation_id=cid, active=True)
        assert (await vera.recv_type("typing"))["sender"]["role"] == "agent"

        await vera.send(type="read", seq=3, id="r1")
        await vera.recv_type("ack", id="r1")
        assert (await alice.recv_type("read", conversation_id=cid))["by"] == "visitor"
        await alice.send(type="read", conversation_id=cid, seq=3)
        assert (await vera.recv_type("read"))["seq"] == 3

        await alice.send(type="history", id="h", conversation_id=cid)
        history = await alice.recv_type("history", id="h")
        assert [m["seq"] for m in history["messages"]] == [1, 2, 3]

        # Each side saw every message once, in order.
        seen_by_vera = [f["seq"] for f in vera.seen if f["type"] == "message"]
        assert seen_by_vera == [1, 2, 3]


async def test_healthz_names_the_instance_and_the_bus(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    health_a, health_b = a.health(), b.health()
    assert health_a is not None and health_b is not None
    assert health_a["bus"] == health_b["bus"] == "ok"
    assert health_a["instance"] != health_b["instance"]


async def test_agents_online_anywhere_are_listed_as_online(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    alice, alice_token = await cluster.make_agent("alice")
    bob, _ = await cluster.make_agent("bob")

    async def online_at_a() -> dict[int, bool]:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{a.url}/api/v1/agents",
                                    headers={"authorization": f"Bearer {alice_token}"})
        return {row["id"]: row["online"] for row in answer.json()["agents"]}

    assert await online_at_a() == {alice.id: False, bob.id: False}
    async with agent_at(b, alice_token):
        with trio.fail_after(5):
            while (await online_at_a())[alice.id] is not True:
                await trio.sleep(0.05)
        assert (await online_at_a())[bob.id] is False
    with trio.fail_after(5):
        while (await online_at_a())[alice.id] is not False:
            await trio.sleep(0.05)
