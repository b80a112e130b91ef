"""Hostile input against API tokens and the REST writes (issue 13's attack pass): each test
is a defect found against a running server, failing before its fix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from customer_service.server.run import Server
from tests.integration.helpers import http_url, make_agent, visitor
from tests.integration.test_api_tokens import api_token, bearer


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def test_a_client_id_of_another_conversation_is_a_conflict_not_its_message(
        server: Server, http: httpx.AsyncClient) -> None:
    """client_id is unique per sender: reused in another conversation, the REST send used
    to answer 200 with the first conversation's message and send nothing."""
    writer = await api_token(server, "crm-bot", "write")
    async with visitor(server, name="Ann") as (ann, first), \
            visitor(server, name="Bo") as (bo, second):
        one, two = first["conversation_id"], second["conversation_id"]
        sent = await http.post(http_url(server, f"/api/v1/conversations/{one}/messages"),
                               headers=bearer(writer), json={"text": "Shipped.", "client_id": "k1"})
        assert sent.status_code == 201, sent.text
        await ann.recv_type("message", content="Shipped.")
        reused = await http.post(http_url(server, f"/api/v1/conversations/{two}/messages"),
                                 headers=bearer(writer),
                                 json={"text": "Refunded.", "client_id": "k1"})
        assert reused.status_code == 409, reused.text
        assert reused.json() == {"error": "conflict", "message": (
            f"client_id 'k1' names a message of conversation {one}: "
            "give each message its own client_id")}
        # The resend in its own conversation is still the idempotent 200.
        again = await http.post(http_url(server, f"/api/v1/conversations/{one}/messages"),
                                headers=bearer(writer),
                                json={"text": "Shipped.", "client_id": "k1"})
        assert again.status_code == 200 and again.json() == sent.json()
        await bo.nothing_more()


async def test_two_authorization_headers_are_refused(
        server: Server, http: httpx.AsyncClient) -> None:
    """A read token then a write token used to write as the write token (the last header
    won): a proxy checking the first one would see another caller than the app."""
    reader = await api_token(server, "reader", "read")
    writer = await api_token(server, "writer", "write")
    _, agent_token = await make_agent(server, "alice")
    async with visitor(server, name="Ann") as (_, welcome):
        url = http_url(server, f"/api/v1/conversations/{welcome['conversation_id']}/messages")
        for first, last in [(reader, writer), (writer, reader), (agent_token, agent_token)]:
            refused = await http.post(url, json={"text": "hi"}, headers=[
                ("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {last}")])
            assert refused.status_code == 401, refused.text
            assert refused.json() == {"error": "unauthorized", "message": (
                "the request has 2 Authorization headers: send one")}
        listed = await http.get(url, headers=bearer(reader))
        assert [m["content"] for m in listed.json()["messages"]
                if m["sender"]["role"] == "agent"] == []


async def test_head_is_get_without_the_body(server: Server, http: httpx.AsyncClient) -> None:
    """HEAD on a GET endpoint (a balancer's HEAD /healthz) used to be a 405."""
    reader = await api_token(server, "reader", "read")
    health = await http.head(http_url(server, "/healthz"))
    assert health.status_code == 200 and health.content == b""
    assert int(health.headers["content-length"]) > 0
    listed = await http.head(http_url(server, "/api/v1/conversations"), headers=bearer(reader))
    assert listed.status_code == 200 and listed.content == b""
    anonymous = await http.head(http_url(server, "/api/v1/conversations"))
    assert anonymous.status_code == 401
    refused = await http.head(http_url(server, "/api/v1/me"), headers=bearer(reader))
    assert refused.status_code == 403  # a HEAD needs what its GET needs
    post_only = await http.head(http_url(server, "/api/v1/login"))
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"
    wrong = await http.put(http_url(server, "/healthz"))
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
    assert wrong.json()["message"] == "/healthz accepts GET and HEAD"
