"""Chaos: relay traffic while MariaDB is locked and its connections are killed.

One server process on a scratch MariaDB database; ``--visitors`` visitors send texts at
``--rate`` msgs/s in all (open loop, each on its schedule) for ``--duration`` seconds.
Meanwhile, from a connection of this script's:

* from 25% of the run, ``LOCK TABLES messages WRITE, conversations WRITE`` for
  ``--lock`` seconds (every write and most reads wait on it);
* from 50% to 85% of the run, every ``--kill-every`` seconds, ``KILL`` every connection
  the server holds to its database (the pool must replace them).

A visitor whose text gets an error (``timeout``, ``unavailable``) or no answer within
5 s resends it with the same id, as the widget does, at most ``RESENDS`` times. At the
end the script prints messages sent, acked, errors by code, latency (send → ack) p50/p99
before, during and after the trouble, the server's RSS before and after, and what the
database holds: every acked message must be there exactly once (``acked == stored``,
no duplicate ``client_id``).

    .venv/bin/python bench/chaos.py --rate 1000 --duration 60

Only loopback addresses are used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pymysql
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import drop_database, new_database_name
from bench.common import (
    HOST,
    code_version,
    free_port,
    machine_speed,
    percentile,
    wait_healthy,
    write_server_config,
)
from bench.loadgen import Client, Closed

RESENDS = 5
MESSAGE_TIMEOUT = 3.0
"""The server's ``message_timeout`` (its default)."""
ANSWER_WAIT = 5.0
"""Seconds a visitor waits for an ack or an error before resending."""


def _mysql(database: str | None = None) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host=HOST, port=3306, user="root", password="", database=database,
                           connect_timeout=5, read_timeout=30, write_timeout=30,
                           autocommit=True)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


class Visitor:
    def __init__(self, n: int, client: Client) -> None:
        self.n = n
        self.client = client
        self.waiting: dict[str, tuple[float, float, int]] = {}
        """client id -> (first send, last send, resends) while unanswered."""


class Run:
    def __init__(self, args: argparse.Namespace, port: int, database: str, pid: int) -> None:
        self.args = args
        self.port = port
        self.database = database
        self.pid = pid
        self.start = 0.0
        self.sent = 0
        self.acked: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.resent = 0
        self.given_up: set[str] = set()
        self.latency: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        self.trouble = (args.duration * 0.25, args.duration * 0.85 + 3.0)
        self.kills = 0
        self.lock_held = 0.0
        self.rss: dict[str, float] = {}

    def phase(self, at: float) -> str:
        """Sent before the trouble (and too early to meet it), during it, or after it."""
        since = at - self.start
        if since < self.trouble[0] - MESSAGE_TIMEOUT:
            return "before"
        return "during" if since < self.trouble[1] else "after"

    def on_text(self, visitor: Visitor, raw: str) -> None:
        if not (raw.startswith('{"type":"ack"') or raw.startswith('{"type":"error"')):
            return
        frame = json.loads(raw)
        client_id = frame.get("id")
        if client_id not in visitor.waiting:
            return
        first, _last, resends = visitor.waiting[client_id]
        now = time.monotonic()
        if frame["type"] == "ack":
            del visitor.waiting[client_id]
            self.acked.add(client_id)
            self.latency[self.phase(first)].append(now - first)
        else:
            self.errors[frame.get("error", "?")] += 1
            visitor.waiting[client_id] = (first, 0.0, resends)  # resend at once

    async def send(self, visitor: Visitor, client_id: str) -> None:
        try:
            await visitor.client.send_text(json.dumps(
                {"type": "text", "id": client_id, "content": f"chaos {client_id}"}))
        except Closed:
            self.errors["socket closed"] += 1

    async def visitor_loop(self, n: int) -> None:
        client = await Client.connect(HOST, self.port, "/ws/visitor")
        await client.send_text('{"type":"hello"}')
        with trio.fail_after(10):
            welcome = json.loads(await client.receive_text())
        assert welcome["type"] == "welcome", welcome
        visitor = Visitor(n, client)
        client.on_text = lambda raw: self.on_text(visitor, raw)
        interval = self.args.visitors / self.args.rate
        end = self.start + self.args.duration
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run_reader)
            k = 0
            next_send = self.start + interval * n / self.args.visitors
            while True:
                now = time.monotonic()
                if now >= next_send and now < end:
                    k += 1
                    client_id = f"c{n}-{k}"
                    visitor.waiting[client_id] = (now, now, 0)
                    self.sent += 1
                    await self.send(visitor, client_id)
                    next_send += interval
                for client_id, (first, last, resends) in list(visitor.waiting.items()):
                    if now - last < ANSWER_WAIT:
                        continue
                    if resends >= RESENDS:
                        del visitor.waiting[client_id]
                        self.given_up.add(client_id)
                        continue
                    visitor.waiting[client_id] = (first, now, resends + 1)
                    self.resent += 1
                    await self.send(visitor, client_id)
                if now >= end and not visitor.waiting:
                    break
                if now > end + ANSWER_WAIT * (RESENDS + 2):
                    self.given_up.update(visitor.waiting)
                    break
                await trio.sleep(max(0.0, min(next_send, now + 0.05) - time.monotonic()))
            nursery.cancel_scope.cancel()
        await client.aclose()

    def lock(self) -> None:
        conn = _mysql(self.database)
        try:
            with conn.cursor() as cursor:
                cursor.execute("LOCK TABLES messages WRITE, conversations WRITE")
                began = time.monotonic()
                time.sleep(self.args.lock)
                cursor.execute("UNLOCK TABLES")
                self.lock_held = time.monotonic() - began
        finally:
            conn.close()

    def kill_connections(self) -> None:
        conn = _mysql()
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s "
                               "AND ID <> CONNECTION_ID()", (self.database,))
                for (thread_id,) in cursor.fetchall():
                    try:
                        cursor.execute(f"KILL {int(thread_id)}")
                        self.kills += 1
                    except pymysql.MySQLError:
                        pass  # it ended meanwhile
        finally:
            conn.close()

    async def chaos(self) -> None:
        await trio.sleep(max(0.0, self.start + 2.0 - time.monotonic()))
        self.rss["start"] = rss_mb(self.pid)
        await trio.sleep(max(0.0, self.start + self.args.duration * 0.25 - time.monotonic()))
        self.rss["before"] = rss_mb(self.pid)
        await trio.to_thread.run_sync(self.lock)
        kill_from = self.start + self.args.duration * 0.5
        kill_to = self.start + self.args.duration * 0.85
        await trio.sleep(max(0.0, kill_from - time.monotonic()))
        while time.monotonic() < kill_to:
            await trio.to_thread.run_sync(self.kill_connections)
            await trio.sleep(self.args.kill_every)

    async def main(self) -> None:
        self.start = time.monotonic() + 1.0
        with trio.fail_after(self.args.duration + ANSWER_WAIT * (RESENDS + 4) + 30):
            async with trio.open_nursery() as nursery:
                for n in range(self.args.visitors):
                    nursery.start_soon(self.visitor_loop, n)
                nursery.start_soon(self.chaos)
        await trio.sleep(2)
        self.rss["after"] = rss_mb(self.pid)

    def stored(self) -> tuple[int, int, set[str]]:
        conn = _mysql(self.database)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT client_id FROM messages WHERE sender_role = 'visitor'")
                ids = [row[0] for row in cursor.fetchall()]
        finally:
            conn.close()
        return len(ids), len(set(ids)), set(ids)


def report(run: Run, speed: float, root: Path) -> dict[str, Any]:
    rows, distinct, ids = run.stored()
    missing = run.acked - ids
    result = {
        "machine_reference_loop_s": speed, "code": code_version(root),
        "rate": run.args.rate, "visitors": run.args.visitors, "duration_s": run.args.duration,
        "sent": run.sent, "acked": len(run.acked), "resends": run.resent,
        "errors": dict(run.errors), "given_up": len(run.given_up),
        "stored_rows": rows, "stored_distinct": distinct,
        "acked_missing_from_store": len(missing),
        "given_up_but_stored": len(run.given_up & ids),
        "lock_held_s": round(run.lock_held, 2), "connections_killed": run.kills,
        "latency_ms": {phase: {"count": len(values),
                               "p50": round(percentile(values, 0.5) * 1000, 1),
                               "p99": round(percentile(values, 0.99) * 1000, 1),
                               "max": round(max(values, default=float("nan")) * 1000, 1)}
                       for phase, values in run.latency.items()},
        "rss_mb": {k: round(v, 1) for k, v in run.rss.items()},
    }
    ok = not missing and rows == distinct and rows == len(run.acked) + len(run.given_up & ids)
    print(f"machine: reference loop {speed:.3f} s; code: {result['code']}")
    print(f"chaos, {run.args.visitors} visitors, {run.args.rate:g} msgs/s offered for "
          f"{run.args.duration:g} s; MariaDB locked {run.lock_held:.1f} s at 25%, "
          f"{run.kills} server connections killed between 50% and 85%")
    print(f"  sent {run.sent}, acked {len(run.acked)}, resends {run.resent}, "
          f"errors {dict(run.errors) or 'none'}, given up {len(run.given_up)}")
    print(f"  stored: {rows} rows, {distinct} distinct ids; acked but missing: {len(missing)}; "
          f"given up but stored: {len(run.given_up & ids)} -> "
          f"{'every acked message stored once' if ok else 'MISMATCH'}")
    for phase, figures in result["latency_ms"].items():
        print(f"  send → ack {phase:6}: {figures['count']} acks, p50 {figures['p50']} ms, "
              f"p99 {figures['p99']} ms, max {figures['max']} ms")
    print(f"  server RSS: {result['rss_mb'].get('start')} MB 2 s into the run, "
          f"{result['rss_mb'].get('before')} MB when the trouble began, "
          f"{result['rss_mb'].get('after')} MB after it all")
    result["verdict"] = "ok" if ok else "mismatch"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="msgs/s offered in all")
    parser.add_argument("--visitors", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    parser.add_argument("--lock", type=float, default=5.0, help="seconds the tables stay locked")
    parser.add_argument("--kill-every", type=float, default=3.0,
                        help="seconds between killing the server's database connections")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (0 < args.rate <= 20000 and 1 <= args.visitors <= 2000
            and 10 <= args.duration <= 600 and 0 < args.lock <= 60 and args.kill_every >= 0.2):
        parser.error("bounds: 0 < rate <= 20000, 1 <= visitors <= 2000, 10 <= duration <= 600, "
                     "0 < lock <= 60, kill-every >= 0.2")
    root = Path(__file__).resolve().parent.parent
    speed = machine_speed()
    folder = Path(tempfile.mkdtemp(prefix="cs-bench-chaos-"))
    database = new_database_name()
    port = free_port()
    config = write_server_config(folder, port, mysql_database=database)
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "customer_service", f"--config={config}",
                               "serve"], cwd=folder, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_healthy(server, port)
        run = Run(args, port, database, server.pid)
        trio.run(run.main)
        result = report(run, speed, root)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()
        drop_database(database)
    print(f"  server log: {folder / 'server.log'}")


if __name__ == "__main__":
    main()
