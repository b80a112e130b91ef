"""Conversation labels on a real server: ``POST`` / ``DELETE
/api/v1/conversations/{id}/labels/{label}``, the ``conversation`` event that tells the
agents following it, ``labels`` in the welcome and the REST answers, the ``label`` filter,
and a clear error for each bad input."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from customer_service.core.labels import MAX_LABELS
from customer_service.server.run import Server
from tests.integration.helpers import agent_socket, http_url, make_agent, visitor


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def label(http: httpx.AsyncClient, server: Server, token: str, method: str, cid: int,
                name: str) -> httpx.Response:
    return await http.request(method, http_url(
        server, f"/api/v1/conversations/{cid}/labels/{quote(name, safe='')}"), headers=auth(token))


async def test_a_label_change_reaches_the_agent_following_the_conversation(
        server: Server) -> None:
    _, alice_token = await make_agent(server, "alice")
    _, bob_token = await make_agent(server, "bob")
    async with visitor(server, name="Vera") as (vis, welcome), httpx.AsyncClient() as http:
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="My invoice is wrong")
        await vis.recv_type("ack", id="v1")
        async with agent_socket(server, alice_token) as (alice, alice_welcome):
            listed = {c["conversation_id"]: c for c in alice_welcome["conversations"]}
            assert listed[cid]["labels"] == []
            await alice.send(type="accept", id="a1", conversation_id=cid)
            await alice.recv_type("ack", id="a1")
            await vis.recv_type("message", seq=2)  # "Alice joined"
            await alice.recv_type("conversation",
                                  where=lambda f: f["conversation"]["status"] == "assigned")

            # bob (not its agent) labels it; alice, who has it, hears of it
            added = await label(http, server, bob_token, "POST", cid, "Billing")
            assert added.status_code == 200, added.text
            assert added.json() == {"conversation_id": cid, "labels": ["billing"]}
            event = await alice.recv_type("conversation",
                                          where=lambda f: f["conversation"]["labels"] != [])
            assert event["conversation"]["conversation_id"] == cid
            assert event["conversation"]["labels"] == ["billing"]
            assert event["conversation"]["status"] == "assigned"

            both = await label(http, server, bob_token, "POST", cid, "退款")
            assert both.json()["labels"] == ["billing", "退款"]
            await alice.recv_type("conversation",
                                  where=lambda f: f["conversation"]["labels"] == ["billing", "退款"])

            again = await label(http, server, alice_token, "POST", cid, "BILLING")
            assert again.json()["labels"] == ["billing", "退款"]  # one spelling, no duplicate

            removed = await label(http, server, alice_token, "DELETE", cid, "billing")
            assert removed.status_code == 200 and removed.json()["labels"] == ["退款"]
            await alice.recv_type("conversation",
                                  where=lambda f: f["conversation"]["labels"] == ["退款"])
            gone = await label(http, server, alice_token, "DELETE", cid, "never-had")
            assert gone.status_code == 200 and gone.json()["labels"] == ["退款"]

            one = await http.get(http_url(server, f"/api/v1/conversations/{cid}"),
                                 headers=auth(alice_token))
            assert one.json()["conversation"]["labels"] == ["退款"]
        async with agent_socket(server, alice_token) as (_, welcome_again):
            listed = {c["conversation_id"]: c for c in welcome_again["conversations"]}
            assert listed[cid]["labels"] == ["退款"]
        # the visitor is never told about labels
        await vis.nothing_more()
        assert not any("labels" in frame or "退款" in str(frame) for frame in vis.seen)


async def test_the_list_filters_by_every_label(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    ids: list[int] = []
    for name in ("Ann", "Bob", "Cid"):
        async with visitor(server, name=name) as (vis, welcome):
            await vis.send(type="text", id="v1", content="hello")
            await vis.recv_type("ack", id="v1")
            ids.append(welcome["conversation_id"])
    ann, bob, _ = ids
    async with httpx.AsyncClient() as http:
        for cid, names in ((ann, ["vip"]), (bob, ["vip", "billing"])):
            for name in names:
                assert (await label(http, server, token, "POST", cid, name)).status_code == 200

        async def listed(**params: Any) -> list[tuple[int, list[str]]]:
            response = await http.get(http_url(server, "/api/v1/conversations"),
                                      params=params, headers=auth(token))
            assert response.status_code == 200, response.text
            return [(c["conversation_id"], c["labels"]) for c in response.json()["conversations"]]

        assert sorted(await listed(label="vip")) == [(ann, ["vip"]), (bob, ["billing", "vip"])]
        assert await listed(label=["VIP", "billing"]) == [(bob, ["billing", "vip"])]
        assert await listed(label=["vip", "nobody"]) == []
        assert len(await listed()) == 3
        refused = await http.get(http_url(server, "/api/v1/conversations"),
                                 params={"label": "two words"}, headers=auth(token))
        assert refused.status_code == 400
        assert refused.json()["message"].startswith("query parameter 'label': label 'two words'")


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/labels/", 400, "a label cannot be empty"),
    ("/labels/%20%20", 400, "a label cannot be empty"),
    ("/labels/" + "x" * 33, 400, "is too long: at most 32 characters, not 33"),
    ("/labels/a%20b", 400, "may only contain letters, digits, '-' and '_' (not ' ')"),
    ("/labels/-x", 400, "must begin with a letter or a digit"),
    ("/labels/%FF", 400, "the label in the path is not UTF-8"),
    ("/labels/a%2Fb", 400, "(not '/')"),
])
async def test_bad_labels_are_refused_clearly(server: Server, path: str, status: int,
                                              message: str) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server) as (_, welcome), httpx.AsyncClient() as http:
        url = http_url(server, f"/api/v1/conversations/{welcome['conversation_id']}{path}")
        response = await http.post(url, headers=auth(token))
        assert response.status_code == status, response.text
        assert response.json() == {"error": "bad_request", "message": response.json()["message"]}
        assert message in response.json()["message"]


async def test_unknown_conversation_method_token_and_limit(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server) as (_, welcome), httpx.AsyncClient() as http:
        cid = welcome["conversation_id"]
        missing = await label(http, server, token, "POST", cid + 99, "vip")
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found", "message": f"no conversation {cid + 99}"}
        assert (await label(http, server, token, "DELETE", cid + 99, "vip")).status_code == 404
        bad_id = await http.post(http_url(server, "/api/v1/conversations/abc/labels/vip"),
                                 headers=auth(token))
        assert bad_id.status_code == 400 and "conversation id" in bad_id.json()["message"]
        wrong = await label(http, server, token, "GET", cid, "vip")
        assert wrong.status_code == 405 and "accepts POST and DELETE" in wrong.json()["message"]
        anonymous = await http.post(http_url(server, f"/api/v1/conversations/{cid}/labels/vip"))
        assert anonymous.status_code == 401
        for i in range(MAX_LABELS):
            assert (await label(http, server, token, "POST", cid, f"l{i}")).status_code == 200
        full = await label(http, server, token, "POST", cid, "one-more")
        assert full.status_code == 409 and f"at most {MAX_LABELS}" in full.json()["message"]
