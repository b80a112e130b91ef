"""Benchmark scenarios driven by the lean load generator (``bench/loadgen.py``).

    .venv/bin/python bench/scenarios.py relay-closed --pairs 100 --duration 5
    .venv/bin/python bench/scenarios.py relay-open --pairs 1000 --rate 3247 --duration 10
    .venv/bin/python bench/scenarios.py idle --connections 18000 --duration 30
    .venv/bin/python bench/scenarios.py soak --rate 2900 --duration 600
    .venv/bin/python bench/scenarios.py relay-closed --pairs 100 --instances 2 --duration 10
    .venv/bin/python bench/scenarios.py relay-closed --pairs 100 --workers 2 --duration 10

Each scenario starts the server as its own process (SQLite in a temporary folder,
127.0.0.1 only, rate limits raised), drives it from ``--procs`` load-generator
processes and prints what it measured, plus every load generator's CPU % while
measuring so it is visible whether the load generator was the bottleneck.
``--json PATH`` writes the same as JSON.

Several server processes (MariaDB on 127.0.0.1:3306, root without a password, in a
scratch database dropped at the end; a private ``redis-server`` on a free loopback port):

* ``--mysql``: MariaDB instead of SQLite (one instance, no bus: the same-instance
  baseline on the same database).
* ``--bus``: the Redis bus on, even for one instance (what publishing costs when
  nobody is on the other side).
* ``--instances N``: N separate server processes on one database and one Redis (implies
  ``--mysql`` and ``--bus``). With 2, every visitor is on instance 1 and its agent on
  instance 2; with more, pair i's visitor is on instance i % N and its agent on
  (i + 1) % N. Every pair crosses instances.
* ``--workers N``: ONE server command with ``[server] workers = N`` (implies ``--mysql``
  and ``--bus``); visitors and agents all connect to its one port and the kernel spreads
  the sockets, so some pairs cross workers (how many is read from /proc and printed).

The relay scenarios print each server process's CPU (% and seconds while measured; for
``--workers``, the supervisor and each worker), and the **server CPU per delivered
message**: the CPU seconds of all server processes in the window over the messages
delivered in it, in µs. MariaDB's and Redis's CPU are printed beside it (not included;
MariaDB is the machine's own server, shared with anything else using it). The server's
/metrics counters are read from every instance (every worker) and added up.

* ``relay-closed``: visitor/agent pairs (agents made straight in the database,
  ``queue=off``); each visitor sends a text, waits until its agent received it,
  sends the next. Messages/s delivered and visitor send → agent receive latency.
* ``relay-open``: the same pairs at a fixed offered rate, spread evenly; a pair
  sends on schedule whether or not earlier messages arrived (at most
  ``--max-outstanding`` undelivered per pair; a send over that is counted as not
  sent). Latency is measured from the SCHEDULED send time, so a stalled server
  or load generator shows up as latency (no coordinated omission).
* ``soak``: ``relay-open`` for longer (default 1,000 pairs at 2,900 msgs/s, about
  half the closed-loop peak, for 600 s), sampling the server's RSS every
  ``--rss-every`` seconds. RSS counts as flat when every sample after the first
  tenth of the run stays within 5% of the sample taken at that point.
* ``idle``: N visitor sockets (hello each) held open with a JSON ping every
  ~``--ping-interval`` s each; at the end every socket must answer one more ping.
  Connect time, server RSS before/after and KB per connection (one instance, or
  the sum over ``--workers``).

Every loop is bounded in count and time with a hard deadline; every child
process (servers, Redis, load generators) is terminated in ``finally``, and the
scratch database dropped. When a run fails, the tail of every server's log is
printed and the temporary folder (logs included) is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import trio  # noqa: E402

from bench.ai import log_digest  # noqa: E402
from bench.cluster import (  # noqa: E402
    PrivateRedis,
    children,
    connection_owners,
    drop_database,
    kill_if_child_of,
    mysql_server_pid,
    new_database_name,
    stop_process,
)
from bench.common import (  # noqa: E402
    HOST,
    code_version,
    free_port,
    machine_cpu_seconds,
    machine_speed,
    percentile,
    proc_times,
    raise_fd_limit,
    wait_healthy,
    write_server_config,
)
from bench.loadgen import Client, Closed, open_loop_schedule  # noqa: E402
from bench.relay import make_agents  # noqa: E402
from customer_service.transport.client import HandshakeFailed  # noqa: E402

# Pairs each load generator sets up at a time (--setup-at-once); a burst of hundreds
# overflows the listen backlog.
HANDSHAKES_AT_ONCE = 50
PER_PROC_SOCKETS = 6000  # idle: most sockets in one load-generator process
GRACE = 5.0  # relay-open: seconds after --duration that messages in flight may still arrive
SETUP_ERRORS = (OSError, HandshakeFailed, Closed, ValueError, KeyError, trio.TooSlowError)


# ---- server metrics ---------------------------------------------------------------------------

METRICS = ("cs_commit_batch_size_sum", "cs_commit_batch_size_count", "cs_message_latency_seconds_sum",
           "cs_message_latency_seconds_count", "cs_error_frames_total", "cs_slow_consumers_closed_total",
           "cs_db_errors_total", "cs_messages_stored_total", "cs_bus_events_published_total",
           "cs_bus_batches_published_total", "cs_bus_batches_received_total",
           "cs_bus_gap_fill_messages_total", "cs_bus_resyncs_total", "cs_bus_events_dropped_total",
           "cs_bus_publish_failures_total")
BUS_COUNTS = {"events_published": "cs_bus_events_published_total",
              "batches_published": "cs_bus_batches_published_total",
              "batches_received": "cs_bus_batches_received_total",
              "gap_fill_messages": "cs_bus_gap_fill_messages_total",
              "resyncs": "cs_bus_resyncs_total"}


def parse_metrics(text: str, prefixes: tuple[str, ...] = METRICS) -> dict[str, float]:
    """The server's /metrics counters whose names start with one of ``prefixes``
    (cumulative since it started)."""
    out = {}
    for line in text.splitlines():
        if line.startswith(prefixes):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def add_up(scrapes: list[dict[str, float]]) -> dict[str, float]:
    """Several processes' counters, summed name by name."""
    total: dict[str, float] = {}
    for scrape in scrapes:
        for name, value in scrape.items():
            total[name] = total.get(name, 0.0) + value
    return total


def metrics_window(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What happened between two scrapes: commits, mean batch, mean server-side latency, errors,
    and what crossed the bus."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    commits = d.get("cs_commit_batch_size_count", 0.0)
    handled = d.get("cs_message_latency_seconds_count", 0.0)
    return {
        "messages_stored": d.get("cs_messages_stored_total", 0.0),
        "commits": commits,
        "mean_batch": d.get("cs_commit_batch_size_sum", 0.0) / commits if commits else float("nan"),
        "mean_server_latency_ms": (d.get("cs_message_latency_seconds_sum", 0.0) / handled * 1000
                                   if handled else float("nan")),
        "bus": {key: d.get(name, 0.0) for key, name in BUS_COUNTS.items()},
        "errors": {k: v for k, v in d.items()
                   if v and k.startswith(("cs_error_frames", "cs_slow", "cs_db_errors",
                                          "cs_bus_events_dropped", "cs_bus_publish_failures"))},
    }


# ---- shared load-generator parts -------------------------------------------------------------

def error_counter(errors: dict[str, int], then: Callable[[], None] | None = None) -> Callable[[str], None]:
    """A visitor's ``on_text``: counts ``error`` frames by code (acks and echoes are ignored)."""
    def on_text(raw: str) -> None:
        if raw.startswith('{"type":"error"'):
            i = raw.find('"error":"', 14)
            code = raw[i + 9:raw.find('"', i + 9)] if i >= 0 else "?"
            errors[code] = errors.get(code, 0) + 1
            if then is not None:
                then()
    return on_text


PairSpec = tuple[str, int, int]
"""A pair to run: the agent's token, the visitor's server port, the agent's server port."""


async def open_pair(spec: PairSpec, gate: trio.Semaphore) -> tuple[Client, Client]:
    """A visitor and its agent (each on its own server port), the conversation accepted;
    closed again on failure."""
    token, visitor_port, agent_port = spec
    async with gate:
        vis = await Client.connect(HOST, visitor_port, "/ws/visitor")
        try:
            agent = await Client.connect(HOST, agent_port, f"/ws/agent?token={token}&queue=off")
        except BaseException:
            await vis.aclose()
            raise
    try:
        with trio.fail_after(30):
            await vis.send_text('{"type":"hello"}')
            welcome = json.loads(await vis.receive_text())
            cid = welcome["conversation_id"]
            await agent.receive_text()  # the agent's welcome
            await agent.send_text(json.dumps({"type": "accept", "id": "acc", "conversation_id": cid}))
            while True:
                raw = await agent.receive_text()
                if raw.startswith(('{"type":"ack"', '{"type":"error"')) and '"id":"acc"' in raw:
                    if raw.startswith('{"type":"error"'):
                        raise ValueError(f"accept refused: {raw[:200]}")
                    break
    except BaseException:
        await vis.aclose()
        await agent.aclose()
        raise
    return vis, agent


def client_ports(vis: Client, agent: Client) -> tuple[int, int]:
    """The local ports of a pair's two sockets: the driver maps them to the worker holding each."""
    return vis.stream.socket.getsockname()[1], agent.stream.socket.getsockname()[1]


async def run_readers(nursery: trio.Nursery, clients: list[Client], on_closed: Callable[[], None]) -> None:
    for client in clients:
        nursery.start_soon(guarded_reader, client, on_closed)


async def guarded_reader(client: Client, on_closed: Callable[[], None]) -> None:
    try:
        await client.run_reader()
    except Closed:
        on_closed()


def cpu_window(start_at: float, stop_at: float, out: list[float]) -> Callable[[], Any]:
    async def measure() -> None:
        for moment in (start_at, stop_at):
            await trio.sleep(max(0.0, moment - time.monotonic()))
            out.append(time.process_time())
    return measure


def lag_probe(stop_at: float, out: list[float]) -> Callable[[], Any]:
    """Event-loop lag of the load generator: how late a 10 ms sleep wakes up."""
    async def measure() -> None:
        while time.monotonic() < stop_at:
            t = time.monotonic()
            await trio.sleep(0.01)
            out.append(time.monotonic() - t - 0.01)
    return measure


def timeline(shared: Any, results: Any, limit: float = 120.0) -> tuple[float, float, float, float]:
    """Report ready, then wait for the driver to set the run's times (send_from, start_at,
    stop_at, hard_stop) in ``shared``: it sets them once every load generator has started,
    so a slow start on a busy machine cannot eat into the measured window."""
    results.put({"phase": "ready"})
    give_up = time.monotonic() + limit
    while shared[0] == 0.0:
        if time.monotonic() > give_up:
            raise SystemExit("the driver never set the run's times")
        time.sleep(0.01)
    send_from, start_at, stop_at, hard_stop = shared[:]
    return send_from, start_at, stop_at, hard_stop


def finish(results: Any, cpu: list[float], window: float, payload: dict[str, Any]) -> None:
    payload["cpu_percent"] = ((cpu[1] - cpu[0]) / window * 100) if len(cpu) == 2 else float("nan")
    payload["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results.put(payload)


# ---- relay-closed --------------------------------------------------------------------------

def closed_generator(specs: list[PairSpec], at_once: int, times: Any, results: Any) -> None:
    _, start_at, stop_at, hard_stop = timeline(times, results)
    began = time.monotonic()
    latencies: list[float] = []
    sockets: list[tuple[int, int]] = []
    ready: list[float] = []  # when each pair was set up
    counters = {"messages": 0, "failed_pairs": 0, "closed_sockets": 0}
    errors: dict[str, int] = {}
    cpu: list[float] = []
    lag: list[float] = []

    def closed() -> None:
        counters["closed_sockets"] += 1

    async def pair(spec: PairSpec, gate: trio.Semaphore) -> None:
        try:
            vis, agent = await open_pair(spec, gate)
        except SETUP_ERRORS:
            counters["failed_pairs"] += 1
            return
        ready.append(time.monotonic())
        sockets.append(client_ports(vis, agent))
        box = [0.0]
        arrived = trio.Event()
        broken = []

        def on_closed() -> None:
            closed()
            broken.append(True)
            arrived.set()

        def on_agent(raw: str) -> None:
            if raw.startswith('{"type":"message"') and '"role":"visitor"' in raw:
                box[0] = time.monotonic()
                arrived.set()

        def on_error() -> None:
            refused.append(True)
            arrived.set()

        refused: list[bool] = []
        vis.on_text = error_counter(errors, on_error)
        agent.on_text = on_agent
        try:
            async with trio.open_nursery() as nursery:
                await run_readers(nursery, [vis, agent], on_closed)
                n = 0
                while time.monotonic() < stop_at:
                    arrived = trio.Event()
                    n += 1
                    sent = time.monotonic()
                    await vis.send_text(f'{{"type":"text","id":"b{n}","content":"benchmark message {n}"}}')
                    await arrived.wait()
                    if broken:
                        raise Closed("a socket of the pair closed")
                    if refused:  # the text was answered with an error: not delivered, send the next
                        refused.clear()
                        continue
                    if sent >= start_at:
                        latencies.append(box[0] - sent)
                        counters["messages"] += 1
                nursery.cancel_scope.cancel()
        except* Closed:  # raised inside the nursery, so it arrives in an exception group
            counters["failed_pairs"] += 1
        finally:
            await vis.aclose()
            await agent.aclose()

    async def main() -> None:
        gate = trio.Semaphore(at_once)
        with trio.move_on_at(trio.current_time() + hard_stop - time.monotonic()):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cpu_window(start_at, stop_at, cpu))
                nursery.start_soon(lag_probe(stop_at, lag))
                for spec in specs:
                    nursery.start_soon(pair, spec, gate)

    trio.run(main)
    finish(results, cpu, stop_at - start_at, {
        "phase": "done", "latencies": latencies, "sockets": sockets, **counters, "pairs": len(specs),
        "set_up_s": max(ready, default=float("nan")) - began,
        "visitor_errors": errors,
        "lag_p99_ms": percentile(lag, 0.99) * 1000})


# ---- relay-open ----------------------------------------------------------------------------

class OpenPair:
    __slots__ = ("agent", "pending", "vis")

    def __init__(self, vis: Client, agent: Client) -> None:
        self.vis = vis
        self.agent = agent
        self.pending: dict[int, float] = {}  # k -> scheduled send time, while undelivered


CONTENT_MARK = '"content":"o'


def open_generator(specs: list[PairSpec], rate: float, phase: float, max_outstanding: int,
                   at_once: int, times: Any, results: Any) -> None:
    send_from, start_at, stop_at, hard_stop = timeline(times, results)
    began = time.monotonic()
    ready: list[float] = []  # when each pair was set up
    latencies: list[float] = []
    c = {"scheduled": 0, "sent": 0, "not_sent_outstanding": 0, "not_sent_failed": 0,
         "delivered": 0, "received_in_window": 0, "failed_pairs": 0, "closed_sockets": 0,
         "send_behind_max_ms": 0.0}
    cpu: list[float] = []
    lag: list[float] = []
    pairs: list[OpenPair | None] = [None] * len(specs)
    sockets: list[tuple[int, int]] = []
    errors: dict[str, int] = {}

    def closed() -> None:
        c["closed_sockets"] += 1

    def make_on_agent(state: OpenPair) -> Callable[[str], None]:
        pending = state.pending

        def on_agent(raw: str) -> None:
            if not raw.startswith('{"type":"message"') or '"role":"visitor"' not in raw:
                return
            now = time.monotonic()
            i = raw.find(CONTENT_MARK)
            if i < 0:
                return
            i += len(CONTENT_MARK)
            k = int(raw[i:raw.index('"', i)])
            when = pending.pop(k, None)
            if when is None:
                return
            if start_at <= now < stop_at:
                c["received_in_window"] += 1
            if start_at <= when < stop_at:
                latencies.append(now - when)
                c["delivered"] += 1
        return on_agent

    async def setup(n: int, spec: PairSpec, gate: trio.Semaphore) -> None:
        try:
            vis, agent = await open_pair(spec, gate)
        except SETUP_ERRORS:
            c["failed_pairs"] += 1
            return
        ready.append(time.monotonic())
        sockets.append(client_ports(vis, agent))
        state = OpenPair(vis, agent)
        vis.on_text = error_counter(errors)
        agent.on_text = make_on_agent(state)
        pairs[n] = state

    async def sender() -> None:
        for when, slot, k in open_loop_schedule(rate, len(specs), send_from, stop_at, phase):
            delay = when - time.monotonic()
            if delay > 0:
                await trio.sleep(delay)
            elif -delay * 1000 > c["send_behind_max_ms"] and when >= start_at:
                c["send_behind_max_ms"] = -delay * 1000
            measured = when >= start_at
            c["scheduled"] += measured
            state = pairs[slot]
            if state is None or state.vis.closed:
                c["not_sent_failed"] += measured
                continue
            if len(state.pending) >= max_outstanding:
                c["not_sent_outstanding"] += measured
                continue
            state.pending[k] = when
            try:
                await state.vis.send_text(f'{{"type":"text","id":"o{k}","content":"o{k}"}}')
            except Closed:
                state.pending.pop(k, None)
                c["not_sent_failed"] += measured
                continue
            c["sent"] += measured

    async def main() -> None:
        gate = trio.Semaphore(at_once)
        with trio.move_on_at(trio.current_time() + hard_stop - time.monotonic()):
            async with trio.open_nursery() as nursery:
                for n, spec in enumerate(specs):
                    nursery.start_soon(setup, n, spec, gate)
            async with trio.open_nursery() as nursery:
                await run_readers(nursery, [x for p in pairs if p for x in (p.vis, p.agent)], closed)
                nursery.start_soon(cpu_window(start_at, stop_at, cpu))
                nursery.start_soon(lag_probe(stop_at, lag))
                await sender()
                # Let what is in flight arrive, then stop.
                grace_end = stop_at + GRACE
                while time.monotonic() < grace_end and any(
                        p and any(start_at <= w < stop_at for w in p.pending.values()) for p in pairs):
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
            for p in pairs:
                if p:
                    await p.vis.aclose()
                    await p.agent.aclose()

    trio.run(main)
    undelivered = sum(1 for p in pairs if p for w in p.pending.values() if start_at <= w < stop_at)
    finish(results, cpu, stop_at - start_at, {
        "phase": "done", "latencies": latencies, **c, "undelivered": undelivered, "pairs": len(specs),
        "sockets": sockets, "set_up_s": max(ready, default=float("nan")) - began,
        "visitor_errors": errors,
        "lag_p99_ms": percentile(lag, 0.99) * 1000})


# ---- idle ----------------------------------------------------------------------------------

def idle_generator(port: int, count: int, ping_interval: float, hold_seconds: float,
                   hold_at: Any, hard_stop: float, results: Any) -> None:
    """``hold_at`` (a shared double) is set by the driver once every generator connected."""
    raise_fd_limit(count + 100)
    clients: list[Client | None] = [None] * count
    pongs = [0] * count
    connect_lat: list[float] = []
    c = {"connected": 0, "failed": 0, "closed_while_held": 0, "pings_sent": 0, "answered": 0}
    cpu: list[float] = []
    held: list[float] = []

    def closed() -> None:
        c["closed_while_held"] += 1

    def make_on_text(i: int) -> Callable[[str], None]:
        def on_text(raw: str) -> None:
            if raw.startswith('{"type":"pong"'):
                pongs[i] += 1
        return on_text

    async def connect(i: int, gate: trio.Semaphore) -> None:
        client = None
        try:
            async with gate:
                t = time.monotonic()  # the socket's own connect time, not its wait for the gate
                client = await Client.connect(HOST, port, "/ws/visitor")
                with trio.fail_after(30):
                    await client.send_text('{"type":"hello"}')
                    while not (await client.receive_text()).startswith('{"type":"welcome"'):
                        pass
        except SETUP_ERRORS:
            c["failed"] += 1
            if client is not None:
                await client.aclose()
            return
        connect_lat.append(time.monotonic() - t)
        client.on_text = make_on_text(i)
        clients[i] = client
        c["connected"] += 1

    async def send_ping(i: int) -> None:
        client = clients[i]
        if client is not None and not client.closed:
            try:
                await client.send_text('{"type":"ping","id":"p"}')
                c["pings_sent"] += 1
            except Closed:
                pass

    async def main() -> None:
        gate = trio.Semaphore(HANDSHAKES_AT_ONCE)
        with trio.move_on_at(trio.current_time() + hard_stop - time.monotonic()):
            t0 = time.monotonic()
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(connect, i, gate)
            connect_seconds = time.monotonic() - t0
            results.put({"phase": "connected", "connected": c["connected"], "failed": c["failed"],
                         "connect_seconds": connect_seconds,
                         "connect_p50_ms": percentile(connect_lat, 0.5) * 1000,
                         "connect_p99_ms": percentile(connect_lat, 0.99) * 1000,
                         "connect_max_ms": max(connect_lat, default=float("nan")) * 1000})
            live = [i for i in range(count) if clients[i] is not None]
            while hold_at.value == 0.0 and time.monotonic() < hard_stop:
                await trio.sleep(0.05)
            hold_from = hold_at.value
            check_at = hold_from + hold_seconds
            held.append(hold_from)
            await trio.sleep(max(0.0, hold_from - time.monotonic()))
            async with trio.open_nursery() as nursery:
                await run_readers(nursery, [x for x in clients if x is not None], closed)
                nursery.start_soon(cpu_window(hold_from, check_at, cpu))
                # Hold: each socket pings every ping_interval s, spread evenly.
                if live:
                    for when, slot, _k in open_loop_schedule(len(live) / ping_interval, len(live),
                                                             hold_from, check_at):
                        delay = when - time.monotonic()
                        if delay > 0:
                            await trio.sleep(delay)
                        await send_ping(live[slot])
                await trio.sleep(max(0.0, check_at - time.monotonic()))
                # Final check: one more ping each; all must answer.
                before = list(pongs)
                for i in live:
                    await send_ping(i)
                with trio.move_on_after(30):
                    while sum(pongs[i] > before[i] for i in live) < len(live):
                        await trio.sleep(0.1)
                c["answered"] = sum(pongs[i] > before[i] for i in live)
                nursery.cancel_scope.cancel()
            for client in clients:
                if client is not None:
                    await client.aclose()

    trio.run(main)
    finish(results, cpu, hold_seconds, {"phase": "done", **c})


# ---- driver --------------------------------------------------------------------------------

class Servers:
    """The server processes of a run and what they share, in a temporary folder: one process
    (SQLite or MariaDB, with the bus or without), ``--instances`` processes on one MariaDB
    database and one private Redis, or one ``[server] workers`` supervisor and its workers.

    ``close`` stops every server (SIGTERM, then SIGKILL by PID, workers included), stops
    Redis and drops the scratch database; after a failure it prints the tail of each log
    and keeps the folder."""

    def __init__(self, args: argparse.Namespace, agents: int, *, extra: str = "",
                 seed: Callable[[Path], list[str]] | None = None) -> None:
        """``extra``: more TOML sections for every server's config (``bench/ai.py``'s
        ``[ai]``); ``seed``: called with the first config before any server starts, its
        result kept as ``tokens`` (instead of making ``agents`` agents)."""
        self.folder = Path(tempfile.mkdtemp(prefix="cs-bench-scn-"))
        self.workers: int = args.workers
        self.database = new_database_name() if args.mysql else None
        self.redis: PrivateRedis | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        self.log_paths: list[Path] = []
        self.worker_pids: list[int] = []  # the supervisor's children, as last seen
        self.log_digest: dict[str, Any] = {}
        self.keep: bool = args.keep
        try:
            if args.bus:
                self.redis = PrivateRedis(self.folder / "redis")
            self.ports = [free_port() for _ in range(args.instances)]
            configs = []
            for n, port in enumerate(self.ports, 1):
                folder = self.folder / f"instance{n}" if args.instances > 1 else self.folder
                folder.mkdir(exist_ok=True)
                configs.append(write_server_config(
                    folder, port, group_commit_max=args.group_commit_max, transport=args.transport,
                    sqlite_cache_mb=args.sqlite_cache_mb, mysql_database=self.database,
                    redis_url=self.redis.url if self.redis else None, workers=args.workers,
                    mysql_pool_size=args.mysql_pool_size, extra=extra))
            if seed is not None:
                self.tokens = seed(configs[0])
            else:
                self.tokens = trio.run(make_agents, configs[0], agents) if agents else []
            for n, config in enumerate(configs, 1):
                self.names.append(f"instance {n}" if args.instances > 1 else "server")
                self.log_paths.append(config.parent / "server.log")
                with self.log_paths[-1].open("wb") as log:
                    self.processes.append(subprocess.Popen(
                        [sys.executable, "-m", "customer_service", f"--config={config}", "serve"],
                        cwd=config.parent, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=log))
        except BaseException:
            self.close(failed=True)
            raise
        self.note = self.describe(args)

    def describe(self, args: argparse.Namespace) -> str:
        storage = f"MariaDB (database {self.database})" if self.database else "SQLite"
        if args.mysql_pool_size:
            storage += f", mysql_pool_size = {args.mysql_pool_size}"
        if args.sqlite_cache_mb:
            storage += f", sqlite_cache_mb = {args.sqlite_cache_mb}"
        bus = f"Redis bus on port {self.redis.port}" if self.redis else "no bus"
        if self.workers > 1:
            shape = (f"1 server command with [server] workers = {self.workers} on port "
                     f"{self.ports[0]}; the kernel gives each socket to a worker")
        elif len(self.ports) == 2:
            shape = "2 instances; every visitor on instance 1, its agent on instance 2"
        elif len(self.ports) > 2:
            shape = (f"{len(self.ports)} instances; pair i: visitor on instance i % "
                     f"{len(self.ports)}, agent on the next one")
        else:
            shape = "1 instance"
        return (f"{shape}; {storage}; {bus}; [server] transport = "
                f"{args.transport or 'the server default'}")

    def pair_spec(self, i: int, token: str) -> PairSpec:
        """Where pair ``i`` connects: with 2 instances the visitor on the first and the agent
        on the second; with more, the visitor on instance i % N and the agent on the next."""
        n = len(self.ports)
        visitor = i % n if n > 2 else 0
        return token, self.ports[visitor], self.ports[(visitor + 1) % n]

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every process (every worker) answers /healthz, with the bus "ok" when on."""
        deadline = time.monotonic() + timeout
        for name, process, port in zip(self.names, self.processes, self.ports, strict=True):
            wait_healthy(process, port, timeout=timeout)
            ready: set[str] = set()
            health: Any = None
            while len(ready) < self.workers:  # a new connection each time: any worker may answer
                try:
                    health = httpx.get(f"http://{HOST}:{port}/healthz", timeout=2).json()
                    if self.redis is None or health.get("bus") == "ok":
                        ready.add(health["instance"])
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} is not ready: {len(ready)} of {self.workers} "
                                     f"process(es) healthy, last /healthz {health}")
                time.sleep(0.05)
        if self.workers > 1:
            self.worker_pids = children(self.processes[0].pid)

    def measured(self) -> list[tuple[str, int]]:
        """The server processes whose CPU counts: (name, PID)."""
        if self.workers > 1:
            self.worker_pids = children(self.processes[0].pid)
            return [("supervisor", self.processes[0].pid),
                    *((f"worker {n}", pid) for n, pid in enumerate(self.worker_pids, 1))]
        return [(name, p.pid) for name, p in zip(self.names, self.processes, strict=True)]

    def services(self) -> list[tuple[str, int]]:
        """MariaDB and Redis, measured beside the servers (MariaDB is the machine's)."""
        found = []
        pid = mysql_server_pid() if self.database else None
        if pid is not None:
            found.append((Path(f"/proc/{pid}/comm").read_text().strip(), pid))
        if self.redis is not None:
            found.append(("redis-server", self.redis.pid))
        return found

    def check_alive(self, measured: list[tuple[str, int]]) -> None:
        """Raise when a server process exited during the run (a worker restarted counts)."""
        for name, process in zip(self.names, self.processes, strict=True):
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with code {process.returncode} during the run")
        if self.workers > 1 and set(children(self.processes[0].pid)) != {
                pid for name, pid in measured if name.startswith("worker")}:
            raise SystemExit("a worker process exited during the run (the supervisor restarted it)")

    def scrape(self, prefixes: tuple[str, ...] = METRICS) -> dict[str, dict[str, float]]:
        """The counters of every instance (every worker), by instance name. For workers, each
        new connection reaches a worker the kernel picks: /healthz names it, and /metrics is
        read on the same keep-alive connection."""
        out: dict[str, dict[str, float]] = {}
        for port in self.ports:
            found = 0
            for _ in range(30 * self.workers):
                if found == self.workers:
                    break
                try:
                    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=5) as client:
                        instance = client.get("/healthz").json()["instance"]
                        if instance in out:
                            continue
                        text = client.get("/metrics").text
                        if client.get("/healthz").json()["instance"] != instance:
                            continue  # not the same connection after all
                except (httpx.HTTPError, ValueError, KeyError):
                    continue
                out[instance] = parse_metrics(text, prefixes)
                found += 1
        return out

    def owners(self) -> dict[int, int]:
        """{client port: worker PID} for every socket on the workers' port (workers only)."""
        if self.workers == 1:
            return {}
        return connection_owners(self.ports[0], self.worker_pids)

    def close(self, failed: bool = False) -> None:
        """Servers first (their connections would hold the database), then Redis, then the
        database; every step runs even when an earlier one failed."""
        steps: list[Callable[[], None]] = [partial(self._stop_server, p) for p in self.processes]
        if self.redis is not None:
            steps.append(self.redis.stop)
        if self.database is not None:
            steps.append(partial(drop_database, self.database))
        problems: list[BaseException] = []
        for step in steps:
            try:
                step()
            except Exception as exc:
                problems.append(exc)
        self.log_digest = self.digest()
        if failed or problems:
            for name, path in [*zip(self.names, self.log_paths, strict=True),
                               *([("redis", self.redis.log_path)] if self.redis else [])]:
                print_log_tail(name, path)
        if failed or problems or self.keep:
            print(f"logs kept in {self.folder}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
        if problems:
            raise problems[0]

    def _stop_server(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM (a supervisor passes it on to its workers), then SIGKILL by PID, workers
        included."""
        workers = children(process.pid)
        stop_process(process, timeout=20 if self.workers > 1 else 10)
        kill_if_child_of(workers + self.worker_pids, process.pid)

    def digest(self) -> dict[str, Any]:
        lines, first = 0, []
        for name, path in zip(self.names, self.log_paths, strict=True):
            d = log_digest(path, limit=12)
            lines += d["lines"]
            first += [f"[{name}] {line}" if len(self.names) > 1 else line for line in d["first"]]
        return {"lines": lines, "first": first[:12]}


def print_log_tail(name: str, path: Path, lines: int = 30) -> None:
    try:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        tail = []
    print(f"---- last {len(tail)} line(s) of {name}'s log ({path}) ----")
    for line in tail:
        print(f"  {line[:300]}")


def cpu_seconds(pid: int) -> float:
    """A process's CPU seconds so far; NaN once it is gone."""
    try:
        return proc_times(pid)[0]
    except (OSError, StopIteration):  # gone, or a zombie without VmRSS
        return float("nan")


def rss_bytes(pids: list[int]) -> int:
    """The RSS of several processes, added up (those gone count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, StopIteration):  # gone, or a zombie
            total += proc_times(pid)[1]
    return total


def terminate_all(procs: list[Any]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)


def collect(results: Any, count: int, deadline: float, phase: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"load generators did not report in time ({len(out)}/{count})")
        try:
            item = results.get(timeout=min(left, 5))
        except queue.Empty:
            continue
        if phase is None or item.get("phase") == phase:
            out.append(item)
    return out


def latency_ms(values: list[float]) -> dict[str, float]:
    return {"avg": (statistics.fmean(values) * 1000) if values else float("nan"),
            "p50": percentile(values, 0.50) * 1000, "p99": percentile(values, 0.99) * 1000,
            "max": max(values, default=float("nan")) * 1000, "samples": len(values)}


def crossing(collected: list[dict[str, Any]], owners: dict[int, int]) -> dict[str, int]:
    """How many pairs have their visitor and their agent on different worker processes."""
    placed = [(owners.get(v), owners.get(a)) for r in collected for v, a in r["sockets"]]
    known = [(v, a) for v, a in placed if v is not None and a is not None]
    return {"pairs": len(placed), "placed": len(known), "crossing": sum(v != a for v, a in known)}


def cpu_report(names: list[tuple[str, int]], cpu0: list[float], cpu1: list[float], rss: list[int],
               window: float) -> list[dict[str, Any]]:
    """Each process's CPU seconds and % over the window, and its RSS at the end of it."""
    return [{"name": name, "pid": pid, "cpu_s": c1 - c0, "cpu_percent": (c1 - c0) / window * 100,
             "rss_mb": r / 2**20}
            for (name, pid), c0, c1, r in zip(names, cpu0, cpu1, rss, strict=True)]


def relay(args: argparse.Namespace, open_loop: bool) -> dict[str, Any]:
    raise_fd_limit(4 * args.pairs + 200)
    servers = Servers(args, args.pairs)
    procs: list[Any] = []
    failed = True
    try:
        servers.wait_ready()
        rss_before = rss_bytes([pid for _, pid in servers.measured()])
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        times = ctx.Array("d", 4)  # send_from, start_at, stop_at, hard_stop: set once all started
        nprocs = min(args.procs, args.pairs)
        specs = [servers.pair_spec(i, token) for i, token in enumerate(servers.tokens)]
        chunks = [specs[i::nprocs] for i in range(nprocs)]
        for j, chunk in enumerate(chunks):
            if open_loop:
                share = args.rate * len(chunk) / args.pairs
                procs.append(ctx.Process(target=open_generator, args=(
                    chunk, share, j / args.rate, args.max_outstanding, args.setup_at_once, times,
                    results)))
            else:
                procs.append(ctx.Process(target=closed_generator,
                                         args=(chunk, args.setup_at_once, times, results)))
        for p in procs:
            p.start()
        collect(results, len(procs), time.monotonic() + 60, "ready")
        set_up_from = time.monotonic()
        send_from = set_up_from + args.setup
        start_at = send_from + args.warmup
        stop_at = start_at + args.duration
        hard_stop = stop_at + GRACE + 20
        times[:] = [send_from, start_at, stop_at, hard_stop]
        wall = time.time() - time.monotonic()  # to match the servers' log lines
        # Which worker holds each socket, read once the pairs are set up (before measuring).
        time.sleep(max(0.0, max(send_from, start_at - 1.0) - time.monotonic()))
        measured = servers.measured()
        owners = servers.owners()
        services = servers.services()
        watched = [pid for _, pid in measured + services]
        m0 = servers.scrape()
        time.sleep(max(0.0, start_at - time.monotonic()))
        t0 = time.monotonic()
        busy0 = machine_cpu_seconds()
        cpu0 = [cpu_seconds(pid) for pid in watched]
        rss_series = sample_rss([pid for _, pid in measured], start_at, stop_at, args.rss_every)
        cpu1 = [cpu_seconds(pid) for pid in watched]
        busy1 = machine_cpu_seconds()
        t1 = time.monotonic()
        rss_each = [rss_bytes([pid]) for pid in watched]
        m1 = servers.scrape()
        servers.check_alive(measured)
        collected = collect(results, len(procs), hard_stop + 30, "done")
        failed = False
    finally:
        terminate_all(procs)
        servers.close(failed)

    latencies = [x for r in collected for x in r["latencies"]]
    gens = [{k: v for k, v in r.items() if k not in ("phase", "latencies", "sockets")}
            for r in collected]
    window = t1 - t0
    n = len(measured)
    processes = cpu_report(measured, cpu0[:n], cpu1[:n], rss_each[:n], window)
    beside = cpu_report(services, cpu0[n:], cpu1[n:], rss_each[n:], window)
    delivered = sum(g["received_in_window" if open_loop else "messages"] for g in gens)
    server_cpu_s = sum(p["cpu_s"] for p in processes)
    # CPU per delivered message: the CPU rate over [t0, t1] divided by the delivery rate over
    # the measured window (the two windows differ by the few ms it takes to read /proc).
    per_rate = (delivered / args.duration) or float("nan")
    common = sorted(set(m0) & set(m1))
    report: dict[str, Any] = {
        "scenario": args.scenario, "pairs": args.pairs, "procs": len(procs), "duration_s": args.duration,
        "setup_s": args.setup, "warmup_s": args.warmup, "setup_at_once": args.setup_at_once,
        "deployment": {"storage": "mysql" if servers.database else "sqlite",
                       "bus": servers.redis is not None, "instances": len(servers.ports),
                       "workers": servers.workers},
        "latency_ms": latency_ms(latencies),
        "delivered_in_window": delivered,
        "server_cpu_us_per_message": server_cpu_s / window / per_rate * 1e6,
        "server": {"cpu_percent": server_cpu_s / window * 100, "cpu_s": server_cpu_s,
                   "cpu_window_s": window, "processes": processes,
                   "rss_mb": sum(rss_each[:n]) / 2**20, "rss_before_mb": rss_before / 2**20,
                   "log": servers.log_digest, "rss_series_mb": rss_series,
                   "rss_drift": rss_drift(rss_series),
                   "metrics_instances": f"{len(common)} of {len(servers.ports) * servers.workers}",
                   "metrics_while_measured": metrics_window(add_up([m0[i] for i in common]),
                                                            add_up([m1[i] for i in common]))},
        "beside_servers": {
            "processes": beside,
            "cpu_us_per_message_with_them": (server_cpu_s + sum(p["cpu_s"] for p in beside))
            / window / per_rate * 1e6},
        "load_generators": gens,
        "machine_busy_percent": (busy1 - busy0) / window * 100,
        "wall_clock": {name: time.strftime("%H:%M:%S", time.localtime(t + wall))
                       for name, t in (("set_up_from", set_up_from), ("sending_from", send_from),
                                       ("measured_from", start_at), ("measured_until", stop_at))},
        "transport_note": servers.note,
        "machine": args.machine,
    }
    if servers.workers > 1:
        report["pairs_across_workers"] = crossing(collected, owners)
    if open_loop:
        tot = {k: sum(g[k] for g in gens) for k in (
            "scheduled", "sent", "not_sent_outstanding", "not_sent_failed", "delivered", "undelivered",
            "received_in_window", "failed_pairs", "closed_sockets")}
        report.update(offered_rate=args.rate, max_outstanding=args.max_outstanding, totals=tot,
                      achieved_rate=tot["received_in_window"] / args.duration)
    else:
        messages = sum(g["messages"] for g in gens)
        report.update(messages=messages, messages_per_s=messages / args.duration)
    return report


def sample_rss(pids: list[int], start_at: float, stop_at: float,
               every: float) -> list[tuple[float, float]]:
    """(seconds into the window, RSS of ``pids`` together in MB) every ``every`` s until ``stop_at``."""
    series: list[tuple[float, float]] = []
    while (left := stop_at - time.monotonic()) > 0:
        time.sleep(min(left, every))
        series.append((round(time.monotonic() - start_at, 1), rss_bytes(pids) / 2**20))
    return series


def rss_drift(series: list[tuple[float, float]]) -> dict[str, float] | None:
    """How far RSS strays from the sample a tenth into the run (the warm baseline)."""
    if len(series) < 3:
        return None
    end = series[-1][0]
    base_t, base = next((t, mb) for t, mb in series if t >= end / 10)
    later = [mb for t, mb in series if t >= base_t]
    return {"baseline_at_s": base_t, "baseline_mb": base, "min_mb": min(later), "max_mb": max(later),
            "last_mb": later[-1], "max_deviation_pct": max(abs(mb - base) for mb in later) / base * 100}


def idle(args: argparse.Namespace) -> dict[str, Any]:
    n = args.connections
    nprocs = max(args.procs, math.ceil(n / PER_PROC_SOCKETS))
    raise_fd_limit(n + 200)
    servers = Servers(args, 0)
    procs: list[Any] = []
    failed = True
    try:
        servers.wait_ready()
        time.sleep(0.5)
        pids = [pid for _, pid in servers.measured()]
        rss_before = rss_bytes(pids)
        connect_budget = max(30.0, n / 100)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        counts = [n // nprocs + (i < n % nprocs) for i in range(nprocs)]
        # The hold starts (hold_at, shared) once every generator has reported connected.
        hold_at = ctx.Value("d", 0.0)
        t0 = time.monotonic()
        hard_stop = t0 + 5 + connect_budget + args.duration + 60
        procs = [ctx.Process(target=idle_generator,
                             args=(servers.ports[0], k, args.ping_interval, args.duration, hold_at,
                                   hard_stop, results))
                 for k in counts if k]
        for p in procs:
            p.start()
        connected = collect(results, len(procs), t0 + 5 + connect_budget, "connected")
        all_connected_s = time.monotonic() - t0
        hold_from = time.monotonic() + 1
        hold_at.value = hold_from
        check_at = hold_from + args.duration
        time.sleep(1)
        rss_connected = rss_bytes(pids)
        cpu0 = sum(cpu_seconds(pid) for pid in pids)
        c0 = time.monotonic()
        time.sleep(max(0.0, check_at - time.monotonic()))
        cpu1 = sum(cpu_seconds(pid) for pid in pids)
        rss_held = rss_bytes(pids)
        c1 = time.monotonic()
        done = collect(results, len(procs), hard_stop + 30, "done")
        rss_after = rss_bytes(pids)
        failed = False
    finally:
        terminate_all(procs)
        servers.close(failed)

    ok = sum(r["connected"] for r in connected)
    return {
        "scenario": "idle", "connections": n, "procs": len(procs), "hold_s": args.duration,
        "connected": ok, "failed": sum(r["failed"] for r in connected),
        "connect_s_slowest_generator": max(r["connect_seconds"] for r in connected),
        "connect_s_all_reported": all_connected_s,
        "connect_ms": {"p50_max": max(r["connect_p50_ms"] for r in connected),
                       "p99_max": max(r["connect_p99_ms"] for r in connected),
                       "max": max(r["connect_max_ms"] for r in connected)},
        "server": {"rss_before_mb": rss_before / 2**20, "rss_connected_mb": rss_connected / 2**20,
                   "rss_held_mb": rss_held / 2**20, "rss_after_check_mb": rss_after / 2**20,
                   "kb_per_connection": (rss_held - rss_before) / 1024 / max(1, ok),
                   "cpu_percent_while_held": (cpu1 - cpu0) / max(1e-9, c1 - c0) * 100,
                   "log": servers.log_digest},
        "pings_sent": sum(r["pings_sent"] for r in done),
        "closed_while_held": sum(r["closed_while_held"] for r in done),
        "answered": sum(r["answered"] for r in done),
        "load_generators": [{k: r[k] for k in ("cpu_percent", "maxrss", "pings_sent", "answered")}
                            for r in done],
        "transport_note": servers.note,
        "machine": args.machine,
    }


# ---- printing ------------------------------------------------------------------------------

def print_common_tail(report: dict[str, Any]) -> None:
    for n, g in enumerate(report["load_generators"]):
        extra = ""
        if "lag_p99_ms" in g:
            extra = f", loop lag p99 {g['lag_p99_ms']:.1f} ms"
        if "send_behind_max_ms" in g:
            extra += f", sends behind schedule by up to {g['send_behind_max_ms']:.1f} ms"
        if "set_up_s" in g:
            extra += f", its pairs set up in {g['set_up_s']:.1f} s"
        if "failed_pairs" in g:
            extra += f", {g['failed_pairs']} pair(s) failed, {g['closed_sockets']} socket(s) closed"
        if "visitor_errors" in g:
            extra += f", error frames to visitors: {g['visitor_errors'] or 'none'}"
        print(f"  load generator {n}: CPU {g['cpu_percent']:.0f}% while measured{extra}")
    late = [g["set_up_s"] for g in report["load_generators"]
            if g.get("set_up_s", 0) > report.get("setup_s", math.inf) + report.get("warmup_s", 0)]
    if late:
        print(f"  WARNING: pairs were still being set up {max(late):.1f} s after the set-up began, "
              f"after the measured window opened (--setup {report['setup_s']:g} + --warmup "
              f"{report['warmup_s']:g} s): the window saw set-up work and fewer pairs chatting")
    if report.get("wall_clock"):
        w = report["wall_clock"]
        print(f"  wall clock: pairs set up from {w['set_up_from']}, sending from "
              f"{w['sending_from']}, measured from {w['measured_from']} to {w['measured_until']}")
    if report.get("transport_note"):
        print(f"  servers: {report['transport_note']}")
    log = report["server"]["log"]
    if log.get("lines"):
        print(f"  server log: {log['lines']} line(s); first distinct:")
        for line in log["first"]:
            print(f"    {line}")
    else:
        print("  server log: empty")


def print_report(report: dict[str, Any]) -> None:
    s = report["server"]
    if report["scenario"] == "idle":
        print(f"idle: {report['connected']}/{report['connections']} visitor sockets connected "
              f"({report['failed']} failed) by {report['procs']} load generator(s)")
        cm = report["connect_ms"]
        print(f"  connect time: all in {report['connect_s_slowest_generator']:.2f} s "
              f"(slowest generator); per socket p50 {cm['p50_max']:.1f} ms  p99 {cm['p99_max']:.1f} ms  "
              f"max {cm['max']:.1f} ms (worst generator)")
        print(f"  server RSS: before {s['rss_before_mb']:.1f} MB, connected {s['rss_connected_mb']:.1f} MB, "
              f"after {report['hold_s']:g} s held {s['rss_held_mb']:.1f} MB, after final check "
              f"{s['rss_after_check_mb']:.1f} MB")
        print(f"  KB per connection: {s['kb_per_connection']:.1f} "
              f"((RSS held - RSS before) / connected)")
        print(f"  server CPU while held: {s['cpu_percent_while_held']:.1f}%; pings sent "
              f"{report['pings_sent']}; sockets closed while held {report['closed_while_held']}")
        print(f"  final ping: {report['answered']}/{report['connected']} answered")
        print_common_tail(report)
        return
    lat = report["latency_ms"]
    if report["scenario"] == "relay-closed":
        print(f"relay-closed, {report['pairs']} pairs, {report['procs']} load generator(s): "
              f"{report['messages_per_s']:.0f} msgs/s delivered ({report['messages']} in "
              f"{report['duration_s']:g} s)")
        print(f"  latency visitor send → agent receive: p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
              f"max {lat['max']:.2f} ms  avg {lat['avg']:.2f} ms")
    else:
        t = report["totals"]
        print(f"{report['scenario']}, {report['pairs']} pairs, {report['procs']} load generator(s), offered "
              f"{report['offered_rate']:g} msgs/s for {report['duration_s']:g} s: achieved "
              f"{report['achieved_rate']:.0f} msgs/s delivered")
        print(f"  scheduled {t['scheduled']}, sent {t['sent']}, delivered {t['delivered']}, "
              f"undelivered {t['undelivered']} (after {GRACE:g} s grace), not sent: "
              f"{t['not_sent_outstanding']} over {report['max_outstanding']} outstanding, "
              f"{t['not_sent_failed']} on failed pairs")
        print(f"  latency from SCHEDULED send → agent receive: avg {lat['avg']:.2f} ms  "
              f"p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  max {lat['max']:.2f} ms")
    print_server_cpu(report)
    drift = s["rss_drift"]
    if report["scenario"] == "soak" and drift:
        verdict = "flat" if drift["max_deviation_pct"] <= 5 else "NOT flat"
        print(f"  RSS from {drift['baseline_at_s']:g} s on: baseline {drift['baseline_mb']:.1f} MB, "
              f"min {drift['min_mb']:.1f}, max {drift['max_mb']:.1f}, last {drift['last_mb']:.1f} MB; "
              f"largest deviation {drift['max_deviation_pct']:.1f}% ({verdict}, target ±5%)")
        print("  RSS samples (s: MB): " + ", ".join(f"{t:g}: {mb:.1f}" for t, mb in s["rss_series_mb"]))
    m = s["metrics_while_measured"]
    print(f"  server metrics while measured ({s['metrics_instances']} processes read): "
          f"{m['messages_stored']:.0f} stored in {m['commits']:.0f} "
          f"commits (mean batch {m['mean_batch']:.1f}), mean arrival→hand-off "
          f"{m['mean_server_latency_ms']:.2f} ms, errors/slow consumers: {m['errors'] or 'none'}")
    if report["deployment"]["bus"]:
        bus = m["bus"]
        print(f"  bus while measured: {bus['events_published']:.0f} events published in "
              f"{bus['batches_published']:.0f} batches, {bus['batches_received']:.0f} batches "
              f"received, {bus['gap_fill_messages']:.0f} messages filled from the database, "
              f"{bus['resyncs']:.0f} resyncs")
    print_common_tail(report)


def print_server_cpu(report: dict[str, Any]) -> None:
    """Each server process's CPU, their sum per delivered message, and MariaDB's and Redis's."""
    s = report["server"]
    window = s["cpu_window_s"]
    for p in s["processes"]:
        print(f"  server process {p['name']} (pid {p['pid']}): CPU {p['cpu_percent']:.0f}% "
              f"({p['cpu_s']:.2f} s in {window:.2f} s), RSS {p['rss_mb']:.1f} MB")
    print(f"  server CPU in all: {s['cpu_percent']:.0f}% ({s['cpu_s']:.2f} s); "
          f"{report['server_cpu_us_per_message']:.0f} µs per delivered message "
          f"({report['delivered_in_window']} delivered in the window); RSS {s['rss_mb']:.1f} MB "
          f"(before load {s['rss_before_mb']:.1f} MB)")
    beside = report["beside_servers"]
    if beside["processes"]:
        each = ", ".join(f"{p['name']} {p['cpu_percent']:.0f}% ({p['cpu_s']:.2f} s)"
                         for p in beside["processes"])
        print(f"  beside the servers: {each}; servers and these together "
              f"{beside['cpu_us_per_message_with_them']:.0f} µs per delivered message")
    ours = s["cpu_s"] + sum(p["cpu_s"] for p in beside["processes"])
    gens = sum(g["cpu_percent"] for g in report["load_generators"]) / 100 * window
    print(f"  the machine's cores were busy {report['machine_busy_percent']:.0f}% (of "
          f"{report['machine']['cpus'] * 100}%) while measured; outside the servers, MariaDB, "
          f"Redis and the load generators (other processes, interrupts, this driver): "
          f"{report['machine_busy_percent'] - (ours + gens) / window * 100:.0f}%")
    cross = report.get("pairs_across_workers")
    if cross:
        print(f"  pairs across workers: {cross['crossing']} of {cross['placed']} placed "
              f"({cross['pairs']} pairs set up); the rest have visitor and agent on one worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["relay-closed", "relay-open", "idle", "soak"])
    parser.add_argument("--pairs", type=int, default=None, help="relay: visitor/agent pairs")
    parser.add_argument("--rate", type=float, default=None,
                        help="relay-open / soak: offered msgs/s in total (default 3247 / 2900)")
    parser.add_argument("--rss-every", type=float, default=None,
                        help="seconds between server RSS samples (default: soak 10, others 1)")
    parser.add_argument("--max-outstanding", type=int, default=100,
                        help="relay-open: most undelivered messages per pair")
    parser.add_argument("--connections", type=int, default=18000, help="idle: sockets")
    parser.add_argument("--ping-interval", type=float, default=10.0, help="idle: seconds between pings")
    parser.add_argument("--duration", type=float, default=None,
                        help="measured (relay) or held (idle) seconds; default 10 / 30")
    parser.add_argument("--warmup", type=float, default=3.0, help="relay: seconds of load before measuring")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--setup", type=float, default=None,
                        help="relay: seconds allowed for setting the pairs up before the warm-up "
                             "(default: pairs / 150, at least 2); a pair still setting up then "
                             "joins late")
    parser.add_argument("--setup-at-once", type=int, default=HANDSHAKES_AT_ONCE,
                        help="relay: pairs each load generator sets up at a time (default "
                             f"{HANDSHAKES_AT_ONCE})")
    parser.add_argument("--group-commit-max", type=int, default=512)
    parser.add_argument("--sqlite-cache-mb", type=int, default=None,
                        help="[storage] sqlite_cache_mb (default: the server's, 64)")
    parser.add_argument("--transport", choices=["native", "hypercorn"], default=None,
                        help="[server] transport, when the installed config has that key")
    parser.add_argument("--mysql", action="store_true",
                        help="MariaDB (127.0.0.1:3306, root, no password; a scratch database, "
                             "dropped at the end) instead of SQLite")
    parser.add_argument("--bus", action="store_true",
                        help="the Redis bus on (a private redis-server), even for one instance")
    parser.add_argument("--mysql-pool-size", type=int, default=None,
                        help="[storage] mysql_pool_size of each server process (default: the "
                             "server's, 4)")
    parser.add_argument("--instances", type=int, default=1,
                        help="relay: separate server processes on one MariaDB database and one "
                             "Redis (implies --mysql --bus); every pair's visitor and agent are "
                             "on different instances (default 1)")
    parser.add_argument("--workers", type=int, default=1,
                        help="one server command with [server] workers = N on one port (implies "
                             "--mysql --bus); the kernel spreads the sockets over the workers")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (config, server and Redis logs) even "
                             "after a run that went well (it is always kept after a failure)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (1 <= args.instances <= 8 and 1 <= args.workers <= 8):
        parser.error("--instances and --workers must be 1..8")
    if args.instances > 1 and args.workers > 1:
        parser.error("--instances and --workers do not combine: choose one")
    if args.instances > 1 and args.scenario == "idle":
        parser.error("idle runs against one instance (--workers is allowed)")
    if args.instances > 1 or args.workers > 1:
        args.mysql = args.bus = True
    if args.mysql_pool_size is not None and not (args.mysql and 1 <= args.mysql_pool_size <= 64):
        parser.error("--mysql-pool-size must be 1..64, with --mysql (or --instances, --workers)")
    if args.mysql and args.sqlite_cache_mb:
        parser.error("--sqlite-cache-mb is for SQLite; not with --mysql, --instances or --workers")
    soak = args.scenario == "soak"
    if args.pairs is None:
        args.pairs = 1000 if args.scenario in ("relay-open", "soak") else 100
    if args.duration is None:
        args.duration = {"idle": 30.0, "soak": 600.0}.get(args.scenario, 10.0)
    if args.rate is None:
        args.rate = 2900.0 if soak else 3247.0
    if args.rss_every is None:
        args.rss_every = 10.0 if soak else 1.0
    if args.setup is None:
        args.setup = max(2.0, args.pairs / 150)
    if not (0 < args.setup <= 300 and 1 <= args.setup_at_once <= 1000):
        parser.error("--setup must be 0..300 s, --setup-at-once 1..1000")
    if not 0.2 <= args.rss_every <= 60:
        parser.error("--rss-every must be 0.2..60 s")
    if not (1 <= args.pairs <= 5000 and 0 < args.duration <= 600 and 1 <= args.procs <= 32):
        parser.error("--pairs must be 1..5000, --duration 0..600 s, --procs 1..32")
    if not (0 < args.rate <= 100000 and 1 <= args.max_outstanding <= 10000 and 0 <= args.warmup <= 120):
        parser.error("--rate must be 0..100000, --max-outstanding 1..10000, --warmup 0..120")
    if not (1 <= args.connections <= 19000 and 1 <= args.ping_interval <= 60):
        parser.error("--connections must be 1..19000 (20,000 open files here), --ping-interval 1..60")

    args.machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "python_loop_s": round(machine_speed(), 3), "code": code_version(ROOT)}
    print(f"machine: {args.machine['cpus']} CPUs, Python {args.machine['python']}, reference "
          f"loop {args.machine['python_loop_s']} s (sum of 10**7 squares; lower is faster); "
          f"code: {args.machine['code']}")
    open_loop = args.scenario in ("relay-open", "soak")
    report = idle(args) if args.scenario == "idle" else relay(args, open_loop=open_loop)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
