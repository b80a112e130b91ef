"""API tokens against a running server: a read token reads and cannot write (403), a write
token sends as its bot agent (live to the visitor and the agents, idempotent by client_id)
and closes, a revoked token is refused at once (401), agent-only endpoints refuse API
tokens (403), the bot cannot log in, and the OpenAPI document is public."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from customer_service import auth
from customer_service.server.run import Server
from tests.integration.helpers import agent_socket, http_url, make_agent, visitor


async def api_token(server: Server, name: str, scope: str) -> str:
    secret = auth.new_token()
    await server.service.store.create_api_token(name, scope, auth.token_hash(secret))
    return secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def test_read_and_write_tokens_through_the_service_path(
        server: Server, http: httpx.AsyncClient) -> None:
    reader = await api_token(server, "reports", "read")
    writer = await api_token(server, "crm-bot", "write")
    _, agent_token = await make_agent(server, "alice")
    async with visitor(server, name="Vera") as (vis, welcome), \
            agent_socket(server, agent_token) as (agent, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="Where is my order?")
        await vis.recv_type("message", seq=1)
        messages = http_url(server, f"/api/v1/conversations/{cid}/messages")

        listed = await http.get(http_url(server, "/api/v1/conversations"), headers=bearer(reader))
        assert listed.status_code == 200
        assert [c["conversation_id"] for c in listed.json()["conversations"]] == [cid]
        read = await http.get(messages, headers=bearer(reader))
        assert read.status_code == 200 and read.json()["messages"][0]["content"] == (
            "Where is my order?")
        refused = await http.post(messages, headers=bearer(reader), json={"text": "hi"})
        assert refused.status_code == 403
        assert refused.json() == {"error": "forbidden", "message": (
            "this token's scope is read: writing needs a token with the write scope")}

        sent = await http.post(messages, headers=bearer(writer),
                               json={"text": "It ships today.", "client_id": "crm-1"})
        assert sent.status_code == 201, sent.text
        stored = sent.json()
        assert stored["seq"] == 2 and stored["content"] == "It ships today."
        assert stored["sender"]["role"] == "agent" and stored["sender"]["name"] == "crm-bot"
        live = await vis.recv_type("message", seq=2)
        assert live["content"] == "It ships today." and live["sender"]["name"] == "crm-bot"
        seen = await agent.recv_type("message", seq=2)
        assert seen["sender"]["name"] == "crm-bot"
        again = await http.post(messages, headers=bearer(writer),
                                json={"text": "It ships today.", "client_id": "crm-1"})
        assert again.status_code == 200 and again.json() == stored
        bad = await http.post(messages, headers=bearer(writer), json={"txt": "x"})
        assert bad.status_code == 400 and "the body must be" in bad.json()["message"]

        close = http_url(server, f"/api/v1/conversations/{cid}/close")
        assert (await http.post(close, headers=bearer(reader))).status_code == 403
        closed = await http.post(close, headers=bearer(writer))
        assert closed.status_code == 200, closed.text
        assert closed.json()["conversation"]["status"] == "closed"
        note = await vis.recv_type("message", seq=3)
        assert note["sender"]["role"] == "system" and "crm-bot closed" in note["content"]
        twice = await http.post(close, headers=bearer(writer))
        assert twice.status_code == 409 and twice.json()["error"] == "conflict"
        late = await http.post(messages, headers=bearer(writer), json={"text": "more"})
        assert late.status_code == 409
        # The resend of a message stored before the close is still answered.
        resend = await http.post(messages, headers=bearer(writer),
                                 json={"text": "It ships today.", "client_id": "crm-1"})
        assert resend.status_code == 200 and resend.json()["seq"] == 2


async def test_a_client_id_used_in_another_conversation_is_a_conflict(
        server: Server, http: httpx.AsyncClient) -> None:
    """A client_id names one message: reused in another conversation it is a 409 naming the
    first one (it answered 200 with the other conversation's message and sent nothing)."""
    writer = await api_token(server, "crm-bot", "write")
    async with visitor(server, name="Vera") as (first, one), \
            visitor(server, name="Walt") as (second, two):
        for vis in (first, second):
            await vis.send(type="text", id="v1", content="Where is my order?")
            await vis.recv_type("message", seq=1)
        body = {"text": "It ships today.", "client_id": "crm-shipped"}
        sent = await http.post(http_url(server, f"/api/v1/conversations/{one['conversation_id']}"
                                                "/messages"), headers=bearer(writer), json=body)
        assert sent.status_code == 201, sent.text
        reused = await http.post(
            http_url(server, f"/api/v1/conversations/{two['conversation_id']}/messages"),
            headers=bearer(writer), json=body)
        assert reused.status_code == 409, reused.text
        assert reused.json() == {"error": "conflict", "message": (
            f"client_id 'crm-shipped' names a message of conversation {one['conversation_id']}"
            ": give each message its own client_id")}
        listed = await http.get(
            http_url(server, f"/api/v1/conversations/{two['conversation_id']}/messages"),
            headers=bearer(writer))
        assert [m["content"] for m in listed.json()["messages"]] == ["Where is my order?"]


async def test_revoked_is_refused_at_once_and_agent_endpoints_refuse_tokens(
        server: Server, http: httpx.AsyncClient) -> None:
    writer = await api_token(server, "crm-bot", "write")
    me = http_url(server, "/api/v1/me")
    assert (await http.get(http_url(server, "/api/v1/contacts"),
                           headers=bearer(writer))).status_code == 200
    for method, path in [("GET", "/api/v1/me"), ("POST", "/api/v1/me/status"),
                         ("POST", "/api/v1/logout"), ("POST", "/api/v1/canned"),
                         ("DELETE", "/api/v1/canned/hi"), ("GET", "/api/v1/blocks"),
                         ("POST", "/api/v1/blocks"), ("DELETE", "/api/v1/blocks/1"),
                         ("GET", "/api/v1/conversations/1/notes"),
                         ("POST", "/api/v1/conversations/1/labels/vip"),
                         ("DELETE", "/api/v1/conversations/1/labels/vip")]:
        refused = await http.request(method, http_url(server, path), headers=bearer(writer))
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json() == {"error": "forbidden", "message": (
            "this endpoint is for agents (a login token); API tokens may not use it")}
    await server.service.store.revoke_api_token("crm-bot")
    revoked = await http.get(http_url(server, "/api/v1/contacts"), headers=bearer(writer))
    assert revoked.status_code == 401
    assert revoked.json() == {"error": "unauthorized", "message": "invalid or expired token"}
    assert (await http.get(me, headers=bearer(writer))).status_code == 401
    _, agent_token = await make_agent(server, "alice")
    agents = await http.get(http_url(server, "/api/v1/agents"), headers=bearer(agent_token))
    assert [a["username"] for a in agents.json()["agents"]] == ["alice"]  # not the bot
    login = await http.post(http_url(server, "/api/v1/login"),
                            json={"username": "crm-bot", "password": "!"})
    assert login.status_code == 401


async def test_the_openapi_document_is_public(server: Server, http: httpx.AsyncClient) -> None:
    response = await http.get(http_url(server, "/api/v1/openapi.json"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert "/api/v1/conversations/{conversation_id}/close" in document["paths"]
    wrong = await http.post(http_url(server, "/api/v1/openapi.json"))
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
