"""Auto-assignment, agent status and capacity on a real server (``[routing] mode``):
round-robin over agents with capacity 1 and the queue moving on by itself when one has
room again (a close, a transfer, a capacity raised, an agent back online), least_busy,
away agents skipped, the ``status`` frame and ``POST /api/v1/me/status`` with their bad
inputs, the widget's team status, and manual mode assigning nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import trio

from customer_service.config import Config
from customer_service.core.models import ConversationStatus
from customer_service.server.run import Server, open_server
from tests.integration.helpers import Client, agent_socket, http_url, make_agent, visitor

DEADLINE = 10.0


@asynccontextmanager
async def routed_server(config: Config, mode: str) -> AsyncIterator[Server]:
    async with open_server(config.with_changes(routing__mode=mode)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def passes_go_by(server: Server, count: int = 2) -> None:
    """Wait until the assigner ran ``count`` more passes: whatever was there before the
    call has been looked at (no timing: passes are counted)."""
    assigner = server.service.assigner
    assert assigner is not None
    target = assigner.passes + count
    with trio.fail_after(DEADLINE):
        while assigner.passes < target:
            await trio.sleep(0.01)


async def assigned_to(client: Client, cid: int, agent_id: int) -> dict[str, Any]:
    """The ``conversation`` event telling ``client`` that ``cid`` went to ``agent_id``."""
    event = await client.recv_type(
        "conversation", timeout=DEADLINE,
        where=lambda f: f["conversation"]["conversation_id"] == cid
        and f["conversation"]["status"] == "assigned")
    assert event["conversation"]["assigned_to"] == agent_id, event
    return event


async def state_of(server: Server, cid: int) -> tuple[ConversationStatus, int | None]:
    found = await server.service.store.get_conversation(cid)
    assert found is not None
    return found.status, found.assigned_to


async def write(vis: Client, text: str = "Hello?") -> None:
    await vis.send(type="text", id="v1", content=text)
    await vis.recv_type("ack", id="v1")


async def test_round_robin_capacity_one_the_fourth_waits_then_goes_to_who_has_room(
        config: Config) -> None:
    async with routed_server(config, "round_robin") as server, AsyncExitStack() as stack:
        agents = []
        for name in ("alice", "bob", "carol"):
            agent, token = await make_agent(server, name)
            await server.service.store.set_agent_capacity(name, 1)
            client, welcome = await stack.enter_async_context(agent_socket(server, token))
            assert welcome["agent"]["status"] == "online"
            agents.append((agent, client))
        visitors = []
        for index in range(4):
            vis, welcome = await stack.enter_async_context(visitor(server, name=f"V{index}"))
            visitors.append((vis, welcome["conversation_id"]))
        # three new conversations: one to each agent, in turn
        for (agent, client), (vis, cid) in zip(agents, visitors[:3], strict=True):
            await write(vis)
            await assigned_to(client, cid, agent.id)
            joined = await vis.recv_type("message", timeout=DEADLINE,
                                         where=lambda f: f["sender"]["role"] == "system")
            assert joined["content"] == f"{agent.name} joined the conversation"
        # the fourth waits: everybody is full
        fourth, fourth_id = visitors[3]
        await write(fourth)
        await passes_go_by(server)
        assert await state_of(server, fourth_id) == (ConversationStatus.OPEN, None)
        # bob closes his: the fourth goes to bob, without any new message
        bob, bob_client = agents[1]
        await bob_client.send(type="close", id="c1", conversation_id=visitors[1][1])
        await bob_client.recv_type("ack", id="c1")
        await assigned_to(bob_client, fourth_id, bob.id)
        joined = await fourth.recv_type("message", timeout=DEADLINE,
                                        where=lambda f: f["sender"]["role"] == "system")
        assert joined["content"] == "Bob joined the conversation"
        assert await state_of(server, fourth_id) == (ConversationStatus.ASSIGNED, bob.id)
        # the other agents saw it leave the queue (it was theirs to see while waiting)
        await assigned_to(agents[0][1], fourth_id, bob.id)
        loads = {a.username: a.open_count for a in await server.service.store.agent_loads()}
        assert loads == {"alice": 1, "bob": 1, "carol": 1}


async def test_least_busy_picks_the_agent_with_fewest(config: Config) -> None:
    async with routed_server(config, "least_busy") as server, AsyncExitStack() as stack:
        store = server.service.store
        counts = {"alice": 2, "bob": 1, "carol": 3}
        clients = {}
        ids = {}
        for name, holding in counts.items():
            agent, token = await make_agent(server, name)
            ids[name] = agent.id
            for index in range(holding):
                other = await store.create_visitor(f"held-{name}-{index}", "", "", "/")
                cid = (await store.current_conversation(other.id)).id
                await store.set_conversation_state(cid, ConversationStatus.ASSIGNED, agent.id)
            clients[name], _ = await stack.enter_async_context(agent_socket(server, token))
        vis, welcome = await stack.enter_async_context(visitor(server))
        await write(vis)
        await assigned_to(clients["bob"], welcome["conversation_id"], ids["bob"])
        # now alice and bob hold 2 each, carol 3: the next goes to alice (waited longer)
        vis2, welcome2 = await stack.enter_async_context(visitor(server))
        await write(vis2)
        await assigned_to(clients["alice"], welcome2["conversation_id"], ids["alice"])


async def test_an_away_agent_gets_nothing_and_gets_the_waiting_one_back_online(
        config: Config) -> None:
    async with routed_server(config, "round_robin") as server, AsyncExitStack() as stack, \
            httpx.AsyncClient() as http:
        alice, alice_token = await make_agent(server, "alice")
        _, bob_token = await make_agent(server, "bob")
        await server.service.store.set_agent_status((await server.service.store
                                                     .get_agent_by_username("bob")).id,  # type: ignore[union-attr]
                                                    "offline")
        alice_client, _ = await stack.enter_async_context(agent_socket(server, alice_token))
        bob_client, bob_welcome = await stack.enter_async_context(agent_socket(server, bob_token))
        assert bob_welcome["agent"]["status"] == "offline"  # remembered from before
        widget = await http.get(http_url(server, "/api/v1/widget"))
        assert widget.json()["status"] == "online"  # alice is online

        await alice_client.send(type="status", id="s1", status="away")
        await alice_client.recv_type("ack", id="s1")
        # her colleague's dashboard hears of it
        heard = await bob_client.recv_type("agent_status", agent_id=alice.id)
        assert heard["status"] == "away"
        widget = await http.get(http_url(server, "/api/v1/widget"))
        assert widget.json()["status"] == "away"  # nobody online takes conversations
        listed = await http.get(http_url(server, "/api/v1/agents"),
                                headers={"Authorization": f"Bearer {bob_token}"})
        assert {a["username"]: a["status"] for a in listed.json()["agents"]} == {
            "alice": "away", "bob": "offline"}

        vis, welcome = await stack.enter_async_context(visitor(server))
        cid = welcome["conversation_id"]
        await write(vis)
        await passes_go_by(server)
        assert await state_of(server, cid) == (ConversationStatus.OPEN, None)
        # an away agent still accepts by hand if she wants: not needed here; back online
        back = await http.post(http_url(server, "/api/v1/me/status"), json={"status": "online"},
                               headers={"Authorization": f"Bearer {alice_token}"})
        assert back.status_code == 200 and back.json() == {"id": alice.id, "status": "online"}
        await assigned_to(alice_client, cid, alice.id)
        assert (await bob_client.recv_type("agent_status", agent_id=alice.id,
                                           status="online"))["status"] == "online"


async def test_room_made_by_a_transfer_or_a_raised_capacity_is_used(config: Config) -> None:
    async with routed_server(config, "round_robin") as server, AsyncExitStack() as stack:
        store = server.service.store
        alice, alice_token = await make_agent(server, "alice")
        bob, bob_token = await make_agent(server, "bob")
        await store.set_agent_capacity("alice", 1)
        await store.set_agent_status(bob.id, "away")
        alice_client, _ = await stack.enter_async_context(agent_socket(server, alice_token))
        bob_client, _ = await stack.enter_async_context(agent_socket(server, bob_token))
        cids = []
        for _ in range(3):
            vis, welcome = await stack.enter_async_context(visitor(server))
            await write(vis)
            cids.append(welcome["conversation_id"])
            await passes_go_by(server, 1)
        await assigned_to(alice_client, cids[0], alice.id)
        await passes_go_by(server)
        assert await state_of(server, cids[1]) == (ConversationStatus.OPEN, None)
        # alice hands hers to bob (away agents may be given conversations by hand)
        await alice_client.send(type="transfer", id="t1", conversation_id=cids[0],
                                to_agent=bob.id)
        await alice_client.recv_type("ack", id="t1")
        await assigned_to(alice_client, cids[1], alice.id)
        # the CLI raises her capacity (straight in the database): the sweep finds room
        await store.set_agent_capacity("alice", 2)
        await assigned_to(alice_client, cids[2], alice.id)
        assert await state_of(server, cids[2]) == (ConversationStatus.ASSIGNED, alice.id)
        await bob_client.recv_type("conversation", where=lambda f: f["conversation"][
            "conversation_id"] == cids[0] and f["conversation"]["assigned_to"] == bob.id)


async def test_bad_status_input_is_refused_clearly(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with agent_socket(server, token) as (client, _), httpx.AsyncClient() as http:
        await client.send(type="status", id="s1", status="busy")
        error = await client.recv_type("error", id="s1")
        assert error["error"] == "bad_request" and "status" in error["message"], error
        await client.send(type="status", id="s2")
        error = await client.recv_type("error", id="s2")
        assert error["error"] == "bad_request" and "status" in error["message"], error
        url = http_url(server, "/api/v1/me/status")
        headers = {"Authorization": f"Bearer {token}"}
        bad = await http.post(url, json={"status": "busy"}, headers=headers)
        assert bad.status_code == 400
        assert bad.json() == {"error": "bad_request", "message":
                              "status must be one of online, away, offline (got 'busy')"}
        broken = await http.post(url, content=b"{not json", headers=headers)
        assert broken.status_code == 400 and broken.json()["error"] == "bad_request"
        missing = await http.post(url, json={}, headers=headers)
        assert missing.status_code == 400 and "status" in missing.json()["message"]
        anonymous = await http.post(url, json={"status": "away"})
        assert anonymous.status_code == 401
        wrong_method = await http.get(url, headers=headers)
        assert wrong_method.status_code == 405
        # nothing changed
        agent = await server.service.store.get_agent_by_username("alice")
        assert agent is not None
        load = await server.service.store.agent_load(agent.id)
        assert load is not None and load.status == "online"


async def test_manual_mode_assigns_nothing_but_status_still_counts(server: Server) -> None:
    alice, token = await make_agent(server, "alice")
    async with agent_socket(server, token) as (client, _), httpx.AsyncClient() as http, \
            visitor(server) as (vis, welcome):
        await write(vis)
        await client.recv_type("message", where=lambda f: f["sender"]["role"] == "visitor")
        await client.send(type="status", id="s1", status="offline")
        await client.recv_type("ack", id="s1")
        widget = await http.get(http_url(server, "/api/v1/widget"))
        assert widget.json()["status"] == "away"
        assert server.service.assigner is not None and server.service.assigner.passes == 0
        assert await state_of(server, welcome["conversation_id"]) == (
            ConversationStatus.OPEN, None)
    # the status outlives the socket: signing in again keeps it
    async with agent_socket(server, token) as (_, again):
        assert again["agent"]["status"] == "offline" and again["agent"]["id"] == alice.id
