"""Private notes against the real server: agents get them, the visitor never does (not on
the socket, not in replay, not over REST or the pages, not in the AI's context)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from customer_service.config import Config
from customer_service.server.run import Server, open_server
from tests.fakes.openai_server import FakeOpenAI, Script, open_fake_openai
from tests.integration.helpers import Client, agent_socket, http_url, make_agent, visitor

SECRET = "refund approved by Dana, do not tell the customer yet"


def leaks(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames that carry a note or its text."""
    return [f for f in frames if f.get("type") == "note" or SECRET in json.dumps(f)]


async def get(server: Server, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        return await http.get(http_url(server, path), headers=headers)


async def write_note(agent: Client, cid: int, client_id: str,
                     content: str = SECRET) -> dict[str, Any]:
    await agent.send(type="note", id=client_id, conversation_id=cid, content=content)
    return await agent.recv_type("ack", id=client_id)


async def test_a_note_reaches_the_conversations_agents_and_never_its_visitor(
        server: Server) -> None:
    alice, alice_token = await make_agent(server, "alice")
    _, bob_token = await make_agent(server, "bob")
    _, carol_token = await make_agent(server, "carol")
    async with visitor(server) as (vis, welcome), \
            agent_socket(server, alice_token) as (a, _), \
            agent_socket(server, bob_token) as (b, _), \
            agent_socket(server, carol_token) as (c, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="my order never came")
        await vis.recv_type("ack", id="v1")
        await a.send(type="accept", id="acc", conversation_id=cid)
        await a.recv_type("ack", id="acc")
        await b.send(type="history", id="h", conversation_id=cid)  # bob watches it now
        await b.recv_type("history", id="h")

        ack = await write_note(a, cid, "n1")
        assert isinstance(ack["note_id"], int) and ack["ts"].endswith("Z")
        expected = {"type": "note", "conversation_id": cid, "note_id": ack["note_id"],
                    "after_seq": 2,  # the visitor's message, then the "accepted" system line
                    "sender": {"role": "agent", "id": alice.id, "name": "Alice"},
                    "content": SECRET, "ts": ack["ts"]}
        assert await a.recv_type("note") == expected
        assert await b.recv_type("note") == expected

        again = await write_note(a, cid, "n1")  # a resend: acked again, stored and sent once
        assert again == ack
        await a.send(type="text", id="t1", conversation_id=cid, content="Let me check.")
        await vis.recv_type("message", content="Let me check.")
        await b.recv_type("message", content="Let me check.")
        await c.send(type="ping", id="sync")
        await c.recv_type("pong", id="sync")
        assert await server.service.store.list_notes(cid) != []
        assert len(await server.service.store.list_notes(cid)) == 1

        # replay from the start on a second visitor socket: every message, no note
        async with visitor(server, visitor_token=welcome["visitor_token"], last_seq=0,
                           conversation_id=cid) as (again_vis, _):
            await again_vis.recv_type("message", content="Let me check.")
            await again_vis.send(type="ping", id="p")
            await again_vis.recv_type("pong", id="p")
        await vis.send(type="ping", id="p")
        await vis.recv_type("pong", id="p")

        history = [m for m in vis.seen + again_vis.seen if m.get("type") == "message"]
        assert [m["content"] for m in history if m["sender"]["role"] != "system"] == [
            "my order never came", "Let me check.", "my order never came", "Let me check."]
        assert leaks(vis.seen) == [] and leaks(again_vis.seen) == []
        assert [f for f in b.seen if f["type"] == "note"] == [expected], "bob got it once"
        assert leaks(c.seen) == [], "carol neither has it nor watches it"

        # agents read notes back with the history (newest page only) and over REST
        await a.send(type="history", id="h1", conversation_id=cid)
        page = await a.recv_type("history", id="h1")
        assert page["notes"] == [expected]
        assert SECRET not in json.dumps(page["messages"])
        await a.send(type="history", id="h2", conversation_id=cid, before_seq=2)
        assert "notes" not in await a.recv_type("history", id="h2")

    listed = await get(server, f"/api/v1/conversations/{cid}/notes", bob_token)
    assert listed.status_code == 200
    assert listed.json() == {"conversation_id": cid, "notes": [expected]}
    messages = await get(server, f"/api/v1/conversations/{cid}/messages", bob_token)
    one = await get(server, f"/api/v1/conversations/{cid}", bob_token)
    assert messages.status_code == one.status_code == 200
    assert SECRET not in messages.text and SECRET not in one.text
    for page_path in ("/", "/widget.js", "/static/widget.js"):
        assert SECRET not in (await get(server, page_path, None)).text
    refused = await get(server, f"/api/v1/conversations/{cid}/notes", None)
    assert refused.status_code == 401


async def test_a_note_in_a_waiting_conversation_reaches_the_queue(server: Server) -> None:
    _, alice_token = await make_agent(server, "alice")
    _, bob_token = await make_agent(server, "bob")
    async with visitor(server) as (vis, welcome), \
            agent_socket(server, alice_token) as (a, _), \
            agent_socket(server, bob_token) as (b, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="hello")
        await b.recv_type("message", content="hello")
        ack = await write_note(a, cid, "n")
        assert (await b.recv_type("note"))["note_id"] == ack["note_id"]
        await vis.send(type="ping", id="p")
        await vis.recv_type("pong", id="p")
        assert leaks(vis.seen) == []


async def test_bad_notes_get_clear_errors(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server) as (vis, welcome), agent_socket(server, token) as (a, _):
        cid = welcome["conversation_id"]
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"conversation_id": cid, "content": "  \n"}, "bad_request", "content is empty"),
            ({"conversation_id": cid, "content": "x" * 4001}, "too_large", "limit is 4000"),
            ({"conversation_id": 424242, "content": "hi"}, "not_found", "no conversation 424242"),
            ({"content": "hi"}, "bad_request", "conversation_id"),
            ({"conversation_id": cid, "content": 5}, "bad_request", "content"),
        ]
        for index, (fields, code, words) in enumerate(cases):
            await a.send(type="note", id=f"bad{index}", **fields)
            error = await a.recv_type("error", id=f"bad{index}")
            assert error["error"] == code and words in error["message"], error
        await vis.send(type="note", id="sneaky", conversation_id=cid, content="hi")
        error = await vis.recv_type("error", id="sneaky")
        assert error["error"] == "forbidden"
        assert error["message"] == "frame type 'note' is not allowed on this socket"
    assert await server.service.store.list_notes(cid) == []
    bad_id = await get(server, "/api/v1/conversations/abc/notes", token)
    assert bad_id.status_code == 400 and "conversation id" in bad_id.json()["message"]
    deeper = await get(server, f"/api/v1/conversations/{cid}/messages/notes", token)
    assert deeper.status_code == 404 and "no route" in deeper.json()["message"]
    unknown = await get(server, "/api/v1/conversations/424242/notes", token)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "message": "no conversation 424242"}
    async with httpx.AsyncClient() as http:
        posted = await http.post(http_url(server, f"/api/v1/conversations/{cid}/notes"),
                                 headers={"Authorization": f"Bearer {token}"})
    assert posted.status_code == 405


# --- the AI never reads a note ------------------------------------------------

@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with open_fake_openai(api_key="sk-test") as upstream:
        yield upstream


@pytest.fixture
async def ai_server(config: Config, fake: FakeOpenAI) -> AsyncIterator[Server]:
    settings = {"enabled": True, "base_url": fake.base_url, "api_key": "sk-test",
                "model": "test-model", "system_prompt": "You help.", "http2": False,
                "prewarm_connections": 0}
    changed = config.with_changes(**{f"ai__{k}": v for k, v in settings.items()})
    async with open_server(changed) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def test_the_ai_context_leaves_notes_out(ai_server: Server, fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=["First answer."]), Script(tokens=["Second answer."]))
    _, token = await make_agent(ai_server, "alice")
    async with visitor(ai_server) as (vis, welcome), agent_socket(ai_server, token) as (a, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="q1", content="Where is my parcel?")
        await vis.recv_type("message", content="First answer.")
        await write_note(a, cid, "n")
        await a.recv_type("note")
        await vis.send(type="text", id="q2", content="Hello?")
        await vis.recv_type("message", content="Second answer.")
        assert leaks(vis.seen) == []
    first, second = await fake.wait_for_requests(2)
    said = [m["content"] for m in second.body["messages"]]
    assert said == ["You help.", "Where is my parcel?", "First answer.", "Hello?"]
    assert SECRET not in json.dumps(first.body) + json.dumps(second.body)
