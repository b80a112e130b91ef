"""The message store alone, as its tables grow: group commits of a fixed size, timed.

    .venv/bin/python bench/store.py --messages 600000 --batch 500 --conversations 1000

Appends batches the way the group committer does (one ``append_messages`` call per batch,
messages spread over the conversations, every message with a client id so the dedupe index
grows too) to a fresh SQLite file, or to MariaDB with ``--mysql`` (a scratch database that
is dropped afterwards), and prints msgs/s and the time per batch at each tenth of the run.
No server, no sockets: this is what one commit costs the database thread.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from bench.common import machine_speed, throwaway_store  # noqa: E402
from customer_service.core.models import NewMessage, Role  # noqa: E402
from customer_service.storage.base import Store  # noqa: E402


async def fill(store: Store, args: argparse.Namespace) -> None:
    await store.migrate()
    conversations = []
    for n in range(args.conversations):
        visitor = await store.create_visitor(f"bench-{n}-{uuid.uuid4().hex}", "", "", "")
        conversations.append((await store.current_conversation(visitor.id)).id)
    batches = args.messages // args.batch
    report_every = max(1, batches // 10)
    started = window_start = time.perf_counter()
    window_batches = 0
    worst = 0.0
    print(f"{'stored':>9}  {'msgs/s (window)':>15}  {'msgs/s (overall)':>16}  {'worst batch':>11}")
    for b in range(batches):
        batch = [NewMessage(conversations[(b * args.batch + j) % len(conversations)], Role.VISITOR,
                            None, "v", f"message {b}-{j}", client_id=uuid.uuid4().hex[:16])
                 for j in range(args.batch)]
        before = time.perf_counter()
        await store.append_messages(batch)
        worst = max(worst, time.perf_counter() - before)
        window_batches += 1
        if (b + 1) % report_every == 0 or b + 1 == batches:
            now = time.perf_counter()
            stored = (b + 1) * args.batch
            print(f"{stored:>9,}  {window_batches * args.batch / (now - window_start):>15,.0f}  "
                  f"{stored / (now - started):>16,.0f}  {worst * 1000:>8.1f} ms", flush=True)
            window_start, window_batches, worst = now, 0, 0.0


async def main(args: argparse.Namespace) -> None:
    print(f"machine: reference loop {machine_speed():.3f} s (sum of 10**7 squares)")
    async with throwaway_store(mysql=args.mysql, prefix="cs-bench-store-", cache_mb=args.cache_mb) as store:
        await fill(store, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600_000)
    parser.add_argument("--batch", type=int, default=500, help="messages per commit")
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--cache-mb", type=int, default=64, help="SQLite page cache")
    parser.add_argument("--mysql", action="store_true",
                        help="MariaDB on 127.0.0.1:3306 (root, no password), a scratch database")
    parsed = parser.parse_args()
    if not (1 <= parsed.batch <= 5000 and parsed.batch <= parsed.messages <= 5_000_000
            and 1 <= parsed.conversations <= 100_000):
        parser.error("--batch 1..5000, --messages batch..5,000,000, --conversations 1..100,000")
    trio.run(main, parsed)
