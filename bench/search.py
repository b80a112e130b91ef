"""Full-text search latency on a table of messages: SQLite FTS5 (trigram) or MariaDB FULLTEXT.

    .venv/bin/python bench/search.py --messages 100000
    .venv/bin/python bench/search.py --messages 100000 --mysql

Stores ``--messages`` messages (English and Chinese sentences from small word lists, spread
over ``--conversations`` conversations with named visitors) in a fresh SQLite file, or in
MariaDB with ``--mysql`` (a scratch database, dropped afterwards), then runs each query
below ``--repeat`` times through ``Store.search`` (limit 20) and prints the median and
the worst time, with the hits a query has in all. Also times indexing the stored
messages from scratch (the migration's backfill) on MariaDB, and the SQLite rebuild.
No server, no sockets: this is what one search costs the database thread.
"""

from __future__ import annotations

import argparse
import random
import statistics
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
from customer_service.core.search import parse_query  # noqa: E402
from customer_service.storage._sql import Tx  # noqa: E402
from customer_service.storage._sql_search import BACKFILL_BATCH  # noqa: E402
from customer_service.storage.base import Store  # noqa: E402

ENGLISH = ["order", "refund", "parcel", "kettle", "invoice", "delivery", "broken", "address",
           "account", "password", "payment", "card", "shipping", "return", "discount", "price",
           "question", "thanks", "hello", "please"]
CHINESE = ["退款", "订单", "快递", "发票", "地址", "账号", "密码", "付款", "优惠", "价格",
           "你好", "谢谢", "请问", "什么", "时候", "可以", "已经", "问题", "收到", "商品"]
RARE = "zucchini"
NAMES = ["王芳", "李娜", "张伟", "Vera", "Max", "Olga", "Ben", "Ann"]
QUERIES = [
    ("English, common word", "refund"),
    ("English, two words", "refund kettle"),
    ("English, rare word", RARE),
    ("English, no hit", "xylophone"),
    ("English, 2 letters (short)", "zz"),
    ("Chinese, 2 characters", "退款"),
    ("Chinese, 2 characters, rare", "熊猫"),
    ("Chinese, 4 characters", "退款订单"),
    ("Chinese, 4 characters, no hit", "熊猫退款"),
    ("visitor name (Chinese)", "张伟"),
    ("visitor email", "ann7@example.com"),
]


def sentence(rng: random.Random, n: int) -> str:
    if n % 1000 == 0:
        return f"the {RARE} arrived, 熊猫 {n}"
    if n % 2:
        return " ".join(rng.choice(ENGLISH) for _ in range(rng.randint(4, 14))) + "."
    return "".join(rng.choice(CHINESE) for _ in range(rng.randint(3, 12))) + "。"


async def fill(store: Store, args: argparse.Namespace) -> None:
    rng = random.Random(12)
    conversations = []
    for n in range(args.conversations):
        name = NAMES[n % len(NAMES)]
        visitor = await store.create_visitor(f"bench-{n}-{uuid.uuid4().hex}", name,
                                             f"{name.lower()}{n}@example.com", "")
        conversations.append((await store.current_conversation(visitor.id)).id)
    started = time.perf_counter()
    for b in range(0, args.messages, 500):
        await store.append_messages([
            NewMessage(conversations[(b + j) % len(conversations)], Role.VISITOR, None, "v",
                       sentence(rng, b + j)) for j in range(min(500, args.messages - b))])
    elapsed = time.perf_counter() - started
    print(f"stored {args.messages:,} messages in {elapsed:.1f} s (search index written as"
          f" they are: {args.messages / elapsed:,.0f} msgs/s)")


async def reindex(store: Store, mysql: bool) -> None:
    """Index everything again from scratch, as migration 0012 does for old rows."""
    def reset(tx: Tx) -> None:
        if mysql:
            tx.execute("DELETE FROM message_search")
            tx.execute("UPDATE search_backfill SET after_a = 0, after_b = 0, done = 0")
        else:
            tx.execute("INSERT INTO message_search (message_search) VALUES ('rebuild')")

    started = time.perf_counter()
    await store._run(reset, write=True)  # type: ignore[attr-defined]
    if mysql:
        await store.backfill_search_index()
    what = f"backfill (batches of {BACKFILL_BATCH})" if mysql else "FTS5 'rebuild'"
    print(f"indexing all messages from scratch, {what}: {time.perf_counter() - started:.1f} s")


async def measure(store: Store, args: argparse.Namespace, mysql: bool) -> None:
    await store.migrate()
    await fill(store, args)
    print(f"{'query':<32} {'text':<14} {'median':>9} {'worst':>9} {'hits':>5}")
    for label, text in QUERIES:
        query = parse_query(text)
        times = []
        hits = []
        for _ in range(args.repeat):
            before = time.perf_counter()
            hits = await store.search(query, 20)
            times.append(time.perf_counter() - before)
        print(f"{label:<32} {text:<14} {statistics.median(times) * 1000:>6.1f} ms"
              f" {max(times) * 1000:>6.1f} ms {len(hits):>5}", flush=True)
    if args.reindex:
        await reindex(store, mysql)


async def main(args: argparse.Namespace) -> None:
    print(f"machine: reference loop {machine_speed():.3f} s (sum of 10**7 squares)")
    async with throwaway_store(mysql=args.mysql, prefix="cs-bench-search-") as store:
        await measure(store, args, mysql=args.mysql)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query")
    parser.add_argument("--reindex", action="store_true",
                        help="also time indexing every message from scratch")
    parser.add_argument("--mysql", action="store_true",
                        help="MariaDB on 127.0.0.1:3306 (root, no password), a scratch database")
    parsed = parser.parse_args()
    if not (500 <= parsed.messages <= 5_000_000 and 1 <= parsed.conversations <= 100_000
            and 1 <= parsed.repeat <= 100):
        parser.error("--messages 500..5,000,000, --conversations 1..100,000, --repeat 1..100")
    trio.run(main, parsed)
