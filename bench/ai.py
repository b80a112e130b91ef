"""AI benchmark: N visitor conversations answered by the AI, closed loop, against the real server.

    .venv/bin/python bench/ai.py --conversations 100 --duration 10
    .venv/bin/python bench/ai.py --conversations 100 --history 200     # long sessions
    .venv/bin/python bench/ai.py --conversations 1000 --history 200 --duration 120  # soak
    .venv/bin/python bench/ai.py --conversations 100 --workers 2              # [server] workers
    .venv/bin/python bench/ai.py --conversations 10000 --history 200 --duration 30 --warmup 30

Starts the fake OpenAI-compatible upstream (``tests/fakes/openai_server.py``) and the
server as their own processes (SQLite on local disk, loopback only, ``[ai] mode =
"always"``), then drives the visitors from ``--procs`` load-generator processes. Each
visitor says hello; once all have, each sends a message, waits for the stored AI reply to
it (a ``message`` with ``sender.role == "ai"``), and sends the next (closed loop; the loops
start spread over the first half of the warm-up). No agents. A text answered ``timeout``
or ``unavailable`` is resent with the same id, as the protocol says; a visitor who waits
``--reply-timeout`` s for a reply gives up on it and sends the next text.

The upstream stamps the first token of every reply with its ``time.monotonic()``
(``--stamp-first-token``; CLOCK_MONOTONIC is system-wide on Linux), so the visitor can
measure the ADDED LATENCY: our first ``ai_delta`` at the visitor minus the moment the
upstream sent its first token. Also measured: visitor send → first ``ai_delta`` (time to
first delta), send → stored AI message (full reply) and send → ``ack`` (the text stored).

``--history N`` starts every conversation with N earlier messages (visitor and AI, in
turn), written straight into the database before the server starts; the visitors then
resume those conversations with their tokens (no replay), so every AI reply has a long
history behind it (the session-state cache's case).

Several server processes (``bench.scenarios.Servers``, as ``bench/scenarios.py`` runs
them: MariaDB on 127.0.0.1:3306, root without a password, in a scratch database
``cs_bench_<random>`` dropped at the end; a private ``redis-server`` on a free loopback
port; every process stopped by PID, workers included):

* ``--mysql``: MariaDB instead of SQLite (``--history`` is seeded into it through the
  store, as for SQLite); ``--mysql-pool-size`` sets ``[storage] mysql_pool_size``.
* ``--bus``: the Redis bus on, even for one process.
* ``--workers N``: one server command with ``[server] workers = N`` on one port (implies
  ``--mysql`` and ``--bus``); the kernel spreads the visitors' sockets over the workers.
* ``--instances N``: N server processes on their own ports, one database and one Redis
  (implies ``--mysql`` and ``--bus``); visitor n connects to instance n % N.

``--streams`` is ``[ai] max_concurrent_streams`` of each server process (default: the
conversations, at most 512; more replies wait for a slot). Each stream holds an upstream
connection beside the visitors' sockets: a stream per conversation made 10,000
conversations need ~20,300 open files in one process, over the container's hard limit
of 20,000. The bench raises its soft limit to the hard one (its children inherit it) and
exits early when the busiest process (a server that may hold every visitor, or a load
generator with its share) would not fit.

Prints replies/s completed, the server's CPU microseconds per reply (the CPU of every
server process over the window, from ``/proc/PID/stat``: a supervisor and its workers,
or every instance; MariaDB, Redis and the fake upstream beside it, not included), each
server process's CPU and RSS, those latencies, the server's CPU % and RSS sampled through the
measured window (``flat`` when every sample after the first tenth is within ±5% of their
median), the reference loop's speed (``bench.common.machine_speed``), each load
generator's CPU % and event-loop lag, and the fake upstream's CPU %, so it is visible
which process was the bottleneck; then any failures the visitors saw and the server's
AI/error counters and warnings. Writes the same as JSON with ``--json PATH``. Every loop
is bounded by ``--duration`` and a hard deadline; only 127.0.0.1 is targeted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import resource
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    HOST,
    machine_cpu_seconds,
    machine_speed,
    percentile,
    raise_fd_limit,
)

HANDSHAKES_AT_ONCE = 50  # per load generator: a burst of 500 connects overflows a listen backlog
GRACE = 15.0  # seconds after --duration the replies in flight may take to finish
RSS_TOLERANCE = 0.05  # "flat": every sample after the first tenth within ±5% of their median
DEFAULT_STREAMS_CAP = 512
"""``--streams`` default: at most this many replies streaming at once per server process.
Each stream holds an upstream connection beside the visitors' sockets: with one per
conversation, 10,000 conversations needed ~20,300 open files in one process (the
container's hard limit is 20,000)."""
SEED_BATCH = 2000  # history messages per append_messages call
UNAVAILABLE = "bench: the AI reply failed"
"""``[ai] unavailable_message``: the one system message that means a reply failed (the
greeting a new conversation gets is a system message too, and must not end a round)."""
AI_METRICS = ("cs_ai_context_cache_", "cs_ai_replies_total", "cs_frames_out_total",
              "cs_ai_tokens_total", "cs_ai_errors_total", "cs_ai_retries_total",
              "cs_error_frames_total", "cs_slow_consumers_closed_total", "cs_db_errors_total",
              "cs_ai_breaker_open", "cs_commit_batch_size_sum", "cs_commit_batch_size_count",
              "cs_ai_first_token_seconds_sum", "cs_ai_first_token_seconds_count")






def ai_section(base_url: str, streams: int, prewarm: int, cache_mb: int | None) -> str:
    """The servers' ``[ai]`` section (the rest is ``bench.common.write_server_config``'s)."""
    return f"""[ai]
enabled = true
base_url = "{base_url}"
api_key = "bench"
mode = "always"
max_concurrent_streams = {streams}
prewarm_connections = {prewarm}
http2 = false
connect_timeout = 10.0
first_token_timeout = 60.0
idle_timeout = 60.0
total_timeout = 120.0
unavailable_message = "{UNAVAILABLE}"
""" + ("" if cache_mb is None else f"context_cache_mb = {cache_mb}\n")


def seed_history(config_path: Path, conversations: int, history: int) -> list[str]:
    """Visitors, each with a conversation of ``history`` messages, straight in the database
    the servers will open (SQLite or MariaDB: through the store, before any server starts);
    returns their visitor tokens."""
    from customer_service import auth  # noqa: PLC0415
    from customer_service.config import load_config  # noqa: PLC0415
    from customer_service.core.models import NewMessage, Role  # noqa: PLC0415
    from customer_service.storage import open_store  # noqa: PLC0415

    async def seed() -> list[str]:
        config = load_config(config_path, environ={})
        tokens: list[str] = []
        async with open_store(config) as store:
            await store.migrate()
            batch: list[NewMessage] = []
            for _ in range(conversations):
                token = auth.new_token()
                visitor = await store.create_visitor(auth.token_hash(token), "", "", "")
                cid = (await store.current_conversation(visitor.id)).id
                tokens.append(token)
                for m in range(history):
                    role = Role.VISITOR if m % 2 == 0 else Role.AI
                    batch.append(NewMessage(cid, role, None, role.value,
                                            f"earlier {role.value} message {m}: about the order, "
                                            "the delivery date and the invoice address"))
                    if len(batch) >= SEED_BATCH:
                        await store.append_messages(batch)
                        batch = []
            if batch:
                await store.append_messages(batch)
        return tokens

    return trio.run(seed)


def rss_verdict(samples: list[float]) -> str:
    """``flat`` when every sample after the first tenth is within ±5% of their median."""
    steady = samples[len(samples) // 10:]
    if len(steady) < 3:
        return "too few samples"
    middle = statistics.median(steady)
    worst = max(abs(x - middle) / middle for x in steady)
    return (f"flat (within ±{worst * 100:.1f}% of {middle / 2**20:.1f} MB)"
            if worst <= RSS_TOLERANCE else
            f"NOT flat ({worst * 100:.1f}% off the median {middle / 2**20:.1f} MB)")


def start_upstream(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The fake upstream's CLI as a process; returns it and its base URL."""
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--host", HOST, "--port", "0",
         "--tokens", str(args.tokens), "--chunk-delay", str(args.chunk_delay),
         "--first-token-delay", str(args.first_token_delay), "--stamp-first-token"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("wb"))
    assert upstream.stdout is not None
    line = b""
    deadline = time.monotonic() + 20
    with selectors.DefaultSelector() as selector:
        selector.register(upstream.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or upstream.poll() is not None:
                return upstream, ""
            if selector.select(timeout=min(left, 0.5)):
                chunk = os.read(upstream.stdout.fileno(), 4096)
                if not chunk:
                    return upstream, ""
                line += chunk
    found = re.search(rb"listening on (http://127\.0\.0\.1:\d+/v1)", line)
    return upstream, found.group(1).decode() if found else ""


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# ---- load generator (runs in child processes) --------------------------------

class Stats:
    """One load generator's samples and counters."""

    def __init__(self) -> None:
        self.added: list[float] = []  # first ai_delta here - first token sent upstream
        self.first_delta: list[float] = []  # send text -> first ai_delta
        self.full: list[float] = []  # send text -> stored AI message
        self.ack: list[float] = []  # send text -> its ack (stored)
        self.replies = 0  # AI messages stored within the measured window
        self.problems: Counter[str] = Counter()  # failures seen by the visitors

    def problem(self, what: str, in_window: bool) -> None:
        self.problems[what + ("" if in_window else " (outside the window)")] += 1


async def run_visitor(port: int, n: int, times: tuple[float, float, float], patience: float,
                      handshakes: trio.CapacityLimiter, stats: Stats, hello: str,
                      think: float) -> None:
    """Connect and say hello now; start the closed loop in the first half of the warm-up.

    Every visitor is in before any loop starts (new sessions then do not compete with AI
    replies), and the starts are spread so the visitors do not move in lockstep waves.
    """
    go_at, start_at, stop_at = times
    loop_at = go_at + (start_at - go_at) / 2 * random.Random(n).random()
    phase = "hello"
    try:
        with trio.move_on_after(max(0.0, stop_at + GRACE - time.monotonic())):
            async with AsyncExitStack() as stack:
                async with handshakes:
                    ws = await stack.enter_async_context(open_websocket_url(
                        f"ws://{HOST}:{port}/ws/visitor", connect_timeout=20, disconnect_timeout=5))
                    await ws.send_message(hello)
                    welcome = json.loads(await ws.get_message())
                if welcome.get("type") != "welcome":
                    stats.problem(f"hello answered {welcome.get('type')} {welcome.get('error')}",
                                  time.monotonic() >= start_at)
                    return
                if time.monotonic() > go_at:
                    stats.problem("welcome came after the loop had started", time.monotonic() >= start_at)
                await trio.sleep(max(0.0, loop_at - time.monotonic()))
                phase = "loop"
                await visitor_loop(ws, n, start_at, stop_at, patience, stats, think)
    except ConnectionClosed as exc:
        reason = exc.reason
        stats.problem(f"socket closed in {phase}: {reason.code if reason else '?'} "
                      f"{reason.reason if reason else ''}", time.monotonic() >= start_at)
    except Exception as exc:
        stats.problem(f"{phase}: {type(exc).__name__}: {exc}"[:120], time.monotonic() >= start_at)


class Round:
    """One text and the AI reply to it, as the visitor saw them."""

    __slots__ = ("acked_at", "added", "failed", "first_at", "replied", "resent", "stream_id")

    def __init__(self) -> None:
        self.acked_at = 0.0
        self.first_at = 0.0  # first ai_delta
        self.added: float | None = None  # first ai_delta here - upstream's stamp
        self.replied = False  # the stored AI message arrived
        self.failed: str | None = None
        self.resent = 0
        self.stream_id = ""


def reply_failed(message: dict[str, Any]) -> bool:
    """Whether a stored ``message`` frame says the AI reply failed: the system message
    ``[ai] unavailable_message`` (``UNAVAILABLE`` here). Other system messages, such as the
    greeting a new conversation gets, are not about the reply."""
    return message["sender"]["role"] == "system" and message["content"] == UNAVAILABLE


def think_pause(think: float, rng: random.Random) -> float:
    """A visitor's pause after a reply: uniform in 0.5 to 1.5 times ``think`` (mean ``think``),
    so the visitors do not fall into step."""
    return think * (0.5 + rng.random())


async def await_reply(ws: Any, frame_id: str, text: str, round_: Round, stale: set[str],
                      stats: Stats, measured: bool) -> None:
    """Read frames until the stored AI reply, a failure, or a cancellation.

    ``stale``: streams of earlier rounds that the visitor stopped waiting for; ignored.
    """
    while True:
        raw = await ws.get_message()
        now = time.monotonic()
        if raw.startswith('{"type":"ai_delta"'):
            if not round_.first_at:  # the first delta of this reply: it carries the upstream's stamp
                frame = json.loads(raw)
                if frame["stream_id"] in stale:
                    continue
                round_.first_at = now
                round_.stream_id = frame["stream_id"]
                delta = frame["delta"]
                if delta.startswith("@"):
                    round_.added = now - float(delta[1:].split(" ", 1)[0])
            continue
        if raw.startswith('{"type":"message"'):
            frame = json.loads(raw)
            role = frame["sender"]["role"]
            if role == "ai":
                if frame.get("stream_id") in stale:
                    continue
                if round_.stream_id and frame.get("stream_id") != round_.stream_id:
                    # Rounds out of step: this round's first delta was another reply's.
                    stats.problem("stored AI reply of another stream than the round's first delta",
                                  measured)
                round_.replied = True
                return
            if reply_failed(frame):
                round_.failed = "system message: " + frame["content"][:60]
                return
            continue  # our own message, the greeting
        if raw.startswith('{"type":"ack"'):
            if not round_.acked_at:
                round_.acked_at = now
                if round_.resent:
                    stats.problem("resent text acked", measured)
            continue
        frame = json.loads(raw)
        if frame.get("type") == "availability":  # whether agents are online: not for us
            continue
        if frame.get("type") != "error":
            stats.problem(f"unexpected {frame.get('type')} frame", measured)
            continue
        code = frame.get("error")
        if frame.get("id") != frame_id:
            stats.problem(f"error {code} for another frame", measured)
        elif code == "busy":  # admission control: resend it, same id, after retry_after
            stats.problem("text answered busy; resent after its retry_after", measured)
            round_.resent += 1
            await trio.sleep(float(frame.get("retry_after") or 1.0))
            await ws.send_message(text)
        elif code in ("timeout", "unavailable"):  # the protocol says: resend it, same id
            stats.problem(f"text answered {code}; resent with the same id", measured)
            round_.resent += 1
            await ws.send_message(text)
        else:
            round_.failed = f"text answered {code}: {frame.get('message', '')[:60]}"
            return


async def visitor_loop(ws: Any, n: int, start_at: float, stop_at: float, patience: float,
                       stats: Stats, think: float) -> None:
    """Closed loop: send a text, wait for its stored AI reply (at most ``patience`` s), pause
    ``think`` s on average (0: none), repeat."""
    rounds = 0
    stale: set[str] = set()
    pauses = random.Random(-n - 1)
    while time.monotonic() < stop_at:
        if rounds and think > 0:
            await trio.sleep(min(think_pause(think, pauses), max(0.0, stop_at - time.monotonic())))
            if time.monotonic() >= stop_at:
                break
        rounds += 1
        frame_id = f"v{n}-{rounds}"
        text = f'{{"type":"text","id":"{frame_id}","content":"benchmark question {rounds}"}}'
        sent = time.monotonic()
        measured = sent >= start_at
        round_ = Round()
        await ws.send_message(text)
        try:
            with trio.move_on_after(patience):
                await await_reply(ws, frame_id, text, round_, stale, stats, measured)
        except trio.Cancelled:  # the hard stop, with this reply still missing
            stats.problem(f"no AI reply by the hard stop{describe(round_)}", measured)
            raise
        done = time.monotonic()
        if round_.failed:
            stats.problem(round_.failed, measured)
            await trio.sleep(0.1)
            continue
        if not round_.replied:
            stats.problem(f"no AI reply within {patience:g} s (moved on){describe(round_)}", measured)
            if round_.stream_id:
                stale.add(round_.stream_id)
            continue
        if start_at <= done < stop_at:
            stats.replies += 1
        if measured:
            stats.full.append(done - sent)
            if round_.acked_at:
                stats.ack.append(round_.acked_at - sent)
            if round_.first_at:
                stats.first_delta.append(round_.first_at - sent)
            if round_.added is not None:
                stats.added.append(round_.added)
            else:
                stats.problem("reply without a stamped first delta", True)


def describe(round_: Round) -> str:
    return ((", text resent" if round_.resent else "")
            + (", text acked" if round_.acked_at else ", text not acked")
            + (", after its first delta" if round_.first_at else ""))


def load_generator(ports: list[int], visitors: range, times: tuple[float, float, float],
                   patience: float, results: Any, tokens: list[str], history: int,
                   think: float) -> None:
    """``times``: (go_at, start_at, stop_at), all ``time.monotonic()`` (not trio's clock).
    Visitor ``n`` connects to ``ports[n % len(ports)]`` (one port per server instance)."""
    _, start_at, stop_at = times
    stats = Stats()
    cpu: list[float] = []
    lags: list[float] = []

    async def measure_cpu() -> None:
        for moment in (start_at, stop_at):
            await trio.sleep(max(0.0, moment - time.monotonic()))
            cpu.append(time.process_time())

    async def measure_lag() -> None:
        """How late a 10 ms sleep wakes up: this process's own scheduling delay."""
        await trio.sleep(max(0.0, start_at - time.monotonic()))
        while time.monotonic() < stop_at:
            before = time.monotonic()
            await trio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    async def main() -> None:
        handshakes = trio.CapacityLimiter(HANDSHAKES_AT_ONCE)
        with trio.move_on_after(max(0.0, stop_at + GRACE + 2 - time.monotonic())):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(measure_cpu)
                nursery.start_soon(measure_lag)
                for n in visitors:
                    hello = (json.dumps({"type": "hello", "visitor_token": tokens[n],
                                         "last_seq": history}) if tokens else '{"type":"hello"}')
                    nursery.start_soon(run_visitor, ports[n % len(ports)], n, times, patience,
                                       handshakes, stats, hello, think)

    trio.run(main)
    results.put({
        "added": stats.added, "first_delta": stats.first_delta, "full": stats.full, "ack": stats.ack,
        "replies": stats.replies, "problems": dict(stats.problems),
        "cpu_percent": (cpu[1] - cpu[0]) / (stop_at - start_at) * 100 if len(cpu) == 2 else float("nan"),
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
        "visitors": len(visitors),
        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    })


# ---- driver ---------------------------------------------------------------------



def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.50) * 1000,
        "p99": percentile(values, 0.99) * 1000,
        "max": max(values, default=float("nan")) * 1000,
        "mean": (statistics.fmean(values) * 1000) if values else float("nan"),
        "samples": len(values),
    }




def log_digest(path: Path, limit: int = 8) -> dict[str, Any]:
    """How many lines a process logged, and its first distinct ones (numbers masked)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return {"lines": 0, "first": []}
    distinct: dict[str, str] = {}
    for line in lines:
        key = re.sub(r"\d+", "N", line.split("] ", 1)[-1])[:100]
        distinct.setdefault(key, line[:200])
    return {"lines": len(lines), "first": list(distinct.values())[:limit]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before measuring (default: 3, or conversations/100)")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--tokens", type=int, default=20, help="upstream tokens per reply")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="upstream seconds between tokens")
    parser.add_argument("--first-token-delay", type=float, default=0.0,
                        help="upstream seconds before the first token")
    parser.add_argument("--streams", type=int, default=None,
                        help="[ai] max_concurrent_streams of each server process (default: "
                             f"conversations, at most {DEFAULT_STREAMS_CAP})")
    parser.add_argument("--prewarm", type=int, default=None,
                        help="[ai] prewarm_connections (default: the streams, at most 64)")
    parser.add_argument("--reply-timeout", type=float, default=15.0,
                        help="seconds a visitor waits for an AI reply before sending the next text")
    parser.add_argument("--history", type=int, default=0,
                        help="earlier messages each conversation starts with (long sessions: 200)")
    parser.add_argument("--cache-mb", type=int, default=None,
                        help="[ai] context_cache_mb (default: the server's; 0 turns the cache off)")
    parser.add_argument("--think-time", type=float, default=0.0,
                        help="mean seconds a visitor pauses after a reply (0..60; 0: closed loop)")
    parser.add_argument("--sqlite-cache-mb", type=int, default=None,
                        help="[storage] sqlite_cache_mb (default: the server's, 64 MiB per connection)")
    parser.add_argument("--group-commit-max", type=int, default=512)
    parser.add_argument("--mysql", action="store_true",
                        help="MariaDB on 127.0.0.1:3306 (root) in a scratch database dropped after")
    parser.add_argument("--bus", action="store_true",
                        help="the Redis bus on (a private redis-server), even for one process")
    parser.add_argument("--mysql-pool-size", type=int, default=None,
                        help="[storage] mysql_pool_size of each server process (default: the server's)")
    parser.add_argument("--workers", type=int, default=1,
                        help="one server command with [server] workers = N on one port (implies "
                             "--mysql --bus); the kernel spreads the visitors over the workers")
    parser.add_argument("--instances", type=int, default=1,
                        help="N server processes on separate ports, one database and one Redis "
                             "(implies --mysql --bus); visitor n on instance n %% N")
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs and folder")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not (1 <= args.conversations <= 10000 and 0 < args.duration <= 600 and 1 <= args.procs <= 64):
        parser.error("--conversations must be 1..10000, --duration 0..600 s, --procs 1..64")
    if not (0 <= args.history <= 10000) or (args.cache_mb is not None and args.cache_mb < 0):
        parser.error("--history must be 0..10000 and --cache-mb >= 0")
    if args.sqlite_cache_mb is not None and not 1 <= args.sqlite_cache_mb <= 65536:
        parser.error("--sqlite-cache-mb must be 1..65536")
    if not 0 <= args.think_time <= 60:
        parser.error("--think-time must be 0..60 s")
    if not (1 <= args.tokens <= 1000 and args.chunk_delay >= 0 and args.first_token_delay >= 0
            and args.reply_timeout > 0):
        parser.error("--tokens must be 1..1000, the delays >= 0 and --reply-timeout > 0")
    if not (1 <= args.instances <= 8 and 1 <= args.workers <= 8):
        parser.error("--instances and --workers must be 1..8")
    if args.instances > 1 and args.workers > 1:
        parser.error("--instances and --workers do not combine: choose one")
    if args.instances > 1 or args.workers > 1:
        args.mysql = args.bus = True
    if args.mysql_pool_size is not None and not (args.mysql and 1 <= args.mysql_pool_size <= 64):
        parser.error("--mysql-pool-size must be 1..64, with --mysql (or --instances, --workers)")
    if args.mysql and args.sqlite_cache_mb:
        parser.error("--sqlite-cache-mb is for SQLite; not with --mysql, --instances or --workers")
    if args.streams is None:
        args.streams = min(args.conversations, DEFAULT_STREAMS_CAP)
    if not 1 <= args.streams <= 10000:
        parser.error("--streams must be 1..10000")
    if args.prewarm is None:
        args.prewarm = min(args.streams, 64)
    if not 0 <= args.prewarm <= args.streams:
        parser.error("--prewarm must be 0..--streams")
    if args.warmup is None:  # long enough for several replies per conversation
        args.warmup = max(3.0, args.conversations / 100)
    args.transport = None  # the server's default ([server] transport), for bench.scenarios.Servers
    return args


def fds_needed(args: argparse.Namespace) -> int:
    """Open files the busiest process may need: a server process holds a socket per visitor
    (all of them may land on one worker) plus one upstream connection per stream and its
    log, database and listening files; a load generator one socket per visitor of its share."""
    server = args.conversations + args.streams + args.prewarm + 200
    generator = -(-args.conversations // min(args.procs, args.conversations)) + 100
    return int(max(server, generator))


def main() -> None:
    # Imported here: bench.scenarios imports this module (log_digest).
    from bench.scenarios import (  # noqa: PLC0415
        Servers,
        add_up,
        cpu_report,
        cpu_seconds,
        rss_bytes,
        terminate_all,
    )

    args = parse_args()
    raise_fd_limit(fds_needed(args))  # the servers and load generators inherit it
    reference = machine_speed()

    procs: list[Any] = []
    collected: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cs-bench-ai-") as tmp:
        folder = Path(tmp)
        upstream, base_url = start_upstream(args, folder / "upstream.log")
        try:
            if not base_url:
                raise SystemExit("the fake upstream did not start: "
                                 + (folder / "upstream.log").read_text(errors="replace")[-2000:])
            seeded = time.monotonic()
            servers = Servers(
                args, 0, extra=ai_section(base_url, args.streams, args.prewarm, args.cache_mb),
                seed=((lambda config: seed_history(config, args.conversations, args.history))
                      if args.history else None))
            seed_seconds = time.monotonic() - seeded
            tokens = servers.tokens
            failed = True
            try:
                servers.wait_ready(timeout=60 + args.conversations / 100)
                measured = servers.measured()
                services = servers.services()
                server_pids = [pid for _, pid in measured]
                # Every visitor connects and says hello before go_at; the loops start after it.
                go_at = time.monotonic() + max(3.0, args.conversations / 200)
                start_at = go_at + args.warmup
                stop_at = start_at + args.duration
                ctx = mp.get_context("spawn")
                results = ctx.Queue()
                procs = [ctx.Process(target=load_generator,
                                     args=(servers.ports, range(i, args.conversations, args.procs),
                                           (go_at, start_at, stop_at), args.reply_timeout, results,
                                           tokens, args.history, args.think_time))
                         for i in range(min(args.procs, args.conversations))]
                for p in procs:
                    p.start()
                time.sleep(max(0.0, start_at - time.monotonic()))
                watched = server_pids + [pid for _, pid in services] + [upstream.pid]
                t0 = time.monotonic()
                busy0 = machine_cpu_seconds()
                cpu0 = [cpu_seconds(pid) for pid in watched]
                every = max(1.0, args.duration / 30)  # RSS samples through the window
                rss_samples: list[float] = []
                while time.monotonic() < stop_at - every / 2:
                    rss_samples.append(float(rss_bytes(server_pids)))
                    time.sleep(max(0.0, min(every, stop_at - time.monotonic())))
                time.sleep(max(0.0, stop_at - time.monotonic()))
                cpu1 = [cpu_seconds(pid) for pid in watched]
                busy1 = machine_cpu_seconds()
                t1 = time.monotonic()
                rss_each = [rss_bytes([pid]) for pid in watched]
                rss_samples.append(float(sum(rss_each[:len(server_pids)])))
                for _ in procs:
                    collected.append(results.get(timeout=max(1.0, stop_at + GRACE + 30 - time.monotonic())))
                for p in procs:
                    p.join(timeout=30)
                scrapes = servers.scrape(AI_METRICS)
                servers.check_alive(measured)
                failed = False
            finally:
                terminate_all(procs)
                servers.close(failed)
        finally:
            stop(upstream)
            upstream_log = log_digest(folder / "upstream.log")

    def merged(key: str) -> list[float]:
        return [x for r in collected for x in r[key]]

    window = t1 - t0
    n = len(server_pids)
    processes = cpu_report(measured, cpu0[:n], cpu1[:n], rss_each[:n], window)
    beside = cpu_report([*services, ("fake upstream", upstream.pid)], cpu0[n:], cpu1[n:],
                        rss_each[n:], window)
    server_cpu_s = sum(p["cpu_s"] for p in processes)
    replies = sum(r["replies"] for r in collected)
    per_rate = replies / args.duration
    problems: Counter[str] = Counter()
    for r in collected:
        problems.update(r["problems"])
    counters = {name: value for name, value in add_up(list(scrapes.values())).items() if value}
    report = {
        "scenario": (f"AI closed loop{f' (think {args.think_time:g} s)' if args.think_time else ''}, "
                     f"{args.conversations} conversations with {args.history} "
                     f"earlier messages each, upstream {args.tokens} tokens "
                     f"(first after {args.first_token_delay:g} s, then every {args.chunk_delay:g} s), "
                     f"max_concurrent_streams {args.streams}"
                     + ("" if args.cache_mb is None else f", context_cache_mb {args.cache_mb}")
                     + ("" if args.sqlite_cache_mb is None
                        else f", sqlite_cache_mb {args.sqlite_cache_mb}")),
        "deployment": (servers.note if args.instances == 1 else  # no agents here: say so
                       f"{args.instances} instances, visitor n on instance n % {args.instances}; "
                       + servers.note[servers.note.index("MariaDB"):]),
        "replies": replies,
        "replies_per_s": per_rate,
        # The CPU rate over [t0, t1] (all server processes: a supervisor and its workers)
        # over the reply rate in the measured window (they differ by the ms /proc takes).
        "server_cpu_us_per_reply": (server_cpu_s / window / per_rate * 1e6 if replies
                                    else float("nan")),
        "history_seeded_s": seed_seconds,
        "reference_loop_s": reference,
        "added_latency_ms": summary_ms(merged("added")),
        "time_to_first_delta_ms": summary_ms(merged("first_delta")),
        "full_reply_ms": summary_ms(merged("full")),
        "text_ack_ms": summary_ms(merged("ack")),
        "server": {"cpu_percent": server_cpu_s / window * 100,
                   "rss_mb": sum(p["rss_mb"] for p in processes), "processes": processes,
                   "rss_samples_mb": [round(x / 2**20, 1) for x in rss_samples],
                   "rss_verdict": rss_verdict(rss_samples)},
        "beside_servers": beside,
        "machine_busy_percent": (busy1 - busy0) / window * 100,
        "load_generators": [
            {"cpu_percent": r["cpu_percent"], "replies": r["replies"], "visitors": r["visitors"],
             "loop_lag_p99_ms": r["lag_p99_ms"]} for r in collected],
        "problems": dict(problems),
        "server_counters": counters,
        "metrics_processes": f"{len(scrapes)} of {len(servers.ports) * servers.workers}",
        "server_log": servers.log_digest,
        "upstream_log": upstream_log,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print_report(report, args.duration)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def print_report(report: dict[str, Any], duration: float) -> None:
    print(f"{report['scenario']}: {report['replies_per_s']:.0f} replies/s completed "
          f"({report['replies']} in {duration:g} s)")
    print(f"  server CPU per reply: {report['server_cpu_us_per_reply']:.0f} µs   "
          f"(reference loop {report['reference_loop_s']:.3f} s; history seeded in "
          f"{report['history_seeded_s']:.1f} s)")
    for key, label in (("added_latency_ms", "added latency (first ai_delta - upstream first token)"),
                       ("time_to_first_delta_ms", "time to first delta (send → first ai_delta)"),
                       ("full_reply_ms", "full reply (send → stored AI message)"),
                       ("text_ack_ms", "visitor text acked (send → ack)")):
        lat = report[key]
        print(f"  {label}: p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  max {lat['max']:.2f} ms  "
              f"mean {lat['mean']:.2f} ms  ({lat['samples']} replies)")
    print(f"  deployment: {report['deployment']}")
    server = report["server"]
    print(f"  server: CPU {server['cpu_percent']:.0f}%  RSS {server['rss_mb']:.1f} MB"
          + (" (all processes)" if len(server["processes"]) > 1 else ""))
    if len(server["processes"]) > 1:
        for proc in server["processes"]:
            print(f"    {proc['name']} (pid {proc['pid']}): CPU {proc['cpu_percent']:.0f}%  "
                  f"RSS {proc['rss_mb']:.1f} MB")
    samples = server["rss_samples_mb"]
    print(f"  server RSS: {server['rss_verdict']}; {len(samples)} samples (MB): "
          + " ".join(f"{x:g}" for x in samples))
    for proc in report["beside_servers"]:
        print(f"  {proc['name']} (not in the server's figure): CPU {proc['cpu_percent']:.0f}%  "
              f"RSS {proc['rss_mb']:.1f} MB")
    print(f"  the machine's cores were busy {report['machine_busy_percent']:.0f}% "
          f"(of {100 * (report['machine']['cpus'] or 1)}%) while measured")
    for n, gen in enumerate(report["load_generators"]):
        print(f"  load generator {n}: CPU {gen['cpu_percent']:.0f}% while measured, "
              f"{gen['visitors']} visitors, {gen['replies']} replies, "
              f"loop lag p99 {gen['loop_lag_p99_ms']:.1f} ms")
    print(f"  machine: {report['machine']['cpus']} CPUs, Python {report['machine']['python']}")
    if report["problems"]:
        print("  PROBLEMS seen by visitors:")
        for what, count in sorted(report["problems"].items(), key=lambda item: -item[1]):
            print(f"    {count:6d}  {what}")
    counters = report["server_counters"]
    commits = counters.get("cs_commit_batch_size_count")
    requests = counters.get("cs_ai_first_token_seconds_count")
    if commits and requests:
        # Since the server started (warm-up included): how bursty the commits were, and the
        # server's own view of request -> first token (the upstream's time included).
        batch = counters["cs_commit_batch_size_sum"] / commits
        first = counters["cs_ai_first_token_seconds_sum"] / requests * 1000
        print(f"  server since start: {batch:.1f} messages per group commit on average; "
              f"AI request -> first token mean {first:.2f} ms")
    if report["server_counters"]:
        print(f"  server counters since start ({report['metrics_processes']} processes): " + ", ".join(
            f"{name} {value:g}" for name, value in report["server_counters"].items()))
    for name in ("server_log", "upstream_log"):
        digest = report[name]
        if digest["lines"]:
            print(f"  {name.replace('_', ' ')}: {digest['lines']} lines, first distinct:")
            for line in digest["first"]:
                print(f"    {line}")


if __name__ == "__main__":
    main()
