"""Blocking end to end: blocks made over REST (and straight in the store, as the CLI
does) refuse a visitor's hello with an ``error`` frame ``blocked`` and close 1008
``blocked``, close the visitor's open sockets at once, stop applying when they expire,
and match the address a trusted proxy forwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from customer_service.config import Config
from customer_service.core.blocks import Block
from customer_service.errors import StorageError
from customer_service.server.run import Server, open_server
from customer_service.storage.base import Store
from tests.integration.helpers import Client, http_url, make_agent, visitor, ws_url


@asynccontextmanager
async def serving(config: Config, **changes: Any) -> AsyncIterator[Server]:
    async with open_server(config.with_changes(**changes)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


@asynccontextmanager
async def socket(server: Server, forwarded_for: str | None = None
                 ) -> AsyncIterator[Client]:
    """A visitor socket, opened as through a proxy that forwards ``forwarded_for``."""
    headers = [(b"X-Forwarded-For", forwarded_for.encode())] if forwarded_for else None
    async with open_websocket_url(ws_url(server, "/ws/visitor"), extra_headers=headers) as ws:
        try:
            yield Client(ws)
        finally:
            stream = getattr(ws, "_stream", None)
            if stream is not None:
                await stream.aclose()


async def hello(server: Server, forwarded_for: str | None = None, **fields: Any
                ) -> tuple[dict[str, Any], int | None, str]:
    """Say hello; return the first frame, and the close code and reason when the server
    closed the socket after it (None when it stayed open)."""
    async with socket(server, forwarded_for) as client:
        await client.send(type="hello", **fields)
        first = await client.recv()
        if first["type"] == "welcome":
            return first, None, ""
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        return first, closed.value.reason.code, closed.value.reason.reason or ""


async def block(http: httpx.AsyncClient, server: Server, token: str, **body: Any
                ) -> httpx.Response:
    return await http.post(http_url(server, "/api/v1/blocks"), json=body,
                           headers={"authorization": f"Bearer {token}"})


async def closed_with(client: Client) -> tuple[dict[str, Any], int, str]:
    """The error frame an open socket gets, and the close that follows."""
    error = await client.recv_type("error", timeout=3)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await client.recv(timeout=3)
    return error, closed.value.reason.code, closed.value.reason.reason or ""


async def test_blocking_a_visitor_closes_its_socket_and_refuses_it_again(
        server: Server) -> None:
    store = server.service.store
    _, token = await make_agent(server, "ann")
    async with httpx.AsyncClient() as http:
        async with visitor(server, name="Troll") as (troll, welcome):
            answer = await block(http, server, token, conversation_id=welcome["conversation_id"],
                                 duration="7d", reason="insults")
            assert answer.status_code == 201, answer.text
            made = answer.json()["block"]
            assert (made["visitor_id"], made["network"], made["reason"], made["created_by"],
                    made["active"]) == (welcome["visitor_id"], None, "insults", "ann", True)
            error, code, reason = await closed_with(troll)
        assert error["error"] == "blocked" and "blocked until" in error["message"]
        assert "insults" not in error["message"]  # the reason stays with the agents
        assert (code, reason) == (1008, "blocked")
        before = await store.stats()
        first, code, reason = await hello(server, visitor_token=welcome["visitor_token"],
                                          name="Troll again")
        assert (first["type"], first["error"], code, reason) == ("error", "blocked", 1008,
                                                                  "blocked")
        after = await store.stats()
        assert after == before
        again = await store.get_visitor(welcome["visitor_id"])
        assert again is not None and again.name == "Troll"  # refused before any update
        # Another visitor from the same address is not blocked: the block follows the visitor.
        first, code, _ = await hello(server)
        assert first["type"] == "welcome" and code is None
        listed = await http.get(http_url(server, "/api/v1/blocks"),
                                headers={"authorization": f"Bearer {token}"})
        assert [b["id"] for b in listed.json()["blocks"]] == [made["id"]]
        removed = await http.delete(http_url(server, f"/api/v1/blocks/{made['id']}"),
                                    headers={"authorization": f"Bearer {token}"})
        assert removed.status_code == 200 and removed.json()["block"]["id"] == made["id"]
        first, code, _ = await hello(server, visitor_token=welcome["visitor_token"])
        assert first["type"] == "welcome" and first["visitor_id"] == welcome["visitor_id"]


async def test_a_cidr_block_refuses_every_visitor_from_it_before_anything_is_stored(
        server: Server) -> None:
    store = server.service.store
    _, token = await make_agent(server, "ann")
    async with httpx.AsyncClient() as http:
        async with visitor(server) as (open_one, _):
            answer = await block(http, server, token, ip="127.0.0.0/8")
            assert answer.status_code == 201, answer.text
            assert answer.json()["block"]["expires_at"] is None
            error, code, reason = await closed_with(open_one)
            assert (error["error"], code, reason) == ("blocked", 1008, "blocked")
        before = await store.stats()
        first, code, reason = await hello(server, name="New")
        assert (first["error"], code, reason) == ("blocked", 1008, "blocked")
        assert "until" not in first["message"]
        assert (await store.stats()).visitors == before.visitors
        # An IPv6 network does not hold 127.0.0.1.
        await http.delete(http_url(server, f"/api/v1/blocks/{answer.json()['block']['id']}"),
                          headers={"authorization": f"Bearer {token}"})
        assert (await block(http, server, token, ip="2001:db8::/32")).status_code == 201
        first, code, _ = await hello(server)
        assert first["type"] == "welcome" and code is None


async def test_an_expired_block_stops_applying_without_removal(server: Server) -> None:
    _, token = await make_agent(server, "ann")
    async with httpx.AsyncClient() as http:
        answer = await block(http, server, token, ip="127.0.0.1", duration="2s")
        assert answer.status_code == 201, answer.text
        assert answer.json()["block"]["network"] == "127.0.0.1/32"
        first, code, _ = await hello(server)
        assert (first["error"], code) == ("blocked", 1008)
        await trio.sleep(2.2)
        first, code, _ = await hello(server)
        assert first["type"] == "welcome" and code is None
        listed = await http.get(http_url(server, "/api/v1/blocks"),
                                headers={"authorization": f"Bearer {token}"})
        assert listed.json()["blocks"] == []
        every = await http.get(http_url(server, "/api/v1/blocks?all=1"),
                               headers={"authorization": f"Bearer {token}"})
        assert [b["active"] for b in every.json()["blocks"]] == [False]


async def test_behind_a_trusted_proxy_the_forwarded_address_is_matched(
        config: Config) -> None:
    async with serving(config, server__trusted_proxies=["127.0.0.1"]) as server, \
            httpx.AsyncClient() as http:
        _, token = await make_agent(server, "ann")
        assert (await block(http, server, token, ip="203.0.113.0/24")).status_code == 201
        first, code, _ = await hello(server, forwarded_for="203.0.113.9")
        assert (first["error"], code) == ("blocked", 1008)
        first, code, _ = await hello(server, forwarded_for="198.51.100.1, 203.0.113.9")
        assert (first["error"], code) == ("blocked", 1008)  # the proxy's entry, not the client's
        first, code, _ = await hello(server, forwarded_for="203.0.113.9, 198.51.100.1")
        assert first["type"] == "welcome"
        # block_address takes the forwarded address of the visitor's socket.
        async with socket(server, forwarded_for="192.0.2.5") as client:
            await client.send(type="hello")
            welcome = await client.recv_type("welcome")
            answer = await block(http, server, token, visitor_id=welcome["visitor_id"],
                                 block_address=True)
            assert answer.json()["block"]["network"] == "192.0.2.5/32"
            assert (await closed_with(client))[1:] == (1008, "blocked")
    async with serving(config) as server, httpx.AsyncClient() as http:
        _, token = await make_agent(server, "bob")
        assert (await block(http, server, token, ip="203.0.113.0/24")).status_code == 201
        # Without a trusted proxy the header is the client's own word: ignored.
        first, code, _ = await hello(server, forwarded_for="203.0.113.9")
        assert first["type"] == "welcome"


async def test_block_address_blocks_where_the_visitor_is_connected_from(
        server: Server) -> None:
    _, token = await make_agent(server, "ann")
    async with httpx.AsyncClient() as http:
        async with visitor(server) as (_, gone):
            pass
        answer = await block(http, server, token, conversation_id=gone["conversation_id"],
                             block_address=True)
        assert answer.status_code == 409 and "not connected" in answer.json()["message"]
        async with visitor(server) as (client, welcome):
            answer = await block(http, server, token, visitor_id=welcome["visitor_id"],
                                 block_address=True, duration="1h")
            assert answer.status_code == 201, answer.text
            made = answer.json()["block"]
            assert (made["visitor_id"], made["network"]) == (welcome["visitor_id"],
                                                             "127.0.0.1/32")
            assert (await closed_with(client))[1:] == (1008, "blocked")
        forgone = await http.get(
            http_url(server, f"/api/v1/blocks?conversation_id={gone['conversation_id']}"),
            headers={"authorization": f"Bearer {token}"})
        assert forgone.json()["blocks"] == []  # not connected: its address is unknown
        mine = await http.get(
            http_url(server, f"/api/v1/blocks?conversation_id={welcome['conversation_id']}"),
            headers={"authorization": f"Bearer {token}"})
        assert [b["id"] for b in mine.json()["blocks"]] == [made["id"]]
        first, _, _ = await hello(server)
        assert first["error"] == "blocked"


async def test_a_block_written_by_another_process_closes_sockets_at_the_reload(
        server: Server) -> None:
    """``blocks add`` writes to the database; without a bus the server's reload finds it."""
    async with visitor(server) as (client, welcome):
        await server.service.store.add_block(
            visitor_id=welcome["visitor_id"], network=None, reason="", created_by="cli",
            expires_at=datetime.now(UTC) + timedelta(minutes=1))
        await client.nothing_more(0.2)  # nothing happens before the reload
        server.service.blocks.refresh_soon()
        error, code, reason = await closed_with(client)
        assert (error["error"], code, reason) == ("blocked", 1008, "blocked")


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"ip": "10.1.2.3/16"}, 400, "did you mean 10.1.0.0/16"),
    ({"ip": "not-an-ip"}, 400, "invalid IP address or CIDR network 'not-an-ip'"),
    ({"ip": "10.0.0.0/8", "duration": "7 days"}, 400, "invalid duration '7 days'"),
    ({"ip": "10.0.0.0/8", "duration": "0s"}, 400, "longer than 0"),
    ({"visitor_id": 999}, 404, "no visitor 999"),
    ({"conversation_id": 999}, 404, "no conversation 999"),
    ({"visitor_id": 0}, 400, "visitor_id must be an integer between 1"),
    ({}, 400, "a block needs a visitor"),
    ({"ip": "10.0.0.0/8", "block_address": True, "visitor_id": 1}, 400, "not both"),
    ({"ip": "10.0.0.0/8", "reason": "x" * 501}, 400, "at most 500"),
    ({"ip": "10.0.0.0/8", "colour": "red"}, 400, "colour"),
])
async def test_bad_blocks_are_refused_clearly(server: Server, body: dict[str, Any],
                                              status: int, says: str) -> None:
    _, token = await make_agent(server, "ann")
    async with httpx.AsyncClient() as http:
        answer = await block(http, server, token, **body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["message"]
    assert await server.service.store.list_blocks(None) == []


async def test_blocks_need_a_token_and_known_ids(server: Server) -> None:
    _, token = await make_agent(server, "ann")
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(http_url(server, "/api/v1/blocks"))).status_code == 401
        no_token = await http.post(http_url(server, "/api/v1/blocks"), json={"ip": "10.0.0.1"})
        assert no_token.status_code == 401
        unknown = await http.delete(http_url(server, "/api/v1/blocks/42"), headers=auth)
        assert unknown.status_code == 404 and unknown.json()["message"] == "no block 42"
        bad = await http.delete(http_url(server, "/api/v1/blocks/abc"), headers=auth)
        assert bad.status_code == 400 and "block id" in bad.json()["message"]
        wrong = await http.put(http_url(server, "/api/v1/blocks"), headers=auth)
        assert wrong.status_code == 405
        not_json = await http.post(http_url(server, "/api/v1/blocks"), headers=auth,
                                   content=b"{nope")
        assert not_json.status_code == 400 and "must be JSON" in not_json.json()["message"]


class SlowBlockReads:
    """``list_blocks`` answers what it read, after a pause (``slow``), or fails (``fail``):
    a reload that read before a change made meanwhile, or a database that is down."""

    slow = False
    fail = False

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def list_blocks(self, now: datetime | None) -> list[Block]:
        if SlowBlockReads.fail:
            raise StorageError("the database is down")
        found = await self._inner.list_blocks(now)
        if SlowBlockReads.slow:
            await trio.sleep(0.5)
        return found


async def test_changes_made_while_a_reload_reads_are_kept_and_a_failed_reload_keeps_all(
        config: Config) -> None:
    SlowBlockReads.slow = SlowBlockReads.fail = False
    async with open_server(config, wrap_store=SlowBlockReads) as server, \
            trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        await nursery.start(server.serve)
        _, token = await make_agent(server, "ann")
        guard = server.service.blocks
        old = (await block(http, server, token, ip="2001:db8::/32")).json()["block"]
        SlowBlockReads.slow = True
        guard.refresh_soon()
        await trio.sleep(0.2)  # the reload has read: the old block, not the new one
        new = (await block(http, server, token, ip="127.0.0.1")).json()["block"]
        removed = await http.delete(http_url(server, f"/api/v1/blocks/{old['id']}"),
                                    headers={"authorization": f"Bearer {token}"})
        assert removed.status_code == 200
        await trio.sleep(0.6)  # the reload is done
        assert [b.id for b in guard.blocks.blocks()] == [new["id"]]
        assert (await hello(server))[0]["error"] == "blocked"
        SlowBlockReads.slow, SlowBlockReads.fail = False, True
        guard.refresh_soon()
        await trio.sleep(0.2)
        assert [b.id for b in guard.blocks.blocks()] == [new["id"]]
        assert (await hello(server))[0]["error"] == "blocked"
        SlowBlockReads.fail = False
        server.shutdown()
