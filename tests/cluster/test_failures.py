"""Instances and Redis failing under load: nothing acked is lost or stored twice, and every
client ends with its conversation's seqs 1..N, no gap, no duplicate."""

from __future__ import annotations

import json

import trio

from tests.cluster.chat import AgentDriver, VisitorDriver, check_exactly_once, until_done
from tests.cluster.conftest import Cluster
from tests.cluster.harness import ServerProcess, wait_until
from tests.integration.helpers import open_ws

PAIRS = 50
MESSAGES = 16
RUN_LIMIT = 90.0


async def _pairs(cluster: Cluster, visitors_at: list[ServerProcess], agents_at: ServerProcess
                 ) -> tuple[list[VisitorDriver], list[AgentDriver]]:
    visitors: list[VisitorDriver] = []
    agents: list[AgentDriver] = []
    for n in range(PAIRS):
        home = visitors_at[n % len(visitors_at)]
        _, token = await cluster.make_agent(f"agent{n}")
        visitor = VisitorDriver(f"v{n}", lambda home=home: f"{home.ws}/ws/visitor", MESSAGES,
                                pace=0.03)
        visitors.append(visitor)
        agents.append(AgentDriver(agents_at.ws, token, visitor))
    return visitors, agents


def _check(cluster: Cluster, visitors: list[VisitorDriver], agents: list[AgentDriver]) -> None:
    acked: dict[str, int] = {}
    conversation_of: dict[str, int] = {}
    for visitor, agent in zip(visitors, agents, strict=True):
        for client_id, seq in (visitor.acked | agent.acked).items():
            acked[client_id] = seq
            conversation_of[client_id] = visitor.conversation_id
    last = check_exactly_once(cluster.database, acked, conversation_of)
    for visitor, agent in zip(visitors, agents, strict=True):
        assert visitor.done, f"{visitor.name} did not finish (seen up to {visitor.seen.newest})"
        expected = last[visitor.conversation_id]
        assert expected == 1 + 2 * MESSAGES
        assert visitor.seen.problems(expected) == [], (visitor.name, visitor.seen.seqs)
        assert agent.seen.problems(expected) == [], (visitor.name, agent.seen.seqs)


async def test_kill_9_of_an_instance_while_50_pairs_chat_across_two(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    visitors, agents = await _pairs(cluster, [a], b)
    target = {"server": a}
    for visitor in visitors:
        visitor.url = lambda: f"{target['server'].ws}/ws/visitor"
    deadline = trio.current_time() + RUN_LIMIT
    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(agent.run, deadline)
        for visitor in visitors:
            nursery.start_soon(visitor.run, deadline)
        # Kill A once every pair is well into its conversation.
        with trio.fail_after(30):
            while min(v.sent for v in visitors) < MESSAGES // 3:
                await trio.sleep(0.02)
        target["server"] = b  # A's visitors come back through B
        a.kill9()
        await until_done(visitors, agents, RUN_LIMIT)
        nursery.cancel_scope.cancel()
    assert all(v.reconnects >= 1 for v in visitors)
    _check(cluster, visitors, agents)


async def test_redis_restart_while_50_pairs_chat_across_two(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    visitors, agents = await _pairs(cluster, [a, b], b)
    # Half the visitors are on A, half on B; every agent is on B, so half the pairs cross.
    for agent in agents[1::2]:
        agent.url = a.ws  # ... and the other half cross the other way
    deadline = trio.current_time() + RUN_LIMIT
    healths: list[tuple[str | None, str | None]] = []
    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(agent.run, deadline)
        for visitor in visitors:
            nursery.start_soon(visitor.run, deadline)
        with trio.fail_after(30):
            while min(v.sent for v in visitors) < MESSAGES // 4:
                await trio.sleep(0.02)
        await trio.to_thread.run_sync(cluster.redis.kill9)

        def both_degraded() -> bool:
            states = (_bus(a), _bus(b))
            healths.append(states)
            return states == ("degraded", "degraded")

        await trio.to_thread.run_sync(wait_until, both_degraded, 10, "/healthz bus: degraded")
        await trio.sleep(1.0)  # chat goes on without the bus for a while
        await trio.to_thread.run_sync(cluster.redis.restart)

        def both_ok() -> tuple[str | None, str | None] | None:
            states = (_bus(a), _bus(b))
            healths.append(states)
            return states if states == ("ok", "ok") else None

        try:
            await trio.to_thread.run_sync(wait_until, both_ok, 20, "/healthz bus: ok again")
        except TimeoutError:
            raise AssertionError(f"bus never ok again: {healths[-20:]}") from None
        await until_done(visitors, agents, RUN_LIMIT)
        nursery.cancel_scope.cancel()
    _check(cluster, visitors, agents)
    for server in (a, b):
        assert server.alive(), f"{server.name} died:\n{server.log_text()[-3000:]}"
        assert "resynchronised" in server.log_text()


def _bus(server: ServerProcess) -> str | None:
    health = server.health()
    return None if health is None else health.get("bus")


async def test_two_agents_on_two_instances_accept_at_once_50_times(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, alice = await cluster.make_agent("alice")
    _, bob = await cluster.make_agent("bob")
    async with open_ws(f"{a.ws}/ws/agent?token={alice}&queue=off") as at_a, \
            open_ws(f"{b.ws}/ws/agent?token={bob}&queue=off") as at_b:
        for ws in (at_a, at_b):
            assert json.loads(await ws.get_message())["type"] == "welcome"
        for round_ in range(50):
            async with open_ws(f"{(a if round_ % 2 else b).ws}/ws/visitor") as vis:
                await vis.send_message(json.dumps({"type": "hello"}))
                cid = json.loads(await vis.get_message())["conversation_id"]
                answers: dict[str, dict[str, object]] = {}

                async def accept(ws: object, who: str, cid: int = cid,
                                 answers: dict[str, dict[str, object]] = answers) -> None:
                    await ws.send_message(json.dumps(  # type: ignore[attr-defined]
                        {"type": "accept", "id": f"{who}-{cid}", "conversation_id": cid}))
                    with trio.fail_after(10):
                        while True:
                            frame = json.loads(await ws.get_message())  # type: ignore[attr-defined]
                            if frame.get("id") == f"{who}-{cid}":
                                answers[who] = frame
                                return

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(accept, at_a, "alice")
                    nursery.start_soon(accept, at_b, "bob")
                kinds = sorted(str(f["type"]) + ":" + str(f.get("error", "")) for f in answers.values())
                assert kinds == ["ack:", "error:conflict"], (round_, answers)
