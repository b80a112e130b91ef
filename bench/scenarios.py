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
import json
import math
import multiprocessing as mp
import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import trio  # noqa: E402

from bench.ai import log_digest, stop  # noqa: E402
from bench.common import (  # noqa: E402
    HOST,
    free_port,
    machine_speed,
    percentile,
    proc_times,
    raise_fd_limit,
    wait_healthy,
    write_server_config,
)
from bench.loadgen import Client, Closed, HandshakeFailed, open_loop_schedule  # noqa: E402
from bench.relay import make_agents  # noqa: E402

HANDSHAKES_AT_ONCE = 50  # per load generator; a burst of hundreds overflows the listen backlog
PER_PROC_SOCKETS = 6000  # idle: most sockets in one load-generator process
GRACE = 5.0  # relay-open: seconds after --duration that messages in flight may still arrive
SETUP_ERRORS = (OSError, HandshakeFailed, Closed, ValueError, KeyError, trio.TooSlowError)


# ---- server -------------------------------------------------------------------------------



def write_config(folder: Path, port: int, args: argparse.Namespace) -> tuple[Path, str]:
    """The server's TOML config, and a note saying which transport it runs."""
    note = f"[server] transport = {args.transport or 'the server default'}"
    if args.sqlite_cache_mb:
        note += f"; [storage] sqlite_cache_mb = {args.sqlite_cache_mb}"
    return write_server_config(folder, port, group_commit_max=args.group_commit_max,
                               transport=args.transport,
                               sqlite_cache_mb=args.sqlite_cache_mb), note


METRICS = ("cs_commit_batch_size_sum", "cs_commit_batch_size_count", "cs_message_latency_seconds_sum",
           "cs_message_latency_seconds_count", "cs_error_frames_total", "cs_slow_consumers_closed_total",
           "cs_db_errors_total", "cs_messages_stored_total")


def server_metrics(port: int) -> dict[str, float]:
    """A few of the server's /metrics counters (cumulative since it started)."""
    try:
        text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(METRICS):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metrics_window(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What happened between two scrapes: commits, mean batch, mean server-side latency, errors."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    commits = d.get("cs_commit_batch_size_count", 0.0)
    handled = d.get("cs_message_latency_seconds_count", 0.0)
    return {
        "messages_stored": d.get("cs_messages_stored_total", 0.0),
        "commits": commits,
        "mean_batch": d.get("cs_commit_batch_size_sum", 0.0) / commits if commits else float("nan"),
        "mean_server_latency_ms": (d.get("cs_message_latency_seconds_sum", 0.0) / handled * 1000
                                   if handled else float("nan")),
        "errors": {k: v for k, v in d.items()
                   if v and k.startswith(("cs_error_frames", "cs_slow", "cs_db_errors"))},
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


async def open_pair(port: int, token: str, gate: trio.Semaphore) -> tuple[Client, Client]:
    """A visitor and its agent, the conversation accepted; closed again on failure."""
    async with gate:
        vis = await Client.connect(HOST, port, "/ws/visitor")
        try:
            agent = await Client.connect(HOST, port, f"/ws/agent?token={token}&queue=off")
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


def finish(results: Any, cpu: list[float], window: float, payload: dict[str, Any]) -> None:
    payload["cpu_percent"] = ((cpu[1] - cpu[0]) / window * 100) if len(cpu) == 2 else float("nan")
    payload["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results.put(payload)


# ---- relay-closed --------------------------------------------------------------------------

def closed_generator(port: int, tokens: list[str], times: tuple[float, float, float],
                     results: Any) -> None:
    start_at, stop_at, hard_stop = times
    latencies: list[float] = []
    counters = {"messages": 0, "failed_pairs": 0, "closed_sockets": 0}
    errors: dict[str, int] = {}
    cpu: list[float] = []
    lag: list[float] = []

    def closed() -> None:
        counters["closed_sockets"] += 1

    async def pair(token: str, gate: trio.Semaphore) -> None:
        try:
            vis, agent = await open_pair(port, token, gate)
        except SETUP_ERRORS:
            counters["failed_pairs"] += 1
            return
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
        except Closed:
            counters["failed_pairs"] += 1
        finally:
            await vis.aclose()
            await agent.aclose()

    async def main() -> None:
        gate = trio.Semaphore(HANDSHAKES_AT_ONCE)
        with trio.move_on_at(trio.current_time() + hard_stop - time.monotonic()):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cpu_window(start_at, stop_at, cpu))
                nursery.start_soon(lag_probe(stop_at, lag))
                for token in tokens:
                    nursery.start_soon(pair, token, gate)

    trio.run(main)
    finish(results, cpu, stop_at - start_at, {
        "latencies": latencies, **counters, "pairs": len(tokens), "visitor_errors": errors,
        "lag_p99_ms": percentile(lag, 0.99) * 1000})


# ---- relay-open ----------------------------------------------------------------------------

class OpenPair:
    __slots__ = ("agent", "pending", "vis")

    def __init__(self, vis: Client, agent: Client) -> None:
        self.vis = vis
        self.agent = agent
        self.pending: dict[int, float] = {}  # k -> scheduled send time, while undelivered


CONTENT_MARK = '"content":"o'


def open_generator(port: int, tokens: list[str], rate: float, phase: float, max_outstanding: int,
                   times: tuple[float, float, float, float], results: Any) -> None:
    send_from, start_at, stop_at, hard_stop = times
    latencies: list[float] = []
    c = {"scheduled": 0, "sent": 0, "not_sent_outstanding": 0, "not_sent_failed": 0,
         "delivered": 0, "received_in_window": 0, "failed_pairs": 0, "closed_sockets": 0,
         "send_behind_max_ms": 0.0}
    cpu: list[float] = []
    lag: list[float] = []
    pairs: list[OpenPair | None] = [None] * len(tokens)
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

    async def setup(n: int, token: str, gate: trio.Semaphore) -> None:
        try:
            vis, agent = await open_pair(port, token, gate)
        except SETUP_ERRORS:
            c["failed_pairs"] += 1
            return
        state = OpenPair(vis, agent)
        vis.on_text = error_counter(errors)
        agent.on_text = make_on_agent(state)
        pairs[n] = state

    async def sender() -> None:
        for when, slot, k in open_loop_schedule(rate, len(tokens), send_from, stop_at, phase):
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
        gate = trio.Semaphore(HANDSHAKES_AT_ONCE)
        with trio.move_on_at(trio.current_time() + hard_stop - time.monotonic()):
            async with trio.open_nursery() as nursery:
                for n, token in enumerate(tokens):
                    nursery.start_soon(setup, n, token, gate)
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
        "latencies": latencies, **c, "undelivered": undelivered, "pairs": len(tokens),
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

class Server:
    """The server process, its temp folder and its config; stopped in ``close``."""

    def __init__(self, args: argparse.Namespace, agents: int) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="cs-bench-scn-")
        folder = Path(self.tmp.name)
        self.port = free_port()
        config, self.note = write_config(folder, self.port, args)
        self.tokens = trio.run(make_agents, config, agents) if agents else []
        self.log_path = folder / "server.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "customer_service", f"--config={config}", "serve"],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=self.log)
        self.log_digest: dict[str, Any] = {}

    def close(self) -> None:
        try:
            stop(self.process)
        finally:
            self.log.close()
            self.log_digest = log_digest(self.log_path, limit=12)
            self.tmp.cleanup()


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


def relay(args: argparse.Namespace, open_loop: bool) -> dict[str, Any]:
    raise_fd_limit(4 * args.pairs + 200)
    server = Server(args, args.pairs)
    procs: list[Any] = []
    try:
        wait_healthy(server.process, server.port)
        _, rss_before = proc_times(server.process.pid)
        setup = max(2.0, args.pairs / 150)
        send_from = time.monotonic() + setup
        start_at = send_from + args.warmup
        stop_at = start_at + args.duration
        hard_stop = stop_at + GRACE + 20
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        nprocs = min(args.procs, args.pairs)
        chunks = [server.tokens[i::nprocs] for i in range(nprocs)]
        for j, chunk in enumerate(chunks):
            if open_loop:
                share = args.rate * len(chunk) / args.pairs
                procs.append(ctx.Process(target=open_generator, args=(
                    server.port, chunk, share, j / args.rate, args.max_outstanding,
                    (send_from, start_at, stop_at, hard_stop), results)))
            else:
                procs.append(ctx.Process(target=closed_generator, args=(
                    server.port, chunk, (start_at, stop_at, hard_stop), results)))
        for p in procs:
            p.start()
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu0, _ = proc_times(server.process.pid)
        m0 = server_metrics(server.port)
        rss_series = sample_rss(server.process.pid, start_at, stop_at, args.rss_every)
        cpu1, rss = proc_times(server.process.pid)
        m1 = server_metrics(server.port)
        collected = collect(results, len(procs), hard_stop + 30)
    finally:
        terminate_all(procs)
        server.close()

    latencies = [x for r in collected for x in r["latencies"]]
    gens = [{k: v for k, v in r.items() if k != "latencies"} for r in collected]
    report: dict[str, Any] = {
        "scenario": args.scenario, "pairs": args.pairs, "procs": len(procs), "duration_s": args.duration,
        "latency_ms": latency_ms(latencies),
        "server": {"cpu_percent": (cpu1 - cpu0) / args.duration * 100, "rss_mb": rss / 2**20,
                   "rss_before_mb": rss_before / 2**20, "log": server.log_digest,
                   "rss_series_mb": rss_series, "rss_drift": rss_drift(rss_series),
                   "metrics_while_measured": metrics_window(m0, m1)},
        "load_generators": gens,
        "transport_note": server.note,
        "machine": args.machine,
    }
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


def sample_rss(pid: int, start_at: float, stop_at: float, every: float) -> list[tuple[float, float]]:
    """(seconds into the window, RSS in MB) every ``every`` s until ``stop_at``."""
    series: list[tuple[float, float]] = []
    while (left := stop_at - time.monotonic()) > 0:
        time.sleep(min(left, every))
        series.append((round(time.monotonic() - start_at, 1), proc_times(pid)[1] / 2**20))
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
    server = Server(args, 0)
    procs: list[Any] = []
    try:
        wait_healthy(server.process, server.port)
        time.sleep(0.5)
        _, rss_before = proc_times(server.process.pid)
        connect_budget = max(30.0, n / 100)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        counts = [n // nprocs + (i < n % nprocs) for i in range(nprocs)]
        # The hold starts (hold_at, shared) once every generator has reported connected.
        hold_at = ctx.Value("d", 0.0)
        t0 = time.monotonic()
        hard_stop = t0 + 5 + connect_budget + args.duration + 60
        procs = [ctx.Process(target=idle_generator,
                             args=(server.port, k, args.ping_interval, args.duration, hold_at,
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
        _, rss_connected = proc_times(server.process.pid)
        cpu0, _ = proc_times(server.process.pid)
        c0 = time.monotonic()
        time.sleep(max(0.0, check_at - time.monotonic()))
        cpu1, rss_held = proc_times(server.process.pid)
        c1 = time.monotonic()
        done = collect(results, len(procs), hard_stop + 30, "done")
        _, rss_after = proc_times(server.process.pid)
    finally:
        terminate_all(procs)
        server.close()

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
                   "log": server.log_digest},
        "pings_sent": sum(r["pings_sent"] for r in done),
        "closed_while_held": sum(r["closed_while_held"] for r in done),
        "answered": sum(r["answered"] for r in done),
        "load_generators": [{k: r[k] for k in ("cpu_percent", "maxrss", "pings_sent", "answered")}
                            for r in done],
        "transport_note": server.note,
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
        if "failed_pairs" in g:
            extra += f", {g['failed_pairs']} pair(s) failed, {g['closed_sockets']} socket(s) closed"
        if "visitor_errors" in g:
            extra += f", error frames to visitors: {g['visitor_errors'] or 'none'}"
        print(f"  load generator {n}: CPU {g['cpu_percent']:.0f}% while measured{extra}")
    if report.get("transport_note"):
        print(f"  note: {report['transport_note']}")
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
    print(f"  server: CPU {s['cpu_percent']:.0f}%  RSS {s['rss_mb']:.1f} MB "
          f"(before load {s['rss_before_mb']:.1f} MB)")
    drift = s["rss_drift"]
    if report["scenario"] == "soak" and drift:
        verdict = "flat" if drift["max_deviation_pct"] <= 5 else "NOT flat"
        print(f"  RSS from {drift['baseline_at_s']:g} s on: baseline {drift['baseline_mb']:.1f} MB, "
              f"min {drift['min_mb']:.1f}, max {drift['max_mb']:.1f}, last {drift['last_mb']:.1f} MB; "
              f"largest deviation {drift['max_deviation_pct']:.1f}% ({verdict}, target ±5%)")
        print("  RSS samples (s: MB): " + ", ".join(f"{t:g}: {mb:.1f}" for t, mb in s["rss_series_mb"]))
    m = s["metrics_while_measured"]
    print(f"  server metrics while measured: {m['messages_stored']:.0f} stored in {m['commits']:.0f} "
          f"commits (mean batch {m['mean_batch']:.1f}), mean arrival→hand-off "
          f"{m['mean_server_latency_ms']:.2f} ms, errors/slow consumers: {m['errors'] or 'none'}")
    print_common_tail(report)


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
    parser.add_argument("--group-commit-max", type=int, default=512)
    parser.add_argument("--sqlite-cache-mb", type=int, default=None,
                        help="[storage] sqlite_cache_mb (default: the server's, 64)")
    parser.add_argument("--transport", choices=["native", "hypercorn"], default=None,
                        help="[server] transport, when the installed config has that key")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    soak = args.scenario == "soak"
    if args.pairs is None:
        args.pairs = 1000 if args.scenario in ("relay-open", "soak") else 100
    if args.duration is None:
        args.duration = {"idle": 30.0, "soak": 600.0}.get(args.scenario, 10.0)
    if args.rate is None:
        args.rate = 2900.0 if soak else 3247.0
    if args.rss_every is None:
        args.rss_every = 10.0 if soak else 1.0
    if not 0.2 <= args.rss_every <= 60:
        parser.error("--rss-every must be 0.2..60 s")
    if not (1 <= args.pairs <= 5000 and 0 < args.duration <= 600 and 1 <= args.procs <= 32):
        parser.error("--pairs must be 1..5000, --duration 0..600 s, --procs 1..32")
    if not (0 < args.rate <= 100000 and 1 <= args.max_outstanding <= 10000 and 0 <= args.warmup <= 120):
        parser.error("--rate must be 0..100000, --max-outstanding 1..10000, --warmup 0..120")
    if not (1 <= args.connections <= 19000 and 1 <= args.ping_interval <= 60):
        parser.error("--connections must be 1..19000 (20,000 open files here), --ping-interval 1..60")

    args.machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "python_loop_s": round(machine_speed(), 3)}
    print(f"machine: {args.machine['cpus']} CPUs, Python {args.machine['python']}, reference "
          f"loop {args.machine['python_loop_s']} s (sum of 10**7 squares; lower is faster)")
    open_loop = args.scenario in ("relay-open", "soak")
    report = idle(args) if args.scenario == "idle" else relay(args, open_loop=open_loop)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
