"""Longer and stranger outages: Redis away for longer than an instance's timeout, a
connection to Redis that dies without a word, two deployments on one Redis channel."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import trio

from customer_service.core.bus_events import Batch, MessageEvent, encode_batch
from customer_service.server.limits import user_key
from customer_service.storage import open_store
from tests.cluster.conftest import Cluster, agent_at, visitor_at
from tests.cluster.harness import (
    cli,
    cluster_config,
    environment,
    fresh_database,
    start_server,
    wait_until,
)
from tests.cluster.shared_redis import redis_command


async def _bus_state(server: object, wanted: str, timeout: float) -> None:
    def reached() -> bool:
        return (server.health() or {}).get("bus") == wanted  # type: ignore[attr-defined]

    await trio.to_thread.run_sync(wait_until, reached, timeout, f"/healthz bus: {wanted}")


async def test_messages_written_during_a_long_redis_outage_arrive_when_it_returns(
        cluster: Cluster) -> None:
    """Redis is away for longer than [bus] instance_timeout (3 s here): each instance
    counts the other gone meanwhile, and still catches up when Redis returns."""
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, token = await cluster.make_agent("alice")
    async with agent_at(b, token, queue=True) as (alice, _), visitor_at(a) as (vera, welcome):
        cid = welcome["conversation_id"]
        await alice.send(type="accept", id="acc", conversation_id=cid)
        await alice.recv_type("ack", id="acc")
        await vera.send(type="text", id="before", content="before the outage")
        await alice.recv_type("message", conversation_id=cid, content="before the outage")

        await trio.to_thread.run_sync(cluster.redis.kill9)
        await _bus_state(a, "degraded", 10)
        for n in range(3):
            await vera.send(type="text", id=f"during{n}", content=f"during {n}")
            await vera.recv_type("ack", id=f"during{n}")
        await trio.sleep(5)  # longer than instance_timeout
        await trio.to_thread.run_sync(cluster.redis.restart)
        for n in range(3):
            got = await alice.recv_type("message", conversation_id=cid, timeout=15,
                                        content=f"during {n}")
            assert got["seq"] == 3 + n
    seqs = [f["seq"] for f in alice.seen if f["type"] == "message"]
    assert seqs == sorted(set(seqs)) == list(range(1, 6))


async def test_a_conversation_begun_during_an_outage_reaches_the_queue_from_seq_1(
        cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, token = await cluster.make_agent("alice")
    async with agent_at(b, token) as (alice, _):
        await trio.to_thread.run_sync(cluster.redis.kill9)
        await _bus_state(a, "degraded", 10)
        async with visitor_at(a) as (vera, welcome):
            cid = welcome["conversation_id"]
            await vera.send(type="text", id="first", content="my first message")
            await vera.recv_type("ack", id="first")
            await trio.sleep(1.5)
            await trio.to_thread.run_sync(cluster.redis.restart)
            await _bus_state(a, "ok", 15)
            await vera.send(type="text", id="second", content="my second message")
            await vera.recv_type("ack", id="second")
            first = await alice.recv_type("message", conversation_id=cid, timeout=15)
            second = await alice.recv_type("message", conversation_id=cid, timeout=15)
            assert (first["seq"], first["content"]) == (1, "my first message")
            assert (second["seq"], second["content"]) == (2, "my second message")


class FreezingProxy:
    """A loopback TCP proxy to Redis that can stop carrying the bytes of the connections
    it holds without closing them (a NAT timeout, a cable pulled): new connections pass."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen: list[trio.Event] = []

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        frozen = trio.Event()
        self.frozen.append(frozen)
        upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, frozen)
            nursery.start_soon(self._pump, upstream, client, frozen)
            await frozen.wait()
            await trio.sleep_forever()  # hold the connection open, carry nothing

    @staticmethod
    async def _pump(source: trio.SocketStream, sink: trio.SocketStream,
                    frozen: trio.Event) -> None:
        while not frozen.is_set():
            data = await source.receive_some(65536)
            if not data or frozen.is_set():
                return
            await sink.send_all(data)

    def freeze(self) -> None:
        for event in self.frozen:
            event.set()


async def test_a_redis_connection_that_dies_without_a_word_is_replaced(
        cluster: Cluster) -> None:
    async with trio.open_nursery() as nursery:
        proxy = FreezingProxy(cluster.redis.port)
        await nursery.start(proxy.serve)
        a = await cluster.start("a", bus={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
        b = await cluster.start("b")
        _, token = await cluster.make_agent("alice")
        proxy.freeze()
        # Publishing reconnects at once (a new connection passes); the frozen subscription
        # is noticed by this instance's own heartbeats not coming back, and replaced.
        await trio.to_thread.run_sync(
            wait_until, lambda: "subscribing again" in a.log_text(), 30,
            "the frozen subscription noticed")
        await _bus_state(a, "ok", 30)
        async with agent_at(b, token) as (alice, _), visitor_at(a) as (vera, welcome):
            await vera.send(type="text", id="hi", content="still connected?")
            got = await alice.recv_type("message", conversation_id=welcome["conversation_id"],
                                        timeout=10)
            assert got["content"] == "still connected?"
        nursery.cancel_scope.cancel()


async def test_two_deployments_sharing_a_redis_namespace_ignore_each_other(
        cluster: Cluster, tmp_path: Path) -> None:
    a = await cluster.start("a")
    _, token = await cluster.make_agent("alice")
    with fresh_database() as other_database:
        config = cluster_config(tmp_path / "other", other_database, cluster.redis.url)
        other = await trio.to_thread.run_sync(
            lambda: start_server(tmp_path / "other", config, "other"))
        try:
            async with agent_at(a, token) as (alice, _), visitor_at(other) as (vera, welcome):
                await vera.send(type="text", id="x", content="for the other deployment only")
                await vera.recv_type("ack", id="x")
                await alice.nothing_more(1.0) if False else None
                with trio.move_on_after(1.5):
                    while True:
                        frame = await alice.recv(timeout=2)
                        assert frame.get("content") != "for the other deployment only"
                        assert frame.get("conversation", {}).get("conversation_id") != \
                            welcome["conversation_id"] or frame["type"] == "welcome"
            assert "uses another database" in a.log_text()
        finally:
            await trio.to_thread.run_sync(other.stop)


async def test_workers_on_a_port_in_use_stop_with_a_clear_message(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = cluster.config_file("busy", server={"workers": 2, "port": port})
        started = await trio.to_thread.run_sync(lambda: subprocess.run(
            [*cli(), f"--config={config}"], capture_output=True, text=True, env=environment(),
            timeout=60, check=False))
    assert started.returncode == 1
    output = started.stdout + started.stderr
    assert "Traceback" not in output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert "Error: the worker processes could not run" in output



async def test_hostile_data_in_redis_costs_nothing_but_warnings(cluster: Cluster) -> None:
    """Whoever can write to Redis can disturb the bus (keep Redis private), but garbage,
    absurd numbers and forged batches must not crash an instance, mute a conversation or
    lock logins out."""
    a = await cluster.start("a")
    b = await cluster.start("b")
    await cluster.make_agent("alice")
    _, token = await cluster.make_agent("bob")
    async with open_store(cluster.config) as store:
        deployment = await store.deployment_token()
    port = cluster.redis.port
    async with agent_at(b, token) as (bob, _), visitor_at(a) as (vera, welcome):
        cid = welcome["conversation_id"]
        await bob.send(type="accept", id="acc", conversation_id=cid)
        await bob.recv_type("ack", id="acc")
        await vera.recv_type("message", seq=1)  # the "joined" note
        hostile = [
            b"not msgpack at all",
            encode_batch(Batch(deployment, "forger", 1, [MessageEvent(
                cid, 10**12, None, True, '{"type":"message","seq":1000000000000}')])),
            encode_batch(Batch(deployment, "ghosts", 1, [
                MessageEvent(987654, n, None, True,
                             f'{{"type":"message","conversation_id":987654,"seq":{n}}}')
                for n in (1, 3)])),
        ]
        redis_command(port, ["HSET", "customer-service:presence:forger", "agent:" + "9" * 5000,
                             "1", "visitor:x", "1"])
        redis_command(port, ["SET", "customer-service:presence:ghosts", "not a hash"])
        for payload in hostile:
            redis_command(port, [b"PUBLISH", b"customer-service:bus", payload])
        redis_command(port, ["SET", "customer-service:login-failures:address:127.0.0.1",
                             "1e309"])
        redis_command(port, ["HSET", f"customer-service:login-failures:{user_key('alice')}",
                             "n", "1e309", "t", "nan"])
        await trio.sleep(1.5)
        for server in (a, b):
            assert server.alive() and (server.health() or {}).get("status") == "ok"
        # The conversation is not muted: the next real messages arrive, in order.
        for n in range(3):
            await vera.send(type="text", id=f"after{n}", content=f"after {n}")
            got = await bob.recv_type("message", conversation_id=cid, content=f"after {n}",
                                      timeout=10)
            assert got["seq"] == 2 + n
    # Logins are not locked out by poisoned failure counts, and failures count afresh.
    async with httpx.AsyncClient() as http:
        answers = [await http.post(f"{a.url}/api/v1/login",
                                   json={"username": "alice", "password": "wrong password"})
                   for _ in range(2)]
        good = await http.post(f"{b.url}/api/v1/login",
                               json={"username": "alice", "password": "correct horse"})
    assert [r.status_code for r in answers] == [401, 401]
    assert good.status_code == 200
    logs = a.log_text() + b.log_text()
    assert "Traceback" not in logs
    assert "ignoring what lies beyond" in logs or "does not have" in logs
