"""Edge cases found in review: each pins a behaviour the protocol promises."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from customer_service.config import Config
from customer_service.core.models import AppendResult, ConversationStatus, NewMessage, Role
from customer_service.server import agent as agent_module
from customer_service.server.hub import Hub
from customer_service.server.peers import Peer
from customer_service.server.run import Server, open_server
from customer_service.server.service import KeyedLock
from customer_service.storage import Store
from tests.integration.helpers import (
    Client,
    agent_socket,
    http_url,
    make_agent,
    open_ws,
    visitor,
    ws_url,
)


async def test_an_unknown_token_with_a_high_last_seq_still_gets_every_new_message(
        server: Server) -> None:
    async with visitor(server, visitor_token="stale-token", last_seq=50) as (vis, welcome):
        assert welcome["last_seq"] == 0 and welcome["visitor_token"] != "stale-token"
        await vis.send(type="text", id="n1", content="first")
        own = await vis.recv_type("message")
        assert own["seq"] == 1


async def test_a_known_visitor_claiming_more_than_exists_gets_new_messages(server: Server) -> None:
    async with visitor(server) as (vis, welcome):
        token = welcome["visitor_token"]
        await vis.send(type="text", id="k1", content="one")
        await vis.recv_type("ack", id="k1")
    async with visitor(server, visitor_token=token, last_seq=99) as (vis, welcome):
        assert welcome["last_seq"] == 1
        await vis.send(type="text", id="k2", content="two")
        assert (await vis.recv_type("message"))["seq"] == 2


async def test_a_state_changed_by_another_instance_is_not_overwritten(server: Server) -> None:
    alice, alice_token = await make_agent(server, "alice")
    bob, _ = await make_agent(server, "bob")
    async with visitor(server) as (_, welcome), agent_socket(server, alice_token) as (agent, _):
        cid = welcome["conversation_id"]
        await server.service.store.set_conversation_state(cid, ConversationStatus.ASSIGNED, bob.id)
        await agent.send(type="accept", id="late", conversation_id=cid)
        refused = await agent.recv_type("error", id="late")
        assert refused["error"] == "conflict"
    stored = await server.service.store.get_conversation(cid)
    assert stored is not None and stored.assigned_to == bob.id and alice.id != bob.id


class SlowNotes:
    """System notes take a while to commit; everything else is immediate."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append_messages(self, batch: Sequence[NewMessage]) -> list[AppendResult]:
        if any(m.sender_role is Role.SYSTEM for m in batch):
            await trio.sleep(0.8)
        return await self._inner.append_messages(batch)


async def test_a_transition_past_the_deadline_is_still_recorded_and_announced(
        config: Config) -> None:
    config = config.with_changes(server__message_timeout=0.3)
    async with open_server(config, wrap_store=SlowNotes) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        _, alice_token = await make_agent(srv, "alice")
        _, bob_token = await make_agent(srv, "bob")
        async with visitor(srv) as (vis, welcome), agent_socket(srv, alice_token) as (a, _), \
                agent_socket(srv, bob_token) as (b, _):
            cid = welcome["conversation_id"]
            started = trio.current_time()
            await a.send(type="accept", id="slow", conversation_id=cid)
            await a.recv_type("ack", id="slow")
            assert trio.current_time() - started > config.server.message_timeout
            await vis.recv_type("message", content="Alice joined the conversation")
            await b.recv_type("conversation",
                              where=lambda f: f["conversation"]["status"] == "assigned")
            await a.send(type="accept", id="again", conversation_id=cid)
            await a.recv_type("ack", id="again")
        srv.shutdown()


async def test_a_resent_agent_text_after_close_is_acked_with_its_seq(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server) as (vis, welcome), agent_socket(server, token) as (agent, _):
        cid = welcome["conversation_id"]
        await agent.send(type="accept", id="a", conversation_id=cid)
        await agent.recv_type("ack", id="a")
        await agent.send(type="text", id="t1", conversation_id=cid, content="bye")
        first = await agent.recv_type("ack", id="t1")
        await agent.send(type="close", id="c", conversation_id=cid)
        await agent.recv_type("ack", id="c")
        await agent.send(type="text", id="t1", conversation_id=cid, content="bye")
        again = await agent.recv_type("ack", id="t1")
        assert again["seq"] == first["seq"]
        await agent.send(type="text", id="t2", conversation_id=cid, content="new")
        assert (await agent.recv_type("error", id="t2"))["error"] == "conflict"
        await vis.send(type="ping")
        await vis.recv_type("pong")


async def test_a_visitor_resend_into_a_closed_conversation_does_not_reopen_it(
        server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server) as (vis, welcome), agent_socket(server, token) as (agent, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="hi")
        first = await vis.recv_type("ack", id="v1")
        await agent.send(type="close", id="c", conversation_id=cid)
        await agent.recv_type("ack", id="c")
        await vis.send(type="text", id="v1", content="hi")
        assert (await vis.recv_type("ack", id="v1"))["seq"] == first["seq"]
    stored = await server.service.store.get_conversation(cid)
    assert stored is not None and stored.status is ConversationStatus.CLOSED


async def test_a_revoked_agent_socket_is_closed_with_1008(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "TOKEN_RECHECK_SECONDS", 0.1)
    _, token = await make_agent(server, "mallory")
    async with agent_socket(server, token) as (agent, _):
        await server.service.store.set_agent_disabled("mallory", True)
        with pytest.raises(ConnectionClosed) as closed:
            await agent.recv(timeout=3)
        assert closed.value.reason.code == 1008


async def test_shutdown_closes_sockets_that_have_not_said_hello_with_1001(config: Config) -> None:
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with open_ws(ws_url(srv, "/ws/visitor")) as ws:
            await trio.sleep(0.1)
            started = trio.current_time()
            srv.shutdown()
            with pytest.raises(ConnectionClosed) as closed:
                await Client(ws).recv(timeout=3)
            assert closed.value.reason.code == 1001
            assert trio.current_time() - started < 1


class SlowStart:
    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def current_conversation(self, visitor_id: int) -> Any:
        await trio.sleep(5)
        return await self._inner.current_conversation(visitor_id)


async def test_a_database_too_slow_at_session_start_closes_with_1011(config: Config) -> None:
    config = config.with_changes(server__message_timeout=0.2)
    async with open_server(config, wrap_store=SlowStart) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with open_ws(ws_url(srv, "/ws/visitor")) as ws:
            client = Client(ws)
            await client.send(type="hello")
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv(timeout=3)
            assert closed.value.reason.code == 1011
        nursery.cancel_scope.cancel()


async def test_rate_limited_errors_echo_the_frame_id(config: Config) -> None:
    config = config.with_changes(server__rate_limit_burst=2, server__rate_limit_per_second=0.5)
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv) as (vis, _):
            for n in range(4):
                await vis.send(type="ping", id=f"p{n}")
            limited = await vis.recv_type("error", id="p3")
            assert limited["error"] == "rate_limited"
        nursery.cancel_scope.cancel()


async def test_watchers_are_forgotten_when_the_agent_leaves() -> None:
    hub = Hub()
    peer = Peer("agent", 7, lambda item: True, trio.CancelScope())
    hub.add_agent(peer)
    for cid in range(20):
        hub.watch(cid, 7)
    hub.watch(99, 8)
    assert len(hub.watchers) == 20
    hub.remove_agent(peer)
    assert hub.watchers == {}


async def test_odd_digits_in_a_rest_path_are_a_404_in_the_json_shape(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.get(http_url(server, "/api/v1/conversations/%C2%B2/messages"))
    assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_transition_locks_serialise_one_conversation_and_free_themselves() -> None:
    locks = KeyedLock()
    order: list[str] = []

    async def change(key: int, name: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            await trio.sleep(pause)
            order.append(f"{name} out")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(change, 1, "a", 0.05)
        await trio.sleep(0.01)
        nursery.start_soon(change, 1, "b", 0.0)
        nursery.start_soon(change, 2, "c", 0.0)
    assert order.index("a out") < order.index("b in")
    assert order.index("c out") < order.index("a out"), "another conversation is not held up"
    assert len(locks) == 0
