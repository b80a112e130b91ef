"""A locked or flapping database: every frame and request still answered within its deadline.

The database is blocked the way an operator (or a long migration, or a backup) blocks it:
MariaDB ``LOCK TABLES ... WRITE`` held by another connection, or another SQLite connection
holding the write lock. Whatever waits on it must give up at ``message_timeout``, free its
pooled connection, let other frames on the same socket through, and ``/healthz`` must
say the database is degraded while writes fail.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest
import trio
from trio_websocket import ConnectionClosed as WsClosed

from customer_service.cli.agents import release_conversations
from customer_service.config import Config
from customer_service.server.run import Server, open_server
from tests.cluster.harness import (
    MYSQL,
    fresh_database,
    mysql_available,
    start_server,
    write_config,
)
from tests.integration.helpers import (
    agent_socket,
    http_url,
    make_agent,
    next_id,
    open_ws,
    refused_upgrade,
    visitor,
    ws_url,
)

TIMEOUT = 1.0
"""``message_timeout`` in these tests."""
SLACK = 1.0
"""What an answer may take beyond the deadline on a busy machine."""


def _connect(database: str | None = None) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(connect_timeout=3, autocommit=True, database=database,
                           **MYSQL)  # type: ignore[arg-type]


@pytest.fixture
def transport() -> str:
    return "native"


@pytest.fixture
def database() -> Iterator[str]:
    if not mysql_available():
        pytest.skip("no MariaDB/MySQL server at 127.0.0.1:3306")
    with fresh_database() as name:
        yield name


def _config(tmp_path: Path, **storage: Any) -> Config:
    return Config().with_changes(
        server__host="127.0.0.1", server__port=0, server__shutdown_timeout=3.0,
        server__message_timeout=TIMEOUT, storage__sqlite_path=str(tmp_path / "cs.db"),
        server__rate_limit_burst=1000, server__rate_limit_per_second=1000.0,
        auto_replies__welcome={}, auto_replies__away={}, auto_replies__closed={},
        **{f"storage__{key}": value for key, value in storage.items()})


async def _serve(config: Config) -> AsyncIterator[Server]:
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


@pytest.fixture
async def mysql_server(tmp_path: Path, database: str) -> AsyncIterator[Server]:
    async for srv in _serve(_config(tmp_path, backend="mysql", mysql_database=database,
                                    mysql_pool_size=4)):
        yield srv


@pytest.fixture
async def sqlite_server(tmp_path: Path) -> AsyncIterator[Server]:
    async for srv in _serve(_config(tmp_path)):
        yield srv


class Lock:
    """``LOCK TABLES messages WRITE, conversations WRITE`` from a connection of the test's."""

    def __init__(self, database: str) -> None:
        self.conn = _connect(database)

    def __enter__(self) -> Lock:
        with self.conn.cursor() as cursor:
            cursor.execute("LOCK TABLES messages WRITE, conversations WRITE")
        return self

    def __exit__(self, *_exc: object) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        self.conn.close()


def _waiting_on_lock(database: str) -> int:
    conn = _connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s"
                           " AND STATE LIKE %s", (database, "%lock%"))
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


async def _timed(coro: Any) -> tuple[float, Any]:
    started = trio.current_time()
    result = await coro
    return trio.current_time() - started, result


async def _waiting_conversation(server: Server) -> int:
    async with visitor(server) as (client, welcome):
        await client.send(type="text", id=next_id("v"), content="hello")
        await client.recv_type("ack")
        return int(welcome["conversation_id"])


async def test_every_frame_answered_within_the_deadline_while_mariadb_is_locked(
        mysql_server: Server, database: str) -> None:
    server = mysql_server
    cid = await _waiting_conversation(server)
    other = await _waiting_conversation(server)
    agent, token = await make_agent(server, "ann")
    await make_agent(server, "bob")
    async with agent_socket(server, token) as (client, _welcome), httpx.AsyncClient() as http:
        with Lock(database):
            frames = [
                {"type": "history", "conversation_id": cid},
                {"type": "accept", "conversation_id": cid},
                {"type": "read", "conversation_id": other, "seq": 1},
                {"type": "transfer", "conversation_id": other, "to_agent": "bob"},
                {"type": "close", "conversation_id": other},
            ]
            ids = []
            for frame in frames:
                ids.append(next_id("f"))
                await client.send(id=ids[-1], **frame)
            sent = trio.current_time()
            await client.send(type="ping", id="p1")
            pong = await client.recv_type("pong", id="p1")
            assert pong["id"] == "p1"
            assert trio.current_time() - sent < TIMEOUT / 2, "the ping waited behind a stuck frame"
            for frame_id, frame in zip(ids, frames, strict=True):
                answer = await client.recv_type("error", timeout=TIMEOUT * len(frames) + SLACK,
                                                id=frame_id)
                assert answer["error"] == "timeout", (frame["type"], answer)
            # Frames waited in line, each under a deadline counted from its arrival.
            assert trio.current_time() - sent < TIMEOUT + SLACK

            elapsed, response = await _timed(http.get(
                http_url(server, "/api/v1/conversations"),
                headers={"authorization": f"Bearer {token}"}))
            assert response.status_code == 504, response.text
            assert response.json()["error"] == "timeout"
            assert elapsed < TIMEOUT + SLACK

            health = (await http.get(http_url(server, "/healthz"))).json()
            assert health["db"] == "degraded" and health["status"] == "degraded", health

            # A new visitor is answered within the deadline too: a close it can act on.
            elapsed, closed = await _timed(_hello_during_outage(server))
            assert closed == 1011 and elapsed < TIMEOUT + SLACK

            # Nothing of the server's still waits on the lock: the timed-out statements were
            # ended, so their pooled connections are free again.
            await trio.sleep(0.3)
            assert await trio.to_thread.run_sync(_waiting_on_lock, database) == 0

        # The lock is gone: everything works at once, and health recovers with the next write.
        await client.send(type="accept", id="a2", conversation_id=cid)
        assert (await client.recv_type("ack", id="a2", timeout=TIMEOUT + SLACK))["id"] == "a2"
        health = (await http.get(http_url(server, "/healthz"))).json()
        assert health["db"] == "ok" and health["status"] == "ok", health
    assert agent.id


async def _hello_during_outage(server: Server) -> int | None:
    async with open_ws(ws_url(server, "/ws/visitor")) as ws:
        await ws.send_message('{"type": "hello"}')
        try:
            with trio.fail_after(TIMEOUT + SLACK):
                await ws.get_message()
        except WsClosed as exc:
            return exc.reason.code
    return None


async def test_frames_answered_within_the_deadline_while_sqlite_is_locked(
        sqlite_server: Server, tmp_path: Path) -> None:
    server = sqlite_server
    cid = await _waiting_conversation(server)
    _agent, token = await make_agent(server, "ann")
    async with agent_socket(server, token) as (client, _welcome):
        holder = sqlite3.connect(tmp_path / "cs.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock (a backup, the CLI)
        try:
            sent = trio.current_time()
            await client.send(type="accept", id="a1", conversation_id=cid)
            await client.send(type="ping", id="p1")
            await client.recv_type("pong", id="p1")
            assert trio.current_time() - sent < TIMEOUT / 2
            answer = await client.recv_type("error", id="a1", timeout=TIMEOUT + SLACK)
            assert answer["error"] == "timeout"
            assert trio.current_time() - sent < TIMEOUT + SLACK
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await client.send(type="accept", id="a2", conversation_id=cid)
        assert (await client.recv_type("ack", id="a2", timeout=5))["id"] == "a2"


def _kill_connections(database: str) -> int:
    conn = _connect()
    killed = 0
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s",
                           (database,))
            for (thread_id,) in cursor.fetchall():
                try:
                    cursor.execute(f"KILL {int(thread_id)}")
                    killed += 1
                except pymysql.MySQLError:
                    pass  # it ended meanwhile
    finally:
        conn.close()
    return killed


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def test_replacing_database_connections_does_not_grow_memory(
        tmp_path: Path, database: str) -> None:
    """The real server process (its garbage collector tuned as in production), messages
    flowing, and every connection it holds to MariaDB killed again and again: its memory
    stays flat. Before, each round of kills kept a megabyte or more alive (reference cycles
    left by the lost connections, which the tuned collector reaches rarely, in the worker
    threads' malloc arenas): 50 MB grew to 250 MB in 30 s."""
    config = write_config(tmp_path / "customer-service.toml", {
        "server": {"host": "127.0.0.1", "port": 0, "rate_limit_per_second": 1000.0,
                   "rate_limit_burst": 2000, "message_timeout": TIMEOUT},
        "storage": {"backend": "mysql", "mysql_database": database, "mysql_pool_size": 4},
        "log": {"level": "warning"},
    })
    server = await trio.to_thread.run_sync(
        lambda: start_server(tmp_path, config, "server", bus="off"))
    sent = 0
    try:
        async def chat(stop: trio.Event) -> None:
            """A visitor chatting; like the widget, it reconnects when the server closes
            its socket with 1011 (its hello, or a text, met every connection killed)."""
            nonlocal sent
            while not stop.is_set():
                try:
                    async with open_ws(f"{server.ws}/ws/visitor") as ws:
                        await ws.send_message('{"type": "hello"}')
                        await ws.get_message()
                        while not stop.is_set():
                            sent += 1
                            await ws.send_message(json.dumps(
                                {"type": "text", "id": f"m{sent}", "content": "still there?"}))
                            with trio.move_on_after(TIMEOUT + SLACK):
                                while '"ack"' not in (answer := await ws.get_message()) and \
                                        '"error"' not in answer:
                                    pass
                            await trio.sleep(0.01)
                except WsClosed as closed:
                    assert closed.reason.code == 1011, closed.reason  # unavailable; reconnect
                    await trio.sleep(0.1)

        async def kill_rounds(rounds: int) -> int:
            killed = 0
            for _ in range(rounds):
                killed += await trio.to_thread.run_sync(_kill_connections, database)
                await trio.sleep(0.12)
            return killed

        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(chat, stop)
            await kill_rounds(15)
            before = _rss_mb(server.process.pid)
            killed = await kill_rounds(120)
            await trio.sleep(1.5)
            after = _rss_mb(server.process.pid)
            stop.set()
    finally:
        await trio.to_thread.run_sync(server.stop)
    assert killed >= 200, killed
    assert sent > 500, sent
    assert after - before < 25, (f"RSS {before:.0f} MB -> {after:.0f} MB over {killed} "
                                 "replaced connections")


class SqliteWriter:
    """Another process's write lock on the server's SQLite file (a backup, the CLI)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.released = False

    def __enter__(self) -> SqliteWriter:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.conn.execute("ROLLBACK")
            self.conn.close()


async def test_frames_read_before_the_visitor_left_are_all_stored(
        sqlite_server: Server, tmp_path: Path) -> None:
    """Texts waiting in line behind a held lock when the visitor closes its socket still
    take effect: they were read, so they count as sent."""
    server = sqlite_server
    async with visitor(server) as (client, welcome):
        with SqliteWriter(tmp_path / "cs.db") as writer:
            for n in range(5):
                await client.send(type="text", id=f"left{n}", content=f"message {n}")
            await trio.sleep(0.2)  # read by the server, all waiting for the lock
            await client.ws.aclose()
            writer.release()
    cid = int(welcome["conversation_id"])
    with trio.fail_after(TIMEOUT + SLACK):
        while len(stored := await server.service.store.messages_after(cid, 0, 50)) < 5:
            await trio.sleep(0.05)
    assert [m.content for m in stored] == [f"message {n}" for n in range(5)]


async def test_an_agents_queued_frames_take_effect_in_order_after_it_left(
        sqlite_server: Server, tmp_path: Path) -> None:
    server = sqlite_server
    cid = await _waiting_conversation(server)
    _agent, token = await make_agent(server, "ann")
    async with agent_socket(server, token) as (client, _welcome):
        with SqliteWriter(tmp_path / "cs.db") as writer:
            await client.send(type="accept", id="a", conversation_id=cid)
            await client.send(type="text", id="t", conversation_id=cid, content="bye now")
            await client.send(type="close", id="c", conversation_id=cid)
            await trio.sleep(0.2)
            await client.ws.aclose()
            writer.release()
    store = server.service.store
    with trio.fail_after(TIMEOUT + SLACK):
        while (conversation := await store.get_conversation(cid)) is None or \
                conversation.status.value != "closed":
            await trio.sleep(0.05)
    contents = [m.content for m in await store.messages_after(cid, 0, 50)]
    assert "bye now" in contents


async def test_a_state_change_that_timed_out_is_not_stored_later_on_sqlite(
        sqlite_server: Server, tmp_path: Path) -> None:
    """The lock goes after the deadline but before SQLite's own busy timeout: the accept
    that answered ``timeout`` must not take effect then, half-done."""
    server = sqlite_server
    cid = await _waiting_conversation(server)
    _agent, token = await make_agent(server, "ann")
    async with agent_socket(server, token) as (client, _welcome):
        with SqliteWriter(tmp_path / "cs.db"):
            await client.send(type="accept", id="a1", conversation_id=cid)
            answer = await client.recv_type("error", id="a1", timeout=TIMEOUT + SLACK)
            assert answer["error"] == "timeout"
            await trio.sleep(0.3)
        await trio.sleep(0.5)  # time for a late commit, were one still coming
        stored = await server.service.store.get_conversation(cid)
        assert stored is not None and stored.assigned_to is None, stored
        await client.send(type="accept", id="a2", conversation_id=cid)
        await client.recv_type("ack", id="a2")
        notes = [m.content for m in await server.service.store.messages_after(cid, 0, 50)
                 if m.sender_role.value == "system"]
        assert len(notes) == 1, notes  # one "joined" note, from the accept that worked


async def test_a_state_change_that_timed_out_is_not_stored_later_on_mariadb(
        mysql_server: Server, database: str) -> None:
    server = mysql_server
    cid = await _waiting_conversation(server)
    _agent, token = await make_agent(server, "ann")
    async with agent_socket(server, token) as (client, _welcome):
        with Lock(database):
            await client.send(type="accept", id="a1", conversation_id=cid)
            answer = await client.recv_type("error", id="a1", timeout=TIMEOUT + SLACK)
            assert answer["error"] == "timeout"
        await trio.sleep(0.5)
        stored = await server.service.store.get_conversation(cid)
        assert stored is not None and stored.assigned_to is None, stored
        await client.send(type="accept", id="a2", conversation_id=cid)
        await client.recv_type("ack", id="a2", timeout=TIMEOUT + SLACK)


async def test_one_socket_flooding_history_leaves_the_pool_to_others(
        mysql_server: Server, database: str) -> None:
    server = mysql_server
    cid = await _waiting_conversation(server)
    _ann, ann_token = await make_agent(server, "ann")
    _bob, bob_token = await make_agent(server, "bob")
    lock = _connect(database)
    async with agent_socket(server, ann_token) as (client, _welcome), \
            httpx.AsyncClient() as http:
        with lock.cursor() as cursor:
            cursor.execute("LOCK TABLES messages WRITE")
        try:
            for n in range(12):
                await client.send(type="history", id=f"h{n}", conversation_id=cid)
            await trio.sleep(0.1)
            elapsed, response = await _timed(http.get(
                http_url(server, "/api/v1/agents"),
                headers={"authorization": f"Bearer {bob_token}"}))
            assert response.status_code == 200, response.text
            assert elapsed < TIMEOUT / 2
        finally:
            with lock.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")
            lock.close()


async def test_an_agent_upgrade_is_answered_within_the_deadline_while_tokens_are_locked(
        mysql_server: Server, database: str) -> None:
    server = mysql_server
    _agent, token = await make_agent(server, "ann")
    lock = _connect(database)
    with lock.cursor() as cursor:
        cursor.execute("LOCK TABLES agent_tokens WRITE")
    try:
        elapsed, response = await _timed(refused_upgrade(server, f"/ws/agent?token={token}"))
    finally:
        with lock.cursor() as cursor:
            cursor.execute("UNLOCK TABLES")
        lock.close()
    assert response.status_code == 504, response.text
    assert elapsed < TIMEOUT + SLACK
    async with agent_socket(server, token) as (_client, welcome):
        assert welcome["type"] == "welcome"


async def test_healthz_says_degraded_not_dead_while_sqlite_is_locked(
        sqlite_server: Server, tmp_path: Path) -> None:
    """A text waits in the group commit for another process's lock (holding the store's
    one connection) and an accept timed out: the database answers reads all the same,
    so /healthz says degraded (200), not timeout (503)."""
    server = sqlite_server
    cid = await _waiting_conversation(server)
    _agent, token = await make_agent(server, "ann")
    async with agent_socket(server, token) as (agent, _welcome), \
            visitor(server) as (chat, _hello), httpx.AsyncClient() as http:
        with SqliteWriter(tmp_path / "cs.db"):
            await chat.send(type="text", id="stuck", content="waiting for the lock")
            await agent.send(type="accept", id="a1", conversation_id=cid)
            await agent.recv_type("error", id="a1", timeout=TIMEOUT + SLACK)
            elapsed, response = await _timed(http.get(http_url(server, "/healthz")))
            assert elapsed < TIMEOUT
            assert response.status_code == 200, response.text
            assert response.json()["db"] == "degraded"


async def test_frames_read_before_the_connection_dropped_are_all_stored(
        sqlite_server: Server, tmp_path: Path) -> None:
    """The TCP connection drops (no close handshake) with texts in line: storing the first
    one echoes it to the dead socket, and the rest must still take effect."""
    server = sqlite_server
    async with visitor(server) as (client, welcome):
        with SqliteWriter(tmp_path / "cs.db") as writer:
            for n in range(8):
                await client.send(type="text", id=f"drop{n}", content=f"message {n}")
            await trio.sleep(0.2)
            await client.ws._stream.aclose()  # gone, without a goodbye
            writer.release()
    cid = int(welcome["conversation_id"])
    with trio.fail_after(TIMEOUT + SLACK):
        while len(stored := await server.service.store.messages_after(cid, 0, 50)) < 8:
            await trio.sleep(0.05)
    assert [m.content for m in stored] == [f"message {n}" for n in range(8)]


async def test_a_full_line_refuses_at_once_and_reading_never_waits(
        mysql_server: Server, database: str) -> None:
    """More bytes than may wait on one socket while the database is locked: the extra
    frames are refused at once, a ping is still answered at once, and every frame is
    answered within the deadline from when it was sent."""
    server = mysql_server
    cid = await _waiting_conversation(server)
    _agent, token = await make_agent(server, "ann")
    padding = "x" * 8000  # unknown fields are ignored, but their bytes wait in line
    async with agent_socket(server, token) as (client, _welcome):
        with Lock(database):
            sent = trio.current_time()
            for n in range(48):
                await client.send(type="read", id=f"r{n}", conversation_id=cid, seq=1,
                                  padding=padding)
            await client.send(type="ping", id="p")
            await client.recv_type("pong", id="p")
            assert trio.current_time() - sent < TIMEOUT / 2
            answers = [await client.recv_type("error", id=f"r{n}", timeout=TIMEOUT + SLACK)
                       for n in range(48)]
            assert trio.current_time() - sent < TIMEOUT + SLACK
    kinds = [answer["error"] for answer in answers]
    assert set(kinds) == {"timeout", "rate_limited"}, kinds
    assert kinds.count("timeout") <= 256 * 1024 // 8000 + 1  # the 256 KiB line, and one more


async def test_healthz_says_degraded_on_mariadb_while_a_text_waits_and_the_pool_is_busy(
        mysql_server: Server, database: str) -> None:
    """A visitor's text times out in the group commit (which a lock holds until it goes)
    and an agent keeps every pooled connection busy with frames waiting for their
    deadlines: /healthz still answers at once, 200 with db degraded."""
    server = mysql_server
    cid = await _waiting_conversation(server)
    _agent, token = await make_agent(server, "ann")
    async with agent_socket(server, token) as (agent, _welcome), \
            visitor(server) as (chat, _hello), httpx.AsyncClient() as http:
        with Lock(database):
            await chat.send(type="text", id="stuck", content="waiting for the lock")
            for n in range(10):
                await agent.send(type="history", id=f"h{n}", conversation_id=cid)
                await agent.send(type="read", id=f"r{n}", conversation_id=cid, seq=1)
            await chat.recv_type("error", id="stuck", timeout=TIMEOUT + SLACK)
            elapsed, response = await _timed(http.get(http_url(server, "/healthz")))
            assert response.status_code == 200, response.text
            assert response.json()["db"] == "degraded"
            assert elapsed < TIMEOUT


async def test_a_text_timing_out_in_the_group_commit_makes_healthz_degraded(
        mysql_server: Server, database: str) -> None:
    """Only a visitor's text waits (the group commit is not given up: it is stored when the
    lock goes), yet its sender heard timeout: the database is degraded."""
    server = mysql_server
    async with visitor(server) as (chat, _hello), httpx.AsyncClient() as http:
        with Lock(database):
            await chat.send(type="text", id="stuck", content="waiting for the lock")
            await chat.recv_type("error", id="stuck", timeout=TIMEOUT + SLACK)
            response = await http.get(http_url(server, "/healthz"))
            assert response.json()["db"] == "degraded", response.text


async def test_an_accept_refused_on_a_stale_cache_reads_the_conversation_again(
        sqlite_server: Server) -> None:
    """The CLI gave a disabled agent's conversation back to the queue behind the server's
    cache: another agent's accept is refused on the cached state, so the server reads the
    conversation again and the accept goes through."""
    server = sqlite_server
    cid = await _waiting_conversation(server)
    bob, bob_token = await make_agent(server, "bob")
    _alice, alice_token = await make_agent(server, "alice")
    store = server.service.store
    async with agent_socket(server, bob_token) as (bob_socket, _):
        await bob_socket.send(type="accept", id="b", conversation_id=cid)
        await bob_socket.recv_type("ack", id="b")
    await store.set_agent_disabled("bob", True)
    assert await release_conversations(store, bob) == 1  # what `agents disable` does
    async with agent_socket(server, alice_token) as (alice_socket, _):
        await alice_socket.send(type="accept", id="a", conversation_id=cid)
        assert (await alice_socket.recv_type("ack", id="a"))["id"] == "a"
    stored = await store.get_conversation(cid)
    assert stored is not None and stored.assigned_to == _alice.id


async def test_two_state_changes_given_up_one_after_the_other_both_stay_undone(
        sqlite_server: Server, tmp_path: Path) -> None:
    """The first accept waits for another process's lock when its deadline passes; a
    second one, waiting behind it, is given up a moment later. Neither may take effect
    when the lock goes (a give-up is the unit's own, not the store's last one)."""
    server = sqlite_server
    first_cid = await _waiting_conversation(server)
    second_cid = await _waiting_conversation(server)
    _ann, ann_token = await make_agent(server, "ann")
    _bob, bob_token = await make_agent(server, "bob")
    async with agent_socket(server, ann_token) as (ann, _), \
            agent_socket(server, bob_token) as (bob, _):
        with SqliteWriter(tmp_path / "cs.db"):
            await ann.send(type="accept", id="a", conversation_id=first_cid)
            await trio.sleep(0.2)
            await bob.send(type="accept", id="b", conversation_id=second_cid)
            assert (await ann.recv_type("error", id="a", timeout=TIMEOUT + SLACK)
                    )["error"] == "timeout"
            assert (await bob.recv_type("error", id="b", timeout=TIMEOUT + SLACK)
                    )["error"] == "timeout"
        await trio.sleep(0.5)  # time for a late commit, were one still coming
    for cid in (first_cid, second_cid):
        stored = await server.service.store.get_conversation(cid)
        assert stored is not None and stored.assigned_to is None, stored
