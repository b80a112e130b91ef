"""Bad input gets the documented error, and the server keeps serving everyone else."""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionClosed

from customer_service.server.run import Server
from tests.integration.helpers import (
    Client,
    agent_socket,
    make_agent,
    open_ws,
    refused_upgrade,
    visitor,
    ws_url,
)

BAD_FRAMES = [
    pytest.param(b'{"type":"ping"}', "bad_request", None, id="binary frame"),
    pytest.param("{oops", "bad_request", None, id="invalid JSON"),
    pytest.param("[1, 2, 3]", "bad_request", None, id="JSON array"),
    pytest.param('{"type":"dance","id":"d1"}', "bad_request", "d1", id="unknown type"),
    pytest.param('{"type":"text","id":"t1"}', "bad_request", "t1", id="missing field"),
    pytest.param(json.dumps({"type": "text", "id": "t2", "content": "x" * 4001}), "too_large",
                 "t2", id="over-long content"),
    pytest.param('{"type":"text","id":"t3","content":"   "}', "bad_request", "t3",
                 id="blank content"),
    pytest.param('{"type":"accept","id":"a1","conversation_id":1}', "forbidden", "a1",
                 id="agent frame on the visitor socket"),
    pytest.param('{"type":"hello"}', "bad_request", None, id="second hello"),
]


@pytest.mark.parametrize(("raw", "error", "client_id"), BAD_FRAMES)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(
        server: Server, raw: str | bytes, error: str, client_id: str | None) -> None:
    async with visitor(server) as (vis, _), visitor(server) as (bystander, _):
        await vis.send_raw(raw)
        reply = await vis.recv_type("error")
        assert reply["error"] == error
        assert reply.get("id") == client_id
        assert reply["message"]
        await vis.send(type="text", id="after", content="still here")
        assert (await vis.recv_type("ack", id="after"))["seq"] == 1
        await bystander.send(type="text", id="other", content="unaffected")
        await bystander.recv_type("ack", id="other")


async def test_text_before_hello_is_refused_then_hello_works(server: Server) -> None:
    async with open_ws(ws_url(server, "/ws/visitor")) as ws:
        client = Client(ws)
        await client.send(type="text", id="early", content="hi")
        refused = await client.recv()
        assert refused == {"type": "error", "error": "bad_request", "id": "early",
                           "message": "the first frame must be hello"}
        await client.send(type="hello")
        assert (await client.recv())["type"] == "welcome"


async def test_a_ping_before_hello_is_answered_without_creating_a_visitor(server: Server) -> None:
    async with open_ws(ws_url(server, "/ws/visitor")) as ws:
        client = Client(ws)
        await client.send(type="ping", id="probe")
        assert await client.recv() == {"type": "pong", "id": "probe"}
    assert (await server.service.store.stats()).visitors == 0


async def test_an_oversize_frame_closes_with_1009(server: Server) -> None:
    async with visitor(server) as (vis, _), visitor(server) as (bystander, _):
        await vis.send_raw(json.dumps({"type": "text", "id": "big", "content": "x" * 70_000}))
        with pytest.raises(ConnectionClosed) as closed:
            await vis.recv()
        assert closed.value.reason.code == 1009
        await bystander.send(type="ping")
        await bystander.recv_type("pong")


async def test_a_bad_agent_token_is_refused_with_401_before_the_upgrade(server: Server) -> None:
    for path, headers in [("/ws/agent?token=wrong", {}), ("/ws/agent", {}),
                          ("/ws/agent", {"Authorization": "Bearer wrong"})]:
        refused = await refused_upgrade(server, path, headers)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
    _, token = await make_agent(server, "carol")
    async with agent_socket(server, token) as (agent, welcome):
        assert welcome["agent"]["username"] == "carol"
        await agent.send(type="hello")
        assert (await agent.recv_type("error"))["error"] == "forbidden"


async def test_a_disabled_agent_token_stops_working(server: Server) -> None:
    _, token = await make_agent(server, "dave")
    async with agent_socket(server, token):
        pass
    await server.service.store.set_agent_disabled("dave", True)
    refused = await refused_upgrade(server, "/ws/agent",
                                    {"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401


async def test_agent_frames_about_unknown_conversations(server: Server) -> None:
    _, token = await make_agent(server, "erin")
    async with agent_socket(server, token) as (agent, _):
        await agent.send(type="accept", id="n1", conversation_id=999)
        assert (await agent.recv_type("error", id="n1"))["error"] == "not_found"
        await agent.send(type="history", id="n2", conversation_id=999)
        assert (await agent.recv_type("error", id="n2"))["error"] == "not_found"


async def test_rate_limit_errors_then_close_with_1008(server: Server) -> None:
    limits = server.config.server
    async with visitor(server) as (vis, _):
        for _ in range(limits.rate_limit_burst + limits.rate_limit_strikes + 5):
            try:
                await vis.send(type="ping")
            except ConnectionClosed:
                break
        codes = []
        with trio.fail_after(5):
            while True:
                try:
                    frame = await vis.recv()
                except ConnectionClosed as closed:
                    assert closed.reason.code == 1008
                    break
                codes.append(frame.get("error"))
        assert "rate_limited" in codes


async def test_unknown_websocket_path_is_refused_with_404(server: Server) -> None:
    refused = await refused_upgrade(server, "/ws/nope")
    assert refused.status_code == 404 and refused.json()["error"] == "not_found"
