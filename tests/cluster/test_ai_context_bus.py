"""The session-state cache across instances under a bus outage (issue 14's attack): what
an agent writes on ``b`` while Redis is down never reaches ``a`` over the bus, yet the
next AI context ``a`` sends has it, once, in its place."""

from __future__ import annotations

import trio

from customer_service.core.ai_context import build_context
from customer_service.storage import open_store
from tests.cluster.conftest import Cluster, agent_at, visitor_at
from tests.fakes.openai_server import Script, open_fake_openai


async def test_an_agent_writing_during_a_bus_outage_leaves_no_hole_in_the_next_ai_context(
        cluster: Cluster) -> None:
    async with open_fake_openai(script=Script(tokens=["On", " it."])) as fake:
        ai = {"enabled": True, "base_url": fake.base_url, "api_key": "test", "mode": "always",
              "prewarm_connections": 0, "system_prompt": "You help.",
              "max_context_tokens": 100_000}
        a = await cluster.start("a", ai=ai)
        b = await cluster.start("b", ai=ai)
        _, token = await cluster.make_agent("alice")
        async with agent_at(b, token) as (alice, _), visitor_at(a) as (vera, welcome):
            cid = welcome["conversation_id"]
            await vera.send(type="text", id="q1", content="Where is my order?")
            await vera.recv_type("message", timeout=10,
                                 where=lambda f: f["sender"]["role"] == "ai")
            await alice.send(type="accept", id="take", conversation_id=cid)
            await alice.recv_type("ack", id="take", timeout=10)
            await vera.recv_type("message", timeout=10,
                                 where=lambda f: f["sender"]["role"] == "system")
            await trio.to_thread.run_sync(cluster.redis.kill9)
            for n in range(3):  # committed on b; the publish cannot reach a
                await alice.send(type="text", id=f"a{n}", conversation_id=cid,
                                 content=f"While the bus is down {n}")
                await alice.recv_type("ack", id=f"a{n}", timeout=10)
            await trio.to_thread.run_sync(cluster.redis.restart)
            await vera.send(type="text", id="q2", content="Anything new?")
            await vera.recv_type("ack", id="q2", timeout=10)
            with trio.fail_after(30):
                while len(fake.requests) < 2 or not fake.requests[-1].finished.is_set():
                    await trio.sleep(0.05)
        async with open_store(cluster.config) as store:
            rows = await store.messages_after(cid, 0, 1000)
        second = fake.requests[1]
        q2 = next(k for k, m in enumerate(rows) if m.content == "Anything new?")
        assert second.body["messages"] == build_context("You help.", rows[:q2 + 1], 100_000)
        assert [m["content"] for m in second.body["messages"]].count(
            "While the bus is down 2") == 1
