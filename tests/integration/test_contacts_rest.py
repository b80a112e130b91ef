"""``GET /api/v1/contacts`` and ``GET /api/v1/contacts/{id}`` on a real server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from customer_service.core.models import ContactInput
from customer_service.server.run import Server
from tests.integration.helpers import http_url, make_agent


async def seed(server: Server) -> None:
    await server.service.store.upsert_contacts([
        ContactInput(f"u{i}", f"Name {i}", f"u{i}@example.com",
                     tags=("all", *(("even",) if i % 2 == 0 else ()),
                           *(("third",) if i % 3 == 0 else ())),
                     attributes={"n": i}, unsubscribed=i == 7)
        for i in range(1, 8)])


@pytest.fixture
async def http(server: Server) -> Any:
    await seed(server)
    _, token = await make_agent(server, "alice")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


async def test_list_pages_and_filters(server: Server, http: httpx.AsyncClient) -> None:
    everything = await http.get(http_url(server, "/api/v1/contacts"))
    assert everything.status_code == 200
    body = everything.json()
    assert body["next_after"] is None
    assert [c["external_id"] for c in body["contacts"]] == [f"u{i}" for i in range(1, 8)]
    seventh = body["contacts"][6]
    assert seventh == {**seventh, "name": "Name 7", "email": "u7@example.com", "phone": "",
                       "tags": ["all"], "attributes": {"n": 7}, "unsubscribed": True,
                       "last_campaign_at": None}
    assert seventh["created_at"].endswith("Z") and isinstance(seventh["id"], int)

    seen: list[str] = []
    after: int | None = 0
    pages = 0
    while after is not None:
        page = (await http.get(http_url(server, "/api/v1/contacts"),
                               params={"limit": 3, "after": after})).json()
        seen += [c["external_id"] for c in page["contacts"]]
        after = page["next_after"]
        pages += 1
    assert seen == [f"u{i}" for i in range(1, 8)] and pages == 3

    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [c["external_id"] for c in response.json()["contacts"]]

    url = http_url(server, "/api/v1/contacts")
    assert ids(await http.get(url, params={"tag": "even"})) == ["u2", "u4", "u6"]
    assert ids(await http.get(url, params=[("tag", "even"), ("tag", "third")])) == ["u6"]
    assert ids(await http.get(url, params={"tag": "nobody"})) == []
    exact = (await http.get(url, params={"tag": "even", "limit": 3})).json()
    assert exact["next_after"] is None and len(exact["contacts"]) == 3
    assert ids(await http.get(url, params={"limit": 500})) == [f"u{i}" for i in range(1, 8)]


async def test_one_contact_by_id(server: Server, http: httpx.AsyncClient) -> None:
    listing = (await http.get(http_url(server, "/api/v1/contacts"))).json()["contacts"]
    first = listing[0]
    one = await http.get(http_url(server, f"/api/v1/contacts/{first['id']}"))
    assert one.status_code == 200 and one.json() == first

    missing = await http.get(http_url(server, "/api/v1/contacts/999999"))
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no contact 999999"}
    for bad in ("abc", "0", "-3", "9" * 30):
        response = await http.get(http_url(server, f"/api/v1/contacts/{bad}"))
        assert response.status_code == 400, bad
        assert response.json()["error"] == "bad_request"
        assert response.json()["message"].startswith("the contact id must be an integer")
    deeper = await http.get(http_url(server, f"/api/v1/contacts/{first['id']}/tags"))
    assert deeper.status_code == 404 and deeper.json()["error"] == "not_found"
    wrong_method = await http.delete(http_url(server, f"/api/v1/contacts/{first['id']}"))
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(("query", "parameter"), [
    ("limit=abc", "limit"), ("limit=0", "limit"), ("limit=501", "limit"), ("limit=", "limit"),
    ("after=-1", "after"), ("after=x", "after"), ("after=99999999999999999999", "after"),
    ("tag=", "tag"), ("tag=a%3Bb", "tag"), (f"tag={'t' * 65}", "tag"),
])
async def test_bad_query_values_name_the_parameter(server: Server, http: httpx.AsyncClient,
                                                  query: str, parameter: str) -> None:
    response = await http.get(http_url(server, f"/api/v1/contacts?{query}"))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "bad_request"
    assert body["message"].startswith(f"query parameter '{parameter}'"), body


async def test_an_agent_token_is_needed(server: Server) -> None:
    await seed(server)
    _, token = await make_agent(server, "bob")
    async with httpx.AsyncClient() as anonymous:
        for path in ("/api/v1/contacts", "/api/v1/contacts/1"):
            response = await anonymous.get(http_url(server, path))
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
            wrong = await anonymous.get(http_url(server, path),
                                        headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            in_url = await anonymous.get(http_url(server, f"{path}?token={token}"))
            assert in_url.status_code == 401 and "Authorization: Bearer" in in_url.text
