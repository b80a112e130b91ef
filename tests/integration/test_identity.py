"""Identified visitors end to end: hello's user_id/user_hash verified against
``[identity] secret``, the visitor linked to its contact, one history on every device,
refusals that link nothing, ``required = true``, and the profile agents see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from customer_service.config import Config
from customer_service.core.identity import expected_hash
from customer_service.core.models import ContactInput
from customer_service.server.run import Server, open_server
from tests.integration.helpers import (
    Client,
    agent_socket,
    http_url,
    make_agent,
    next_id,
    open_ws,
    visitor,
    ws_url,
)

SECRET = "integration-identity-secret-0123456789"


def signed(user_id: str, secret: str = SECRET) -> dict[str, str]:
    """The hello fields a site's page gives the widget for ``user_id``."""
    return {"user_id": user_id, "user_hash": expected_hash(secret, user_id)}


@pytest.fixture
def config(config: Config) -> Config:
    return config.with_changes(identity__secret=SECRET)


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[Server]:
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def refused(server: Server, **hello: Any) -> tuple[dict[str, Any], int, str]:
    """Say hello with ``hello``; return the error frame and the close code and reason that
    follow it (the socket must close)."""
    async with open_ws(ws_url(server, "/ws/visitor")) as ws:
        client = Client(ws)
        await client.send(type="hello", **hello)
        error = await client.recv()
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    return error, closed.value.reason.code, closed.value.reason.reason or ""


async def test_one_contact_two_devices_one_history_live_on_both(server: Server) -> None:
    store = server.service.store
    async with visitor(server, name="Ann", email="ann@example.com",
                       **signed("user-42")) as (phone, first):
        assert first["user_id"] == "user-42"
        await phone.send(type="text", id="p1", content="from the phone")
        ack = await phone.recv_type("ack", id="p1")
        async with visitor(server, **signed("user-42")) as (laptop, second):
            # two visitor tokens, one conversation
            assert second["visitor_token"] != first["visitor_token"]
            assert second["visitor_id"] != first["visitor_id"]
            assert second["conversation_id"] == first["conversation_id"]
            assert second["user_id"] == "user-42"
            assert second["last_seq"] == ack["seq"]
            replay = await laptop.recv_type("message", seq=ack["seq"])
            assert replay["content"] == "from the phone"
            # what one device writes arrives live on the other
            await phone.send(type="text", id="p2", content="still the phone")
            live = await laptop.recv_type("message", where=lambda f: f["seq"] > ack["seq"])
            assert live["content"] == "still the phone"
            await laptop.send(type="text", id="l1", content="now the laptop")
            back = await phone.recv_type("message", content="now the laptop")
            assert back["sender"] == {"role": "visitor", "id": second["visitor_id"], "name": "Visitor"}

    contact = await store.get_contact_by_external_id("user-42")
    assert contact is not None
    assert (contact.name, contact.email) == ("Ann", "ann@example.com")  # from the hello
    for visitor_id in (first["visitor_id"], second["visitor_id"]):
        linked = await store.contact_for_visitor(visitor_id)
        assert linked is not None and linked.id == contact.id
    owner = await store.contact_for_conversation(first["conversation_id"])
    assert owner is not None and owner.id == contact.id


async def test_a_returning_device_replays_only_what_it_lacks(server: Server) -> None:
    async with visitor(server, **signed("user-7")) as (vis, welcome):
        for n in range(3):
            await vis.send(type="text", id=f"t{n}", content=f"line {n}")
            await vis.recv_type("ack", id=f"t{n}")
    token, cid = welcome["visitor_token"], welcome["conversation_id"]
    # same conversation named: only past last_seq
    async with visitor(server, visitor_token=token, last_seq=2, conversation_id=cid,
                       **signed("user-7")) as (vis, again):
        assert (again["visitor_token"], again["conversation_id"]) == (token, cid)
        assert (await vis.recv_type("message"))["seq"] == 3
        await vis.nothing_more()
    # an identified hello that does not name the conversation its last_seq counts in
    # gets all of it: it may be another conversation than the client held
    async with visitor(server, visitor_token=token, last_seq=2,
                       **signed("user-7")) as (vis, again):
        assert [(await vis.recv_type("message"))["seq"] for _ in range(3)] == [1, 2, 3]


async def test_an_anonymous_conversation_continues_when_the_visitor_signs_in(
        server: Server) -> None:
    async with visitor(server) as (vis, anonymous):
        assert "user_id" not in anonymous
        await vis.send(type="text", id="a1", content="before signing in")
        await vis.recv_type("ack", id="a1")
    async with visitor(server, visitor_token=anonymous["visitor_token"], last_seq=1,
                       conversation_id=anonymous["conversation_id"],
                       **signed("user-9")) as (vis, identified):
        assert identified["conversation_id"] == anonymous["conversation_id"]
        assert identified["visitor_id"] == anonymous["visitor_id"]
        await vis.nothing_more()
    owner = await server.service.store.contact_for_conversation(anonymous["conversation_id"])
    assert owner is not None and owner.external_id == "user-9"


@pytest.mark.parametrize(("hello", "problem"), [
    ({"user_id": "user-42", "user_hash": expected_hash(SECRET, "user-43")},
     "user_hash does not match user_id"),
    ({"user_id": "user-42", "user_hash": expected_hash(SECRET + "x", "user-42")},
     "user_hash does not match user_id"),
    ({"user_id": "user-42", "user_hash": "not hex"}, "user_hash does not match user_id"),
    ({"user_id": "user-42"}, "user_id was sent without user_hash"),
    ({"user_hash": expected_hash(SECRET, "user-42")}, "user_hash was sent without user_id"),
    ({"user_id": "", "user_hash": expected_hash(SECRET, "")}, "user_id is empty"),
    ({"user_id": "x" * 256, "user_hash": expected_hash(SECRET, "x" * 256)},
     "user_id is 256 characters; the limit is 255"),
    ({"user_id": "a\nb", "user_hash": expected_hash(SECRET, "a\nb")}, "control character"),
])
async def test_a_bad_identity_is_refused_and_links_nothing(
        server: Server, hello: dict[str, str], problem: str) -> None:
    store = server.service.store
    error, code, reason = await refused(server, **hello)
    assert error["type"] == "error"
    assert error["error"] == "identity_invalid"
    assert problem in error["message"]
    assert (code, reason) == (1008, "identity_invalid")
    assert (await store.stats()).visitors == 0  # refused before anything was stored
    assert await store.get_contact_by_external_id("user-42") is None


async def test_a_known_visitor_with_a_wrong_hash_stays_unlinked(server: Server) -> None:
    store = server.service.store
    async with visitor(server) as (_, anonymous):
        pass
    error, code, _ = await refused(
        server, visitor_token=anonymous["visitor_token"], user_id="user-42",
        user_hash=expected_hash("some-other-secret-of-the-attacker", "user-42"))
    assert (error["error"], code) == ("identity_invalid", 1008)
    assert await store.contact_for_visitor(anonymous["visitor_id"]) is None
    assert await store.contact_for_conversation(anonymous["conversation_id"]) is None
    assert await store.get_contact_by_external_id("user-42") is None
    # the hash in upper case is the same hash
    async with visitor(server, visitor_token=anonymous["visitor_token"], user_id="user-42",
                       user_hash=expected_hash(SECRET, "user-42").upper()) as (_, welcome):
        assert welcome["user_id"] == "user-42"


async def test_identity_is_refused_when_no_secret_is_set(config: Config) -> None:
    async with serving(config.with_changes(identity__secret="")) as server:
        error, code, _ = await refused(server, **signed("user-42"))
        assert error["error"] == "identity_invalid"
        assert "[identity] secret is not set" in error["message"]
        assert code == 1008
        assert await server.service.store.get_contact_by_external_id("user-42") is None
        async with visitor(server) as (_, welcome):  # anonymous visitors are served
            assert "user_id" not in welcome


async def test_required_refuses_anonymous_visitors_and_serves_identified_ones(
        config: Config) -> None:
    async with serving(config.with_changes(identity__required=True)) as server:
        error, code, reason = await refused(server, name="anonymous")
        assert error["error"] == "identity_required"
        assert "user_id and user_hash" in error["message"]
        assert (code, reason) == (1008, "identity_required")
        assert (await server.service.store.stats()).visitors == 0
        # a bad identity is refused as bad, not as missing
        error, _, _ = await refused(server, user_id="u", user_hash="0" * 64)
        assert error["error"] == "identity_invalid"
        async with visitor(server, **signed("member-1")) as (vis, welcome):
            assert welcome["user_id"] == "member-1"
            await vis.send(type="text", id=next_id(), content="hello")
            await vis.recv_type("ack")


async def test_a_shared_computer_switches_contact_and_a_signed_out_visitor_starts_afresh(
        server: Server) -> None:
    store = server.service.store
    async with visitor(server, **signed("alice")) as (vis, as_alice):
        await vis.send(type="text", id="a", content="alice's secret")
        await vis.recv_type("ack", id="a")
    token = as_alice["visitor_token"]
    # the site signed Bob in on the same browser: the same visitor, now Bob's
    async with visitor(server, visitor_token=token, last_seq=1,
                       conversation_id=as_alice["conversation_id"],
                       **signed("bob")) as (vis, as_bob):
        assert as_bob["user_id"] == "bob"
        assert as_bob["visitor_id"] == as_alice["visitor_id"]
        assert as_bob["conversation_id"] != as_alice["conversation_id"]
        assert as_bob["last_seq"] == 0
        await vis.nothing_more()  # nothing of Alice's
    bob = await store.contact_for_visitor(as_alice["visitor_id"])
    assert bob is not None and bob.external_id == "bob"
    alice = await store.contact_for_conversation(as_alice["conversation_id"])
    assert alice is not None and alice.external_id == "alice"  # her history stays hers
    # signed out: the token alone does not open a contact's history
    async with visitor(server, visitor_token=token, last_seq=1) as (vis, anonymous):
        assert anonymous["visitor_token"] != token
        assert anonymous["visitor_id"] != as_alice["visitor_id"]
        assert anonymous["conversation_id"] not in (as_alice["conversation_id"],
                                                   as_bob["conversation_id"])
        assert "user_id" not in anonymous
        await vis.nothing_more()


async def test_a_shared_computers_token_never_opens_the_previous_users_history_once_the_next_one_is_deleted(
        server: Server) -> None:
    """Alice chats on a shared browser, Bob signs in there, then Bob's contact is deleted
    (an erasure request): the browser's visitor is no longer linked to anyone, and its
    token alone must not open Alice's conversation, which is still hers."""
    store = server.service.store
    async with visitor(server, **signed("bob")) as (phone, _):  # Bob's own history
        await phone.send(type="text", id="b", content="bob's words")
        await phone.recv_type("ack", id="b")
    async with visitor(server, **signed("alice")) as (vis, as_alice):
        await vis.send(type="text", id="a", content="alice's secret")
        await vis.recv_type("ack", id="a")
    token = as_alice["visitor_token"]
    async with visitor(server, visitor_token=token, last_seq=1,
                       conversation_id=as_alice["conversation_id"],
                       **signed("bob")) as (_, as_bob):
        assert as_bob["visitor_id"] == as_alice["visitor_id"]
    await store.delete_contact("bob")
    async with visitor(server, visitor_token=token, last_seq=0) as (vis, anonymous):
        assert anonymous["conversation_id"] != as_alice["conversation_id"]
        assert anonymous["last_seq"] == 0
        await vis.nothing_more()  # nothing of Alice's
    alice = await store.contact_for_conversation(as_alice["conversation_id"])
    assert alice is not None and alice.external_id == "alice"


async def test_the_welcome_says_how_far_the_contact_has_read_on_any_device(
        server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server, **signed("reader")) as (phone, first):
        cid = first["conversation_id"]
        assert first["visitor_read_seq"] == 0
        await phone.send(type="text", id="q", content="question")
        await phone.recv_type("ack", id="q")
        async with agent_socket(server, token) as (agent, _):
            await agent.send(type="accept", id="acc", conversation_id=cid)
            await agent.recv_type("ack", id="acc")
            for n in range(2):
                await agent.send(type="text", id=f"r{n}", conversation_id=cid, content=f"answer {n}")
                await agent.recv_type("ack", id=f"r{n}")
        last = (await phone.recv_type("message", content="answer 0"))["seq"]
        await phone.send(type="read", seq=last, id="rd")
        await phone.recv_type("ack", id="rd")
    async with visitor(server, **signed("reader")) as (_, laptop):
        # the laptop's badge counts only what no device has read: the last answer
        assert laptop["visitor_read_seq"] == last
        assert laptop["last_seq"] == last + 1


async def test_agents_see_the_contacts_profile(server: Server) -> None:
    store = server.service.store
    await store.upsert_contacts([ContactInput(
        external_id="vip-1", name="Vera Ip", email="vera@example.com", phone="+33 1 23 45 67 89",
        tags=("gold", "paris"), attributes={"plan": "pro", "orders": 12}, unsubscribed=True)])
    _, token = await make_agent(server, "alice")
    async with agent_socket(server, token) as (agent, _), \
            visitor(server, **signed("vip-1")) as (vis, welcome):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="hi", content="hello")
        await vis.recv_type("ack", id="hi")
        event = await agent.recv_type("conversation",
                                      where=lambda f: f["conversation"]["conversation_id"] == cid)
        expected = {"external_id": "vip-1", "name": "Vera Ip", "email": "vera@example.com",
                    "phone": "+33 1 23 45 67 89", "tags": ["gold", "paris"],
                    "attributes": {"plan": "pro", "orders": 12}, "unsubscribed": True}
        contact = event["conversation"]["contact"]
        assert {k: contact[k] for k in expected} == expected
        async with httpx.AsyncClient() as http:
            answer = await http.get(http_url(server, f"/api/v1/conversations/{cid}"),
                                    headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200
            one = answer.json()["conversation"]
            assert one["conversation_id"] == cid
            assert {k: one["contact"][k] for k in expected} == expected
            assert one["last_message"]["content"] == "hello"
            # an anonymous visitor's conversation has no contact: null, not absent
            async with visitor(server) as (_, anonymous):
                plain = await http.get(
                    http_url(server, f"/api/v1/conversations/{anonymous['conversation_id']}"),
                    headers={"Authorization": f"Bearer {token}"})
            assert plain.json()["conversation"]["contact"] is None
            missing = await http.get(http_url(server, "/api/v1/conversations/999999"),
                                     headers={"Authorization": f"Bearer {token}"})
            assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
            anonymous_call = await http.get(http_url(server, f"/api/v1/conversations/{cid}"))
            assert anonymous_call.status_code == 401
