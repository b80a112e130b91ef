"""Visitor context on a real server: the hello's referrer, time zone and title, the
upgrade's User-Agent and address (behind a trusted proxy, the forwarded one), ``page``
frames, the ``page`` frame agents get, ``GET /api/v1/conversations/{id}/context``, and a
clear error for each bad input (the socket stays open)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from customer_service.config import Config
from customer_service.core.visitor_context import MAX_URL
from customer_service.server.run import Server, open_server
from customer_service.server.visitor_context import USER_AGENTS
from tests.integration.helpers import Client, agent_socket, http_url, make_agent, ws_url

CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/120.0.6099.109 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")


@asynccontextmanager
async def serving(config: Config, **changes: Any) -> AsyncIterator[Server]:
    async with open_server(config.with_changes(**changes)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


@asynccontextmanager
async def browser(server: Server, user_agent: str | None = None,
                  forwarded_for: str | None = None) -> AsyncIterator[Client]:
    """A visitor socket opened as a browser would: its User-Agent, maybe through a proxy."""
    headers: list[tuple[bytes, bytes]] = []
    if user_agent is not None:
        headers.append((b"User-Agent", user_agent.encode()))
    if forwarded_for is not None:
        headers.append((b"X-Forwarded-For", forwarded_for.encode()))
    async with open_websocket_url(ws_url(server, "/ws/visitor"), extra_headers=headers) as ws:
        try:
            yield Client(ws)
        finally:
            stream = getattr(ws, "_stream", None)
            if stream is not None:
                await stream.aclose()


async def context(http: httpx.AsyncClient, server: Server, token: str, cid: int | str
                  ) -> httpx.Response:
    return await http.get(http_url(server, f"/api/v1/conversations/{cid}/context"),
                          headers={"Authorization": f"Bearer {token}"})


async def context_when(http: httpx.AsyncClient, server: Server, token: str, cid: int,
                       ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The context once ``ready`` says so: writes are batched (a fraction of a second)."""
    with trio.fail_after(10):
        while True:
            answer = await context(http, server, token, cid)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            if ready(body):
                return body
            await trio.sleep(0.05)


async def test_hello_user_agent_and_pages_reach_the_context_and_the_agents(
        server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with agent_socket(server, token) as (agent, _), \
            browser(server, CHROME_WINDOWS) as vis, httpx.AsyncClient() as http:
        await vis.send(type="hello", name="Vera", email="vera@example.com",
                       page="https://shop.example/", title="Shop",
                       referrer="https://search.example/results?q=blue+widget#top",
                       timezone="Europe/Paris")
        welcome = await vis.recv_type("welcome")
        cid = welcome["conversation_id"]
        found = await context_when(http, server, token, cid, lambda b: bool(b["pages"]))
        assert found["conversation_id"] == cid
        assert (found["name"], found["email"]) == ("Vera", "vera@example.com")
        assert (found["page"], found["title"]) == ("https://shop.example/", "Shop")
        assert found["referrer"] == "https://search.example/results"  # no query, no fragment
        assert found["timezone"] == "Europe/Paris"
        assert found["ip"] == "127.0.0.1"
        assert found["user_agent"] == CHROME_WINDOWS
        assert found["browser"] == {"name": "Chrome", "version": "120.0"}
        assert found["os"] == {"name": "Windows", "version": "10"}
        assert found["device"] == "unknown"
        assert [p["url"] for p in found["pages"]] == ["https://shop.example/"]
        assert found["earlier"] == [] and found["earlier_total"] == 0
        assert found["contact"] is None

        # a single-page app navigates: the agent following the queue hears of it at once
        await vis.send(type="page", url="https://shop.example/cart?coupon=SECRET", title="Cart",
                       id="p1")
        await vis.recv_type("ack", id="p1")
        event = await agent.recv_type("page", conversation_id=cid)
        assert (event["url"], event["title"]) == ("https://shop.example/cart", "Cart")
        assert event["at"].endswith("Z")
        await vis.send(type="page", url="https://shop.example/pay", title="Pay")
        await agent.recv_type("page", conversation_id=cid, url="https://shop.example/pay")
        found = await context_when(http, server, token, cid, lambda b: len(b["pages"]) == 3)
        assert [(p["url"], p["title"]) for p in found["pages"]] == [
            ("https://shop.example/", "Shop"), ("https://shop.example/cart", "Cart"),
            ("https://shop.example/pay", "Pay")]
        assert found["page"] == "https://shop.example/pay"
        assert found["referrer"] == "https://search.example/results"  # the visit's, still


async def test_a_second_device_and_earlier_conversations(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    store = server.service.store
    async with browser(server, SAFARI_IPHONE) as phone, httpx.AsyncClient() as http:
        await phone.send(type="hello", page="https://shop.example/m", timezone="Asia/Tokyo")
        welcome = await phone.recv_type("welcome")
        cid = welcome["conversation_id"]
        found = await context_when(http, server, token, cid, lambda b: bool(b["pages"]))
        assert found["browser"] == {"name": "Mobile Safari", "version": "17.1"}
        assert found["os"] == {"name": "iOS", "version": "17.1.2"}
        assert found["device"] == "iPhone"
        # the same person signed in on the site: their other conversations count
        contact, _ = await store.link_visitor(welcome["visitor_id"], "u-1", "Sam", None)
        other = await store.create_visitor("other-device", "", "", "")
        await store.link_visitor(other.id, "u-1", None, None)
        earlier = (await store.current_conversation(other.id)).id
        assert earlier != cid
        found = await context_when(http, server, token, cid, lambda b: b["earlier_total"] == 1)
        assert [e["id"] for e in found["earlier"]] == [earlier]
        assert found["earlier"][0]["status"] == "open"
        assert found["earlier"][0]["created_at"].endswith("Z")
        assert found["contact"]["external_id"] == "u-1"
        assert found["contact"]["id"] == contact.id
        assert found["name"] == "Sam"  # the contact's, as the widget gave none


async def test_behind_a_trusted_proxy_the_forwarded_address_is_shown(config: Config) -> None:
    async with serving(config, server__trusted_proxies=["127.0.0.1"]) as server, \
            httpx.AsyncClient() as http:
        _, token = await make_agent(server, "alice")
        async with browser(server, CHROME_WINDOWS, forwarded_for="198.51.100.1, 203.0.113.9"
                           ) as vis:
            await vis.send(type="hello", page="https://shop.example/")
            cid = (await vis.recv_type("welcome"))["conversation_id"]
            found = await context_when(http, server, token, cid, lambda b: bool(b["ip"]))
            assert found["ip"] == "203.0.113.9"  # the proxy's entry, not what the client said
    async with serving(config) as server, httpx.AsyncClient() as http:
        _, token = await make_agent(server, "bob")
        async with browser(server, forwarded_for="203.0.113.9") as vis:
            await vis.send(type="hello", page="https://shop.example/")
            cid = (await vis.recv_type("welcome"))["conversation_id"]
            found = await context_when(http, server, token, cid, lambda b: bool(b["ip"]))
            assert found["ip"] == "127.0.0.1"  # no trusted proxy: the header is not believed
            assert found["browser"]["name"] == "unknown"  # no User-Agent sent


async def test_bad_page_frames_get_errors_and_the_socket_stays_open(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with browser(server, CHROME_WINDOWS) as vis, httpx.AsyncClient() as http:
        await vis.send(type="hello", page="https://shop.example/", timezone="Mars/Olympus_Mons")
        cid = (await vis.recv_type("welcome"))["conversation_id"]
        bad: list[tuple[dict[str, Any], str]] = [
            ({"url": "https://shop.example/" + "a" * MAX_URL, "id": "b1"},
             "invalid 'page' frame: field 'url': expected `str` of length <= 2048"),
            ({"url": 42, "id": "b2"}, "invalid 'page' frame: field 'url': expected `str`"),
            ({"id": "b3"}, "invalid 'page' frame: Object missing required field `url`"),
            ({"url": "javascript:alert(1)", "id": "b4"},
             "field 'url': expected an absolute http(s) URL"),
            ({"url": "https://shop.example/", "title": ["x"], "id": "b5"},
             "field 'title': expected `str`"),
        ]
        for fields, message in bad:
            await vis.send(type="page", **fields)
            error = await vis.recv_type("error", id=fields["id"])
            assert error["error"] == "bad_request"
            assert message in error["message"]
        await vis.send(type="ping", id="still-there")
        assert (await vis.recv_type("pong"))["id"] == "still-there"
        await vis.send(type="page", url="https://shop.example/ok", id="good")
        await vis.recv_type("ack", id="good")
        found = await context_when(http, server, token, cid, lambda b: len(b["pages"]) == 2)
        assert found["timezone"] == ""  # not a zone: dropped, never stored
        assert [p["url"] for p in found["pages"]] == ["https://shop.example/",
                                                      "https://shop.example/ok"]


async def test_context_errors(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with httpx.AsyncClient() as http:
        missing = await context(http, server, token, 999)
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found", "message": "no conversation 999"}
        for bad in ("abc", "0", "-1", "99999999999999999999"):
            answer = await context(http, server, token, bad)
            assert answer.status_code == 400, bad
            assert answer.json()["error"] == "bad_request"
            assert "conversation id must be an integer" in answer.json()["message"]
        anonymous = await http.get(http_url(server, "/api/v1/conversations/1/context"))
        assert anonymous.status_code == 401
        posted = await http.post(http_url(server, "/api/v1/conversations/1/context"),
                                 headers={"Authorization": f"Bearer {token}"})
        assert posted.status_code == 405
        assert posted.json()["error"] == "method_not_allowed"
        deeper = await http.get(http_url(server, "/api/v1/conversations/1/context/x"),
                                headers={"Authorization": f"Bearer {token}"})
        assert deeper.status_code == 404


async def test_a_conversation_without_context_yet(server: Server) -> None:
    """A conversation made outside a socket (a campaign's): what is known, nothing invented."""
    _, token = await make_agent(server, "alice")
    store = server.service.store
    made = await store.create_visitor("no-socket", "Nina", "", "https://old.example/")
    cid = (await store.current_conversation(made.id)).id
    async with httpx.AsyncClient() as http:
        answer = await context(http, server, token, cid)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["name"], body["page"], body["pages"], body["ip"]) == (
        "Nina", "https://old.example/", [], "")
    assert body["browser"] == {"name": "unknown", "version": ""}
    assert body["visit_started_at"] is None


async def test_a_visitors_user_agent_is_parsed_as_it_arrives(server: Server) -> None:
    """Once per visit, in a worker thread after the visit is written: the panel opened later
    finds it parsed (no render parses it)."""
    unique = f"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0 t{id(server)}"
    assert USER_AGENTS.cached(unique) is None
    async with browser(server, unique) as vis:
        await vis.send(type="hello", page="https://shop.example/")
        await vis.recv_type("welcome")
        with trio.fail_after(10):
            while (summary := USER_AGENTS.cached(unique)) is None:
                await trio.sleep(0.05)
    assert (summary.browser.name, summary.os.name) == ("Firefox", "Linux")
