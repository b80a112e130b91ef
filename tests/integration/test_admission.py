"""Admission control on a real server: past its limit of visitor texts in flight, a text
is answered ``busy`` at once, with a ``retry_after``, nothing of it stored; resent with
the same id it is stored once. Overload is made by holding SQLite's write lock, so the
texts taken on wait for the database while more arrive."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from customer_service.config import Config
from customer_service.core.admission import INITIAL_LIMIT
from customer_service.server.run import Server, open_server
from tests.integration.helpers import Client, agent_socket, http_url, make_agent, visitor

TIMEOUT = 4.0
"""``message_timeout`` here: long enough for every text to be sent before any times out."""
SOCKETS = 6
PER_SOCKET = 50  # 300 texts > INITIAL_LIMIT


def _config(tmp_path: Path, admission_latency: float) -> Config:
    return Config().with_changes(
        server__host="127.0.0.1", server__port=0, server__shutdown_timeout=3.0,
        server__message_timeout=TIMEOUT, storage__sqlite_path=str(tmp_path / "cs.db"),
        server__rate_limit_burst=1000, server__rate_limit_per_second=1000.0,
        server__admission_latency=admission_latency,
        auto_replies__welcome={}, auto_replies__away={}, auto_replies__closed={})


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    latency = getattr(request, "param", 0.5)
    async with open_server(_config(tmp_path, latency)) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


class WriteLock:
    """Another process's write lock on the server's SQLite file (a backup, the CLI)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self.conn.close()


async def _answers(client: Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ack or error each id got (whatever else arrives is skipped)."""
    got: dict[str, dict[str, Any]] = {}
    with trio.fail_after(TIMEOUT + 5):
        while len(got) < len(ids):
            frame = await client.recv(timeout=TIMEOUT + 5)
            if frame["type"] in ("ack", "error") and frame.get("id") in ids:
                got.setdefault(frame["id"], frame)
    return got


async def _until_acked(client: Client, ids: list[str]) -> None:
    """Read answers to ``ids`` (already sent), resending each ``busy`` one after its
    ``retry_after``, until every id is acked; any other answer fails."""
    waiting = set(ids)
    with trio.fail_after(60):
        while waiting:
            frame = await client.recv(timeout=TIMEOUT + 5)
            if frame.get("id") not in waiting or frame["type"] not in ("ack", "error"):
                continue
            if frame["type"] == "ack":
                waiting.discard(frame["id"])
                continue
            assert frame["error"] == "busy", frame
            await trio.sleep(frame["retry_after"])
            await client.send(type="text", id=frame["id"], content=f"text {frame['id'][1:]}")


async def _flood(server: Server, tmp_path: Path, stack: AsyncExitStack, in_flight: int
                 ) -> tuple[list[tuple[Client, dict[str, Any]]], dict[str, dict[str, Any]]]:
    """SOCKETS visitors send PER_SOCKET texts each while the write lock is held; once
    ``in_flight`` texts wait for it, the lock goes. Returns the sockets and each answer."""
    sockets = [await stack.enter_async_context(visitor(server)) for _ in range(SOCKETS)]
    lock = WriteLock(tmp_path / "cs.db")
    try:
        for s, (client, _welcome) in enumerate(sockets):
            for n in range(PER_SOCKET):
                await client.send(type="text", id=f"t{s}-{n}", content=f"text {s}-{n}")
        with trio.fail_after(TIMEOUT / 2):
            while server.service.admission.in_flight < in_flight:
                await trio.sleep(0.02)
        await trio.sleep(0.2)  # and no more than that
        assert server.service.admission.in_flight == in_flight
    finally:
        lock.release()
    answers: dict[str, dict[str, Any]] = {}

    async def collect(s: int, client: Client) -> None:
        answers.update(await _answers(client, [f"t{s}-{n}" for n in range(PER_SOCKET)]))

    async with trio.open_nursery() as nursery:
        for s, (client, _welcome) in enumerate(sockets):
            nursery.start_soon(collect, s, client)
    return sockets, answers


async def test_past_the_limit_texts_are_answered_busy_then_stored_once_when_resent(
        server: Server, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        sockets, answers = await _flood(server, tmp_path, stack, INITIAL_LIMIT)
        busy = {i: a for i, a in answers.items() if a["type"] == "error" and a["error"] == "busy"}
        acked = {i for i, a in answers.items() if a["type"] == "ack"}
        assert len(busy) == SOCKETS * PER_SOCKET - INITIAL_LIMIT
        assert len(acked) == INITIAL_LIMIT
        for answer in busy.values():
            assert 0.5 <= answer["retry_after"] <= 60
            assert "busy" in answer["message"]
        # Nothing of a refused text was stored.
        store = server.service.store
        stored: set[str] = set()
        for _client, welcome in sockets:
            cid = int(welcome["conversation_id"])
            stored |= {m.client_id or "" for m in await store.messages_after(cid, 0, 500)}
        assert stored == acked
        # Resent with the same ids (the acked ones too, as a client unsure of them would),
        # each again after its retry_after while the server still says busy (the late acks
        # above shrank its limit): every text is stored exactly once, in order.
        for s, (client, welcome) in enumerate(sockets):
            ids = [f"t{s}-{n}" for n in range(PER_SOCKET)]
            for frame_id in ids:
                await client.send(type="text", id=frame_id, content=f"text {frame_id[1:]}")
            await _until_acked(client, ids)
            cid = int(welcome["conversation_id"])
            messages = await store.messages_after(cid, 0, 500)
            assert sorted(m.client_id or "" for m in messages) == sorted(ids)
            assert [m.seq for m in messages] == list(range(1, PER_SOCKET + 1))
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(http_url(server, "/metrics"))).text
        busy_sent = re.search(r'cs_error_frames_total\{error="busy"\} (\S+)', metrics)
        assert busy_sent and float(busy_sent.group(1)) >= len(busy)  # and the resends
        assert "cs_admission_limit " in metrics and "cs_texts_in_flight 0.0" in metrics


@pytest.mark.parametrize("server", [0.0], indirect=True)
async def test_admission_off_takes_every_text(server: Server, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        _sockets, answers = await _flood(server, tmp_path, stack, SOCKETS * PER_SOCKET)
    assert {a["type"] for a in answers.values()} == {"ack"}


async def test_an_agents_frames_are_never_refused_busy(server: Server, tmp_path: Path) -> None:
    """Agents relieve the load: only visitors' texts pass admission control."""
    server.service.admission.limit = 0  # nothing more is taken on from visitors
    _agent, token = await make_agent(server, "ann")
    async with visitor(server) as (client, welcome), agent_socket(server, token) as (agent, _w):
        await client.send(type="text", id="v1", content="hello")
        refused = await client.recv_type("error", id="v1")
        assert refused["error"] == "busy"
        cid = int(welcome["conversation_id"])
        await agent.send(type="accept", id="a1", conversation_id=cid)
        await agent.recv_type("ack", id="a1")
        await agent.send(type="text", id="a2", conversation_id=cid, content="hi, I am here")
        await agent.recv_type("ack", id="a2")
        await client.recv_type("message", where=lambda f: f["content"] == "hi, I am here")


async def test_texts_behind_a_refused_one_wait_for_it_so_order_holds(
        server: Server, tmp_path: Path) -> None:
    """A socket's text refused busy holds the texts behind it, even when a place frees up
    before they arrive: stored in the order they were written."""
    admission = server.service.admission
    async with visitor(server) as (other, _w), visitor(server) as (client, welcome):
        lock = WriteLock(tmp_path / "cs.db")
        try:
            admission.limit = 1
            await other.send(type="text", id="o1", content="taking the only place")
            with trio.fail_after(TIMEOUT / 2):
                while admission.in_flight < 1:
                    await trio.sleep(0.01)
            await client.send(type="text", id="c1", content="first")
            assert (await client.recv_type("error", id="c1"))["error"] == "busy"
        finally:
            lock.release()
        await other.recv_type("ack", id="o1")
        assert admission.in_flight == 0  # a place is free now...
        await client.send(type="text", id="c2", content="second")
        refused = await client.recv_type("error", id="c2")  # ...but c1 comes first
        assert refused["error"] == "busy" and refused["retry_after"] >= 1
        await client.send(type="text", id="c1", content="first")
        await client.recv_type("ack", id="c1")
        await client.send(type="text", id="c2", content="second")
        await client.recv_type("ack", id="c2")
        cid = int(welcome["conversation_id"])
        stored = await server.service.store.messages_after(cid, 0, 10)
        assert [m.client_id for m in stored] == ["c1", "c2"]


async def test_a_refused_text_never_resent_holds_the_socket_only_briefly(
        server: Server) -> None:
    """A client that gives up a refused text can write again once twice its retry_after
    (and a second) has passed."""
    admission = server.service.admission
    async with visitor(server) as (client, welcome):
        admission.limit = 0  # nothing is taken on
        await client.send(type="text", id="given-up", content="never resent")
        refused = await client.recv_type("error", id="given-up")
        admission.limit = 256
        await client.send(type="text", id="next", content="next")
        assert (await client.recv_type("error", id="next"))["error"] == "busy"
        await trio.sleep(2 * refused["retry_after"] + 1.1)
        await client.send(type="text", id="next", content="next")
        await client.recv_type("ack", id="next")
        stored = await server.service.store.messages_after(int(welcome["conversation_id"]), 0, 10)
        assert [m.client_id for m in stored] == ["next"]
