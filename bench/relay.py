"""Relay benchmark: N visitor/agent pairs, closed loop, against the real server.

    .venv/bin/python bench/relay.py --pairs 100 --duration 10

Starts the server as its own process (SQLite on local disk, loopback only),
creates one agent per pair straight in the database, then drives the pairs
from ``--procs`` load-generator processes. Each pair: the visitor says hello,
its agent accepts the conversation, then the visitor sends a message, waits
until the agent has received it, and sends the next (closed loop). Every
message is committed before it is acked and delivered.

Prints messages/s delivered (visitor → agent), latency p50/p99/max (visitor
send → agent receive), the server's CPU % and RSS, and each load generator's
CPU %, so it is visible whether the load generator was the bottleneck. Writes
the same as JSON with ``--json PATH``. Every loop is bounded by ``--duration``
and a hard deadline; only 127.0.0.1 is targeted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    HOST,
    free_port,
    percentile,
    proc_times,
    wait_healthy,
    write_server_config,
)
from customer_service import auth  # noqa: E402
from customer_service.config import load_config  # noqa: E402
from customer_service.storage import open_store  # noqa: E402


async def make_agents(config_path: Path, count: int) -> list[str]:
    """``count`` agents with a login token each, made straight in the database the config file
    names (SQLite or MariaDB: ``open_store`` picks the backend; migrated first, so this also
    creates a fresh MariaDB database). Returns the tokens."""
    config = load_config(config_path, environ={})
    tokens = []
    async with open_store(config) as store:
        await store.migrate()
        cheap = auth.hash_password("bench-password", n=2**4)
        for n in range(count):
            agent = await store.create_agent(f"bench{n}", f"Bench {n}", cheap)
            token = auth.new_token()
            await store.add_agent_token(agent.id, auth.token_hash(token), "bench", None)
            tokens.append(token)
    return tokens




# ---- load generator (runs in child processes) --------------------------------

async def run_pair(port: int, token: str, start_at: float, stop_at: float, hard_stop: float,
               latencies: list[float], counters: dict[str, int]) -> None:
    base = f"ws://{HOST}:{port}"
    async with open_websocket_url(f"{base}/ws/visitor") as vis, \
            open_websocket_url(f"{base}/ws/agent?token={token}&queue=off") as agent:
        await vis.send_message('{"type":"hello"}')
        welcome = json.loads(await vis.get_message())
        cid = welcome["conversation_id"]
        json.loads(await agent.get_message())
        await agent.send_message(json.dumps({"type": "accept", "id": "acc", "conversation_id": cid}))
        while True:
            frame = json.loads(await agent.get_message())
            if frame.get("type") == "ack" and frame.get("id") == "acc":
                break
        arrived = trio.Event()
        received: dict[str, float] = {}

        async def drain_visitor() -> None:
            while True:
                await vis.get_message()

        async def agent_reader() -> None:
            nonlocal arrived
            while True:
                raw = await agent.get_message()
                if '"role":"visitor"' in raw:
                    received["at"] = time.monotonic()
                    arrived.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain_visitor)
            nursery.start_soon(agent_reader)
            n = 0
            with trio.move_on_after(max(0.0, hard_stop - time.monotonic())):
                while time.monotonic() < stop_at:
                    arrived = trio.Event()
                    sent = time.monotonic()
                    n += 1
                    await vis.send_message(
                        f'{{"type":"text","id":"b{n}","content":"benchmark message {n}"}}')
                    await arrived.wait()
                    if sent >= start_at:
                        latencies.append(received["at"] - sent)
                        counters["messages"] += 1
            nursery.cancel_scope.cancel()


async def guarded_pair(port: int, token: str, start_at: float, stop_at: float,
                       latencies: list[float], counters: dict[str, int]) -> None:
    """One pair; a pair that fails is counted and reported, not fatal to the others."""
    try:
        await run_pair(port, token, start_at, stop_at, stop_at + 10, latencies, counters)
    except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError, KeyError,
            json.JSONDecodeError):
        counters["failed_pairs"] += 1


def load_generator(port: int, tokens: list[str], start_at: float, stop_at: float,
                   results: Any) -> None:
    latencies: list[float] = []
    counters = {"messages": 0, "failed_pairs": 0}
    cpu: list[float] = []

    async def measure_cpu() -> None:
        for moment in (start_at, stop_at):
            await trio.sleep(max(0.0, moment - time.monotonic()))
            cpu.append(time.process_time())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(measure_cpu)
            for token in tokens:
                nursery.start_soon(guarded_pair, port, token, start_at, stop_at, latencies,
                                   counters)

    trio.run(main)
    used = resource.getrusage(resource.RUSAGE_SELF)
    results.put({"latencies": latencies, "messages": counters["messages"],
                 "failed_pairs": counters["failed_pairs"],
                 "cpu_percent": (cpu[1] - cpu[0]) / (stop_at - start_at) * 100,
                 "maxrss": used.ru_maxrss * 1024})


# ---- driver ---------------------------------------------------------------------



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--group-commit-max", type=int, default=512)
    parser.add_argument("--transport", choices=("hypercorn", "native"), default=None,
                        help="the server's [server] transport (default: the server's default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (1 <= args.pairs <= 5000 and 0 < args.duration <= 600):
        parser.error("--pairs must be 1..5000 and --duration 0..600 s")

    with tempfile.TemporaryDirectory(prefix="cs-bench-") as tmp:
        folder = Path(tmp)
        port = free_port()
        config_path = write_server_config(folder, port, group_commit_max=args.group_commit_max,
                                          transport=args.transport)
        tokens = trio.run(make_agents, config_path, args.pairs)
        server_log = (folder / "server.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "customer_service", f"--config={config_path}", "serve"],
            cwd=folder, stdout=subprocess.DEVNULL, stderr=server_log)
        try:
            wait_healthy(server, port)

            setup = max(2.0, args.pairs / 200)
            start_at = time.monotonic() + setup + args.warmup
            stop_at = start_at + args.duration
            ctx = mp.get_context("spawn")
            results = ctx.Queue()
            chunks = [tokens[i::args.procs] for i in range(args.procs)]
            procs = [ctx.Process(target=load_generator,
                                 args=(port, chunk, start_at, stop_at, results))
                     for chunk in chunks if chunk]
            for p in procs:
                p.start()
            time.sleep(max(0.0, start_at - time.monotonic()))
            cpu0, _ = proc_times(server.pid)
            time.sleep(max(0.0, stop_at - time.monotonic()))
            cpu1, rss = proc_times(server.pid)
            collected = [results.get(timeout=60) for _ in procs]
            for p in procs:
                p.join(timeout=30)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            server_log.close()
            logged = (folder / "server.log").read_text().splitlines()
            if logged:
                distinct = sorted({line.split(" ", 3)[-1][:160] for line in logged})
                print(f"server log ({len(logged)} lines), distinct:", *distinct[:20], sep="\n  ")

    latencies = [x for r in collected for x in r["latencies"]]
    messages = sum(r["messages"] for r in collected)
    report = {
        "scenario": f"relay closed loop, {args.pairs} pairs",
        "messages": messages,
        "messages_per_s": messages / args.duration,
        "latency_ms": {
            "p50": percentile(latencies, 0.50) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "max": max(latencies, default=float("nan")) * 1000,
            "mean": (statistics.fmean(latencies) * 1000) if latencies else float("nan"),
        },
        "server": {"cpu_percent": (cpu1 - cpu0) / args.duration * 100, "rss_mb": rss / 2**20},
        "load_generators": [
            {"cpu_percent": r["cpu_percent"], "messages": r["messages"],
             "failed_pairs": r["failed_pairs"]} for r in collected],
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print(f"{report['scenario']}: {report['messages_per_s']:.0f} msgs/s delivered "
          f"({messages} in {args.duration:g} s)")
    lat = report["latency_ms"]
    print(f"  latency visitor→agent: p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  "
          f"max {lat['max']:.2f} ms  mean {lat['mean']:.2f} ms")
    print(f"  server: CPU {report['server']['cpu_percent']:.0f}%  "
          f"RSS {report['server']['rss_mb']:.1f} MB")
    for n, gen in enumerate(report["load_generators"]):
        print(f"  load generator {n}: CPU {gen['cpu_percent']:.0f}% while measured, "
              f"{gen['messages']} messages, {gen['failed_pairs']} pair(s) failed")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
