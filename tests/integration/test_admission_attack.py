"""Attacks on admission control: every path by which a text taken on leaves the server
(answered, refused by the socket's line, its socket closed or kicked, the server
draining) must give its place back, on both transports, or the server would end up
answering everyone ``busy``. Overload is made by holding SQLite's write lock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from customer_service.server.run import Server, open_server
from tests.integration.helpers import http_url, visitor
from tests.integration.test_admission import WriteLock, _config


@pytest.fixture(params=["native", "hypercorn"])
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    config = _config(tmp_path, 0.5).with_changes(server__transport=request.param)
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def _in_flight_metric(server: Server) -> str:
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(http_url(server, "/metrics"))).text
    return next(line for line in metrics.splitlines() if line.startswith("cs_texts_in_flight "))


async def _settles_to_zero(server: Server) -> None:
    with trio.fail_after(20):
        while server.service.admission.in_flight:
            await trio.sleep(0.05)
    assert await _in_flight_metric(server) == "cs_texts_in_flight 0.0"


async def test_every_way_a_text_leaves_gives_its_place_back(server: Server, tmp_path: Path
                                                              ) -> None:
    async with AsyncExitStack() as stack:
        closed, _ = await stack.enter_async_context(visitor(server))
        kicked, kicked_welcome = await stack.enter_async_context(visitor(server))
        flooding, _ = await stack.enter_async_context(visitor(server))
        lock = WriteLock(tmp_path / "cs.db")
        try:
            for n in range(20):
                await closed.send(type="text", id=f"c{n}", content=f"closed {n}")
                await kicked.send(type="text", id=f"k{n}", content=f"kicked {n}")
            # 80 texts of 3,900 characters: past the line's 256 KiB some are refused
            # rate_limited at once, after they were taken on.
            for n in range(80):
                await flooding.send(type="text", id=f"f{n}", content="x" * 3_900)
            refused = await flooding.recv_type("error", error="rate_limited")
            assert refused["id"].startswith("f")
            with trio.fail_after(5):
                while server.service.admission.in_flight < 100:
                    await trio.sleep(0.02)
            await closed.ws.aclose()  # the peer leaves with texts in line
            cid = int(kicked_welcome["conversation_id"])
            for peer in tuple(server.service.hub.visitors.get(cid, ())):
                peer.slow()  # closed for not reading: what is in line is dropped
            with trio.fail_after(5):
                while cid in server.service.hub.visitors:
                    await trio.sleep(0.02)
        finally:
            lock.release()
        await _settles_to_zero(server)


async def test_draining_with_texts_in_line_gives_every_place_back(server: Server,
                                                                  tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        clients = [(await stack.enter_async_context(visitor(server)))[0] for _ in range(3)]
        lock = WriteLock(tmp_path / "cs.db")
        try:
            for s, client in enumerate(clients):
                for n in range(30):
                    await client.send(type="text", id=f"t{s}-{n}", content=f"text {n}")
            with trio.fail_after(5):
                while server.service.admission.in_flight < 90:
                    await trio.sleep(0.02)
            server.service.hub.close_all(1001, "server going away; reconnect")
            with trio.fail_after(5):
                while server.service.hub.sessions:
                    await trio.sleep(0.02)
        finally:
            lock.release()
        await _settles_to_zero(server)


async def test_texts_refused_at_once_for_their_own_fault_do_not_raise_the_limit(
        server: Server, tmp_path: Path) -> None:
    """Under overload (texts wait for the database, the limit in use) a client sending
    texts the server refuses at once (too long) must not make the server take on more:
    such an answer says nothing of how fast texts are acked. Each used to count as a
    timely ack and grow the limit by one, so a flood of them undid admission control."""
    admission = server.service.admission
    admission.limit = 20
    async with visitor(server) as (waiting, _), visitor(server) as (bad, _):
        lock = WriteLock(tmp_path / "cs.db")
        try:
            for n in range(19):
                await waiting.send(type="text", id=f"w{n}", content=f"waiting {n}")
            with trio.fail_after(5):
                while admission.in_flight < 19:
                    await trio.sleep(0.02)
            for n in range(30):
                await bad.send(type="text", id=f"b{n}", content="x" * 5_000)
            answers = [await bad.recv_type("error", id=f"b{n}") for n in range(30)]
            assert {a["error"] for a in answers} <= {"too_large", "bad_request", "busy"}
            assert admission.limit == 20
        finally:
            lock.release()
        await _settles_to_zero(server)


async def test_a_client_hammering_through_busy_is_still_rate_limited_then_closed(
        tmp_path: Path) -> None:
    """Ignoring ``retry_after`` buys nothing: each busy answer costs the socket a token of
    its rate limit, and past its strikes it is closed (1008) like any flooder."""
    config = _config(tmp_path, 0.5).with_changes(
        server__rate_limit_burst=10, server__rate_limit_per_second=5.0,
        server__rate_limit_strikes=5)
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        srv.service.admission.limit = 0  # every visitor text is answered busy
        async with visitor(srv) as (client, _):
            errors: list[str] = []
            with trio.fail_after(10):
                try:
                    for n in range(100):
                        await client.send(type="text", id=f"h{n}", content="again")
                    while True:
                        frame = await client.recv()
                        if frame["type"] == "error":
                            errors.append(frame["error"])
                except ConnectionClosed as exc:
                    assert exc.reason.code == 1008, exc.reason
            assert errors.count("busy") <= 10 + 5  # its burst, and what refilled meanwhile
            assert "rate_limited" in errors
        assert srv.service.admission.in_flight == 0
        srv.shutdown()
