"""What instances share over the bus: revocations, login throttling, the AI reply, lost
publishes; and the bus's bad-input cases."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from customer_service import auth
from customer_service.config import load_config
from customer_service.errors import ConfigError
from customer_service.storage import open_store
from tests.cluster.chat import AgentDriver, VisitorDriver, check_exactly_once, until_done
from tests.cluster.conftest import Cluster, agent_at, visitor_at
from tests.cluster.harness import ServerProcess, cli, environment, free_port, write_config
from tests.fakes.openai_server import Script, open_fake_openai


async def test_a_logout_on_one_instance_closes_the_tokens_socket_on_another(
        cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, token = await cluster.make_agent("alice")
    _, other = await cluster.make_agent("bob")
    async with agent_at(b, token) as (alice, _), agent_at(b, other) as (bob, _):
        started = trio.current_time()
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{a.url}/api/v1/logout",
                                     headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
            while True:
                await alice.recv(timeout=5)
        assert closed.value.reason.code == 1008
        assert trio.current_time() - started < 3  # seconds, not the 30 s token recheck
        await bob.send(type="ping", id="still")
        assert (await bob.recv_type("pong"))["id"] == "still"


async def test_disabling_an_agent_from_the_command_line_closes_its_sockets_everywhere(
        cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, token = await cluster.make_agent("alice")
    async with agent_at(a, token) as (at_a, _), agent_at(b, token) as (at_b, _):
        disabled = await trio.to_thread.run_sync(lambda: subprocess.run(
            [*cli(), f"--config={a.config}", "agents", "disable", "alice"], capture_output=True,
            text=True, env=environment(), timeout=30, check=False))
        assert disabled.returncode == 0, disabled.stderr
        assert "Their open sockets are being closed." in disabled.stdout
        for client in (at_a, at_b):
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
                while True:
                    await client.recv(timeout=5)
            assert closed.value.reason.code == 1008


async def test_revoke_token_and_passwd_from_the_command_line_close_sockets_everywhere(
        cluster: Cluster) -> None:
    """``agents revoke-token`` closes the sockets of that one token on every instance at
    once; ``agents passwd`` those of every token of the agent."""
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, first = await cluster.make_agent("alice")
    second = auth.new_token()
    async with open_store(cluster.config) as store:
        alice = await store.get_agent_by_username("alice")
        assert alice is not None
        await store.add_agent_token(alice.id, auth.token_hash(second), "phone", None)

    def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli(), f"--config={a.config}", *args], capture_output=True,
                              text=True, env=environment(), timeout=30, check=False,
                              input=stdin)

    async def closed(client: Any) -> None:
        with pytest.raises(ConnectionClosed) as ended, trio.fail_after(5):
            while True:
                await client.recv(timeout=5)
        assert ended.value.reason.code == 1008

    async with agent_at(a, first) as (first_a, _), agent_at(b, first) as (first_b, _), \
            agent_at(b, second) as (second_b, _):
        started = trio.current_time()
        revoked = await trio.to_thread.run_sync(
            lambda: run_cli("agents", "revoke-token", "alice", auth.token_hash(first)[:12]))
        assert revoked.returncode == 0, revoked.stderr
        assert "Sockets opened with it are being closed." in revoked.stdout
        await closed(first_a)
        await closed(first_b)
        assert trio.current_time() - started < 4  # at once, not at the 30 s recheck
        await second_b.send(type="ping", id="still")
        assert (await second_b.recv_type("pong"))["id"] == "still"

        changed = await trio.to_thread.run_sync(
            lambda: run_cli("agents", "passwd", "alice", "--password-stdin",
                            stdin="a new passphrase\n"))
        assert changed.returncode == 0, changed.stderr
        assert "Their open sockets are being closed." in changed.stdout
        await closed(second_b)


async def test_login_failures_are_counted_on_every_instance_together(
        cluster: Cluster) -> None:
    """Failures for a username add up across instances (in Redis); successes never count,
    and another user at the same address is not held back."""
    auth = {"login_failures_per_user": 3, "login_failures_per_address": 50,
            "login_failure_window": 600.0}
    a = await cluster.start("a", auth=auth)
    b = await cluster.start("b", auth=auth)
    await cluster.make_agent("alice")
    await cluster.make_agent("bob")

    async def login(server: ServerProcess, username: str, password: str) -> httpx.Response:
        return await http.post(f"{server.url}/api/v1/login",
                               json={"username": username, "password": password})

    async with httpx.AsyncClient() as http:
        # Twenty successful logins from one address, spread over both: none refused.
        ok = [await login((a, b)[n % 2], "bob", "correct horse") for n in range(20)]
        assert [r.status_code for r in ok] == [200] * 20
        failed = [await login((a, b)[n % 2], "alice", "wrong password") for n in range(3)]
        assert [r.status_code for r in failed] == [401, 401, 401]
        # 3 failures in all, not 3 per instance: both instances hold Alice back now.
        for server in (a, b):
            held = await login(server, "alice", "correct horse")
            assert held.status_code == 429 and held.headers["retry-after"] == "1"
            assert (await login(server, "bob", "correct horse")).status_code == 200
        await trio.sleep(1.1)
        assert (await login(b, "alice", "correct horse")).status_code == 200


async def test_lost_publishes_are_filled_from_the_database(cluster: Cluster) -> None:
    """Redis drops pub/sub clients now and then (CLIENT KILL TYPE pubsub, as its output
    buffer limit does to a slow subscriber): what they missed comes from the database."""
    a = await cluster.start("a")
    b = await cluster.start("b")
    visitors: list[VisitorDriver] = []
    agents: list[AgentDriver] = []
    for n in range(10):
        _, token = await cluster.make_agent(f"agent{n}")
        visitor = VisitorDriver(f"v{n}", lambda: f"{a.ws}/ws/visitor", 20, pace=0.01)
        visitors.append(visitor)
        agents.append(AgentDriver(b.ws, token, visitor))
    deadline = trio.current_time() + 60
    async with trio.open_nursery() as nursery:
        for driver in [*agents, *visitors]:
            nursery.start_soon(driver.run, deadline)
        kills = 0
        while not all(v.done for v in visitors) and kills < 20:
            await trio.sleep(0.15)
            await trio.to_thread.run_sync(_redis_command, cluster.redis.port,
                                          ["CLIENT", "KILL", "TYPE", "pubsub"])
            kills += 1
        await until_done(visitors, agents, 60)
        nursery.cancel_scope.cancel()
    assert kills >= 3
    acked = {k: v for d in [*visitors, *agents] for k, v in d.acked.items()}
    conversation_of = {k: v.conversation_id for v, g in zip(visitors, agents, strict=True)
                       for k in (v.acked | g.acked)}
    last = check_exactly_once(cluster.database, acked, conversation_of)
    for visitor, agent in zip(visitors, agents, strict=True):
        assert visitor.done
        assert visitor.seen.problems(last[visitor.conversation_id]) == []
        assert agent.seen.problems(last[visitor.conversation_id]) == []
    logs = a.log_text() + b.log_text()
    assert "missed batches" in logs


def _redis_command(port: int, words: list[str]) -> bytes:
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(request.encode())
        return sock.recv(1024)


async def test_one_ai_reply_streams_to_both_instances_and_an_accept_elsewhere_stops_it(
        cluster: Cluster) -> None:
    async with open_fake_openai(script=Script(tokens=[f"t{i} " for i in range(400)],
                                              chunk_delay=0.02)) as fake:
        ai = {"enabled": True, "base_url": fake.base_url, "api_key": "test", "mode": "always",
              "prewarm_connections": 0}
        a = await cluster.start("a", ai=ai)
        b = await cluster.start("b", ai=ai)
        _, token = await cluster.make_agent("alice")
        async with agent_at(b, token) as (alice, _), visitor_at(a) as (vera, welcome):
            cid = welcome["conversation_id"]
            await vera.send(type="text", id="q", content="Where is my order?")
            await vera.recv_type("ack", id="q")
            first = await vera.recv_type("ai_delta", timeout=10)
            stream = first["stream_id"]
            seen_by_alice = await alice.recv_type("ai_delta", timeout=10, stream_id=stream)
            assert seen_by_alice["conversation_id"] == cid

            await alice.send(type="accept", id="take", conversation_id=cid)
            await alice.recv_type("ack", id="take")
            stored = await vera.recv_type("message", timeout=10,
                                          where=lambda f: f["sender"]["role"] == "ai")
            assert stored["stream_id"] == stream
            joined = await vera.recv_type("message", timeout=10,
                                          where=lambda f: f["sender"]["role"] == "system")
            assert joined["seq"] == stored["seq"] + 1  # the agent joins after the partial reply
            assert len(stored["content"].split()) < 400  # cut short by the accept
            await trio.sleep(0.5)
    rows = [row for row in _messages(cluster.database) if row[0] == cid]
    assert [role for _, _, role in rows] == ["visitor", "ai", "system"]
    assert len(await fake.wait_for_requests(1)) == 1  # one reply, started by one instance


async def test_a_message_committed_on_another_instance_is_in_the_next_ai_context(
        cluster: Cluster) -> None:
    """The session-state cache on ``a`` hears of the agent's message committed on ``b``
    over the bus: the second reply's context has it, and no second store read happened."""
    async with open_fake_openai(script=Script(tokens=["Let", " me", " check."])) as fake:
        ai = {"enabled": True, "base_url": fake.base_url, "api_key": "test", "mode": "always",
              "prewarm_connections": 0}
        a = await cluster.start("a", ai=ai)
        b = await cluster.start("b", ai=ai)
        _, token = await cluster.make_agent("alice")
        async with agent_at(b, token) as (alice, _), visitor_at(a) as (vera, welcome):
            cid = welcome["conversation_id"]
            await vera.send(type="text", id="q1", content="Where is my order?")
            await vera.recv_type("message", timeout=10,
                                 where=lambda f: f["sender"]["role"] == "ai")
            await alice.send(type="accept", id="take", conversation_id=cid)
            await alice.recv_type("ack", id="take")
            await alice.send(type="text", id="a1", conversation_id=cid,
                             content="It left the warehouse today.")
            await alice.recv_type("ack", id="a1")
            await vera.recv_type("message", timeout=10,
                                 where=lambda f: f["sender"]["role"] == "agent")
            await vera.send(type="text", id="q2", content="Thanks! When will it arrive?")
            await vera.recv_type("message", timeout=10,
                                 where=lambda f: f["sender"]["role"] == "ai"
                                 and f["seq"] > 4)
        _, second = await fake.wait_for_requests(2)
        assert second.body["messages"][1:] == [
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "Let me check."},
            {"role": "assistant", "content": "It left the warehouse today."},
            {"role": "user", "content": "Thanks! When will it arrive?"}]
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{a.url}/metrics")).text
        assert "cs_ai_context_cache_misses_total 1.0" in metrics
        assert "cs_ai_context_cache_hits_total 1.0" in metrics


def _messages(database: str) -> list[tuple[int, int, str]]:
    from tests.cluster.chat import stored_messages  # noqa: PLC0415

    return [(cid, seq, role) for cid, seq, role, _ in stored_messages(database)]


# ---- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "problem"), [
    ("http://127.0.0.1:6379", "must start with redis://"),
    ("redis://", "needs a host"),
    ("redis://127.0.0.1:99999/0", "not a valid URL"),
    ("redis://127.0.0.1:6379/cache", "Redis databases are numbers"),
])
def test_a_malformed_redis_url_is_refused_naming_the_key_and_the_file(
        tmp_path: Path, url: str, problem: str) -> None:
    path = write_config(tmp_path / "cs.toml", {"bus": {"redis_url": url}})
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert problem in error.value.message
    assert "[bus] redis_url" in error.value.message and str(path) in error.value.message
    checked = subprocess.run([*cli(), "config", "check", str(path)], capture_output=True,
                             text=True, env=environment(), timeout=30, check=False)
    assert checked.returncode != 0 and "Traceback" not in checked.stderr
    assert "redis_url" in checked.stderr + checked.stdout


def test_workers_without_a_bus_are_refused_at_start_naming_the_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path / "cs.toml", {"server": {"workers": 2, "port": free_port()}})
    started = subprocess.run([*cli(), f"--config={path}"], capture_output=True, text=True,
                             env=environment(), timeout=30, check=False)
    assert started.returncode == 1
    assert "Traceback" not in started.stderr
    assert "[server] workers = 2 needs [bus] redis_url" in started.stderr
    sqlite = write_config(tmp_path / "sqlite.toml", {
        "server": {"workers": "auto"}, "bus": {"redis_url": "redis://127.0.0.1:6379/0"}})
    started = subprocess.run([*cli(), f"--config={sqlite}"], capture_output=True, text=True,
                             env=environment(), timeout=30, check=False)
    assert started.returncode == 1
    assert '[server] workers = "auto" needs [storage] backend = "mysql"' in started.stderr


async def test_an_instance_starts_while_redis_is_down_and_joins_when_it_comes(
        cluster: Cluster) -> None:
    cluster.redis.kill9()
    a = await cluster.start("a", healthy_bus="degraded")
    health = a.health()
    assert health is not None and health["status"] == "ok" and health["bus"] == "degraded"
    assert "is not usable" in a.log_text()
    # Local chat works without the bus.
    async with visitor_at(a) as (vera, _):
        await vera.send(type="text", id="solo", content="anyone?")
        assert (await vera.recv_type("ack", id="solo"))["seq"] == 1
    await trio.to_thread.run_sync(cluster.redis.restart)
    with trio.fail_after(15):
        while (a.health() or {}).get("bus") != "ok":
            await trio.sleep(0.1)


async def test_two_worker_processes_share_the_port_and_a_pair_split_over_them_chats(
        cluster: Cluster) -> None:
    server = await cluster.start("w", server={"workers": 2})
    _, token = await cluster.make_agent("alice")
    workers = _children(server.pid)
    assert len(workers) == 2
    # Open sockets until both workers hold some: the kernel spreads them.
    holders: dict[int, list[int]] = {pid: [] for pid in workers}
    with trio.move_on_after(10):
        while not all(holders.values()):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                owner = await trio.to_thread.run_sync(_owner_of, sock, workers)
                holders[owner].append(sock.getsockname()[1])
    assert all(holders.values()), holders
    # A visitor and an agent on different workers chat.
    for _ in range(20):
        async with visitor_at(server) as (vera, welcome), agent_at(server, token) as (alice, _):
            owners = {await trio.to_thread.run_sync(_owner_of_ws, c, workers)
                      for c in (vera, alice)}
            if len(owners) < 2:
                continue
            cid = welcome["conversation_id"]
            await vera.send(type="text", id="hi", content="hello across workers")
            assert (await alice.recv_type("message", conversation_id=cid))["content"] == \
                "hello across workers"
            await alice.send(type="accept", id="acc", conversation_id=cid)
            await alice.recv_type("ack", id="acc")
            await alice.send(type="text", id="re", conversation_id=cid, content="welcome")
            assert (await vera.recv_type("message", where=lambda f: f["sender"]["role"] ==
                                         "agent"))["content"] == "welcome"
            return
    raise AssertionError("never got a visitor and an agent on different workers")


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _server_inode(client_port: int) -> int | None:
    """The inode of the server side of a loopback connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == client_port and fields[3] == "01":  # ESTABLISHED
            return int(fields[9])
    return None


def _owner_of(sock: socket.socket, workers: list[int]) -> int:
    """Which worker process holds the server side of ``sock`` (read from /proc)."""
    import time  # noqa: PLC0415

    port = sock.getsockname()[1]
    for _ in range(100):
        inode = _server_inode(port)
        if inode is not None:
            for pid in workers:
                if inode in _socket_inodes(pid):
                    return pid
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the connection from port {port}")


def _owner_of_ws(client: object, workers: list[int]) -> int:
    stream = client.ws._stream  # type: ignore[attr-defined]
    return _owner_of(stream.socket, workers)

