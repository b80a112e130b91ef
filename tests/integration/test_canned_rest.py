"""``GET/POST /api/v1/canned`` and ``DELETE /api/v1/canned/{shortcut}`` on a real server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from customer_service.server.run import Server
from tests.integration.helpers import http_url, make_agent


@pytest.fixture
async def http(server: Server) -> Any:
    _, token = await make_agent(server, "alice")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"}
    message: str = body["message"]
    return message


async def test_add_list_and_delete(server: Server, http: httpx.AsyncClient) -> None:
    url = http_url(server, "/api/v1/canned")
    assert (await http.get(url)).json() == {"canned": []}
    added = await http.post(url, json={"shortcut": "Refund",
                                       "text": "Hi {visitor.name|there}, refunds take 5 days."})
    assert added.status_code == 201, added.text
    reply = added.json()
    assert reply == {**reply, "shortcut": "refund",
                     "text": "Hi {visitor.name|there}, refunds take 5 days."}
    assert isinstance(reply["id"], int) and reply["created_at"].endswith("Z")
    assert (await http.post(url, json={"shortcut": "hello", "text": "I am {agent.name}."})
            ).status_code == 201
    listed = (await http.get(url)).json()["canned"]
    assert [r["shortcut"] for r in listed] == ["hello", "refund"]
    assert listed[1] == reply

    deleted = await http.delete(http_url(server, "/api/v1/canned/hello"))
    assert deleted.status_code == 200 and deleted.json() == {"deleted": "hello"}
    assert [r["shortcut"] for r in (await http.get(url)).json()["canned"]] == ["refund"]
    # the store has it too (what the CLI and the other instances read)
    assert [r.shortcut for r in await server.service.store.list_canned_replies()] == ["refund"]


async def test_bad_input_gets_a_json_error_and_stores_nothing(
        server: Server, http: httpx.AsyncClient) -> None:
    url = http_url(server, "/api/v1/canned")
    assert (await http.post(url, json={"shortcut": "refund", "text": "first"})).status_code == 201

    duplicate = await http.post(url, json={"shortcut": "REFUND", "text": "second"})
    assert "'refund' exists already" in error(duplicate, 409)
    assert duplicate.json()["error"] == "conflict"

    unknown = await http.post(url, json={"shortcut": "x", "text": "Hi {visitor.phone}"})
    assert "unknown field {visitor.phone}" in error(unknown, 400)
    assert unknown.json()["error"] == "bad_request"

    assert error(await http.post(url, json={"shortcut": "x", "text": "  "}), 400) \
        == "the text is empty"
    assert "the text has 4001 characters; at most 4000" in error(
        await http.post(url, json={"shortcut": "x", "text": "y" * 4001}), 400)
    assert "may hold only letters, digits" in error(
        await http.post(url, json={"shortcut": "a b", "text": "hi"}), 400)
    assert "missing required field `text`" in error(await http.post(url, json={"shortcut": "x"}), 400)
    assert "invalid JSON" in error(await http.post(url, content=b"{nope"), 400)
    assert "expected `str`" in error(
        await http.post(url, json={"shortcut": 5, "text": "hi"}), 400)
    assert [r.shortcut for r in await server.service.store.list_canned_replies()] == ["refund"]

    missing = await http.delete(http_url(server, "/api/v1/canned/nope"))
    assert error(missing, 404) == "no canned reply with the shortcut 'nope'"
    assert "may hold only" in error(await http.delete(http_url(server, "/api/v1/canned/a.b")),
                                    400)
    assert error(await http.put(url, json={}), 405)
    assert error(await http.get(http_url(server, "/api/v1/canned/refund")), 405)


async def test_an_agent_token_is_required(server: Server, http: httpx.AsyncClient) -> None:
    url = http_url(server, "/api/v1/canned")
    async with httpx.AsyncClient() as anonymous:
        for response in (await anonymous.get(url),
                         await anonymous.post(url, json={"shortcut": "x", "text": "hi"}),
                         await anonymous.delete(f"{url}/x"),
                         await anonymous.get(url, headers={"Authorization": "Bearer wrong"})):
            error(response, 401)
    assert await server.service.store.list_canned_replies() == []
