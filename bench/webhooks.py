"""Webhooks: what the outbox adds to the message path, and the sender's throughput.

    .venv/bin/python bench/webhooks.py [--mysql] [--appends 3000] [--batch 1] [--events 5000]

1. The message path: ``append_messages`` calls (``--batch`` messages each, as the group
   committer makes them) on a fresh store, timed with no webhook and then with one webhook
   subscribed to ``message.created`` (rounds alternate, best round kept), in µs per call.
2. The sender: ``--events`` events queued at once (spread over 100 conversations, so the
   per-conversation order applies, and again with no conversation), then the server's
   ``WebhookSender`` delivering them to a receiver on loopback (``http.server`` in a process
   of its own, answering 200 at once), in deliveries per second.

No server process: the store and the sender as the server runs them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from bench.common import machine_speed, throwaway_store  # noqa: E402
from customer_service.config import WebhooksConfig  # noqa: E402
from customer_service.core.models import NewMessage, Role  # noqa: E402
from customer_service.core.webhooks import DeliveryState, WebhookEvent  # noqa: E402
from customer_service.server.webhook_sender import WebhookSender  # noqa: E402
from customer_service.storage.base import Store  # noqa: E402

ROUNDS = 5


RECEIVER = """
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
httpd.daemon_threads = True
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"""


@contextmanager
def receiver() -> Iterator[str]:
    """A receiver in a process of its own (so it takes no CPU from the sender's)."""
    process = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(10)


async def conversations(store: Store, count: int) -> list[int]:
    ids = []
    for n in range(count):
        visitor = await store.create_visitor(f"bench-{n}-{uuid.uuid4().hex}", "", "", "")
        ids.append((await store.current_conversation(visitor.id)).id)
    return ids


async def append_cost(store: Store, args: argparse.Namespace) -> None:
    ids = await conversations(store, 100)
    counter = 0

    async def round_us() -> float:
        nonlocal counter
        started = time.perf_counter()
        for _ in range(args.appends):
            batch = []
            for _ in range(args.batch):
                counter += 1
                batch.append(NewMessage(ids[counter % len(ids)], Role.VISITOR, None, "v",
                                        f"message {counter}", client_id=f"c{counter}"))
            await store.append_messages(batch)
        return (time.perf_counter() - started) / args.appends * 1e6

    hook = None
    best = {0: float("inf"), 1: float("inf")}
    for _ in range(ROUNDS):
        for webhooks in (0, 1):
            if webhooks and hook is None:
                hook = await store.add_webhook("http://127.0.0.1:9/h", ("message.created",), "s")
            if not webhooks and hook is not None:
                await store.remove_webhook(hook.id)
                hook = None
            best[webhooks] = min(best[webhooks], await round_us())
    print(f"append_messages, {args.batch} message(s) per call, best of {ROUNDS} rounds of "
          f"{args.appends}:")
    print(f"  0 webhooks: {best[0]:8.1f} µs per call")
    print(f"  1 webhook:  {best[1]:8.1f} µs per call  (+{best[1] - best[0]:.1f} µs, "
          f"+{(best[1] / best[0] - 1) * 100:.0f}%)")


async def sender_throughput(store: Store, args: argparse.Namespace, *, ordered: bool) -> None:
    ids = await conversations(store, 100) if ordered else []
    with receiver() as url:
        hook = await store.add_webhook(url, ("message.created",), "whsec_bench")
        events = [WebhookEvent("message.created", ids[n % len(ids)] if ordered else None,
                               {"n": n, "text": "x" * 100}) for n in range(args.events)]
        for start in range(0, len(events), 500):
            await store.enqueue_webhook_events(events[start:start + 500])
        config = WebhooksConfig(max_in_flight=args.in_flight, poll_interval=0.05)
        sender = WebhookSender(store, config, f"bench-{uuid.uuid4().hex[:6]}")
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await nursery.start(sender.serve)
            with trio.fail_after(600):
                while True:
                    rows = await store.list_webhook_deliveries(webhook_id=hook.id,
                                                                limit=args.events)
                    if all(r.state is DeliveryState.DELIVERED for r in rows):
                        break
                    await trio.sleep(1.0)
            took = time.perf_counter() - started
            nursery.cancel_scope.cancel()
        await store.remove_webhook(hook.id)
    what = "over 100 conversations (in order)" if ordered else "without conversation"
    print(f"sender, {args.events} events {what}, {args.in_flight} in flight: "
          f"{args.events / took:,.0f} deliveries/s ({took:.1f} s)")


async def main(args: argparse.Namespace) -> None:
    print(f"machine: reference loop {machine_speed():.3f} s (sum of 10**7 squares); "
          f"{'MariaDB' if args.mysql else 'SQLite'}; {datetime.now(UTC):%Y-%m-%d}")
    async with throwaway_store(mysql=args.mysql, prefix="cs-bench-webhooks-") as store:
        await store.migrate()
        await append_cost(store, args)
        await sender_throughput(store, args, ordered=False)
        await sender_throughput(store, args, ordered=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=3000, help="calls per timed round")
    parser.add_argument("--batch", type=int, default=1, help="messages per call")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--mysql", action="store_true",
                        help="MariaDB on 127.0.0.1:3306 (root, no password), a scratch database")
    parsed = parser.parse_args()
    if not (1 <= parsed.appends <= 100_000 and 1 <= parsed.batch <= 5000
            and 1 <= parsed.events <= 200_000 and 1 <= parsed.in_flight <= 1000):
        parser.error("--appends 1..100000, --batch 1..5000, --events 1..200000, "
                     "--in-flight 1..1000")
    trio.run(main, parsed)
