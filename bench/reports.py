"""Reports and exports on a large store: ``Store.report`` timed, the export's memory watched.

    .venv/bin/python bench/reports.py --messages 1000000
    .venv/bin/python bench/reports.py --messages 200000 --mysql

Fills a fresh SQLite file (or, with ``--mysql``, a scratch MariaDB database dropped
afterwards) with ``--messages`` messages in conversations of 10 to 30 messages spread over
``--days`` days: a visitor first, often an AI reply, agents (20) and visitors taking turns,
70% closed (a system line at the close), 80% assigned, labels on 40%. The rows are written
with multi-row INSERTs straight into the tables (as the migrations leave them, every index
and trigger on), a thousand conversations per transaction, which is much faster than the
group committer's path; message texts are short so SQLite's trigram index stays small.

Then times each report (no grouping, by day in Asia/Shanghai, by agent, by label) over the
whole range and over its last 7 days, median of ``--repeat`` runs, and exports the whole
range as CSV into /dev/null through the CLI's own streaming loop, printing the resident
memory before, the most it reached while exporting (sampled at every page), and the
process's peak. No server, no sockets.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import trio  # noqa: E402

from bench.common import machine_speed, throwaway_store  # noqa: E402
from customer_service.core.export import PAGE, csv_row  # noqa: E402
from customer_service.core.reports import GroupBy, ReportRange, build_report  # noqa: E402
from customer_service.storage._sql import Tx  # noqa: E402
from customer_service.storage.base import Store  # noqa: E402

AGENTS = 20
LABELS = ["billing", "vip", "refund", "shipping", "bug", "sales", "退款", "投诉"]
CHUNK = 1000
"""Conversations per transaction."""
ROWS = 500
"""Rows per INSERT statement."""


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def conversation_rows(n: int, start_ms: int, span_ms: int, rng: random.Random, budget: int
                      ) -> tuple[tuple[object, ...], tuple[object, ...],
                                 list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Conversation ``n`` (id n+1): its visitor row, its row, its messages and labels."""
    cid = n + 1
    created = start_ms + (n * 7_919_993) % span_ms
    count = min(budget, 10 + rng.randrange(21))
    assigned = rng.random() < 0.8
    agent = rng.randrange(AGENTS) + 1 if assigned else None
    closed = rng.random() < 0.7
    ai = rng.random() < 0.6
    at = created + 5_000
    messages: list[tuple[object, ...]] = [(cid, 1, "visitor", None, "v", "hi", at)]
    seq = 1
    while seq < count:
        seq += 1
        at += rng.randrange(2_000, 120_000)
        if seq == count and closed:
            role, sender = "system", None
        elif seq == 2 and ai:
            role, sender = "ai", None
        elif seq % 2:
            role, sender = "visitor", None
        else:
            role, sender = ("agent", agent) if assigned else ("ai", None)
        messages.append((cid, seq, role, sender, role, "ok", at))
    visitor = (cid, f"bench-{cid}", f"V{cid}", "", "", created)
    conversation = (cid, cid, "closed" if closed else ("assigned" if assigned else "open"),
                    agent, len(messages), created, at, at if closed else None)
    labels = []
    if rng.random() < 0.4:
        for label in rng.sample(LABELS, 2 if rng.random() < 0.25 else 1):
            labels.append((cid, label, created))
    return visitor, conversation, messages, labels


def insert(tx: Tx, head: str, rows: list[tuple[object, ...]]) -> None:
    width = len(rows[0]) if rows else 0
    for at in range(0, len(rows), ROWS):
        part = rows[at:at + ROWS]
        tx.execute(head + " VALUES " + ", ".join(["(" + ", ".join("?" * width) + ")"] * len(part)),
                   [value for row in part for value in row])


async def fill(store: Store, args: argparse.Namespace, start: datetime) -> int:
    rng = random.Random(13)
    start_ms = int(start.timestamp() * 1000)
    span_ms = args.days * 86_400_000

    def agents(tx: Tx) -> None:
        insert(tx, "INSERT INTO agents (id, username, name, password_hash, created_at)",
               [(a + 1, f"agent{a + 1}", f"Agent {a + 1}", "x", start_ms) for a in range(AGENTS)])

    await store._run(agents, write=True)  # type: ignore[attr-defined]
    written = 0
    n = 0
    started = time.perf_counter()
    while written < args.messages:
        batch = []
        while len(batch) < CHUNK and written < args.messages:
            rows = conversation_rows(n, start_ms, span_ms, rng, args.messages - written)
            batch.append(rows)
            written += len(rows[2])
            n += 1

        def work(tx: Tx, batch: list[tuple[object, ...]] = batch) -> None:
            insert(tx, "INSERT INTO visitors (id, token_hash, name, email, page, created_at)",
                   [b[0] for b in batch])
            insert(tx, "INSERT INTO conversations (id, visitor_id, status, assigned_to, last_seq,"
                   " created_at, updated_at, closed_at)", [b[1] for b in batch])
            insert(tx, "INSERT INTO messages (conversation_id, seq, sender_role, sender_id,"
                   " sender_name, content, created_at)", [m for b in batch for m in b[2]])
            labels = [label for b in batch for label in b[3]]
            if labels:
                insert(tx, "INSERT INTO conversation_labels (conversation_id, label, created_at)",
                       labels)

        await store._run(work, write=True)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    print(f"stored {written:,} messages in {n:,} conversations over {args.days} days in"
          f" {elapsed:.1f} s ({written / elapsed:,.0f} msgs/s)", flush=True)
    return n


async def time_reports(store: Store, span: ReportRange, label: str, repeat: int) -> None:
    for by in (None, "day", "agent", "label"):
        times = []
        report = None
        group: GroupBy | None = by  # type: ignore[assignment]
        for _ in range(repeat):
            began = time.perf_counter()
            total, grouped = await store.report(span.since, span.until, group)
            report = build_report(ReportRange(span.since, span.until, span.zone, group),
                                  total, grouped)
            times.append(time.perf_counter() - began)
        assert report is not None
        print(f"  {label:<12} by {by or '-':<6} median {statistics.median(times) * 1000:>8.0f} ms"
              f"  worst {max(times) * 1000:>8.0f} ms   opened {report.total.opened:,},"
              f" closed {report.total.closed:,}, rows {len(report.rows)}", flush=True)


async def export(store: Store, span: ReportRange) -> None:
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    before = rss_mb()
    most = before
    rows = 0
    began = time.perf_counter()
    bounds = await store.export_bounds(span.since, span.until)
    assert bounds is not None
    with open("/dev/null", "wb") as sink:  # noqa: ASYNC230 (as the CLI: writes between pages)
        text = io.TextIOWrapper(sink, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text)
        after = (bounds[0] - 1, 0)
        while True:
            page = await store.export_page(span.since, span.until, last_id=bounds[1],
                                           after=after, limit=PAGE)
            if not page:
                break
            writer.writerows(csv_row(row) for row in page)
            rows += len(page)
            after = (page[-1].conversation_id, page[-1].seq)
            most = max(most, rss_mb())
        text.detach()
    elapsed = time.perf_counter() - began
    print(f"export (CSV, pages of {PAGE}): {rows:,} messages in {elapsed:.1f} s"
          f" ({rows / elapsed:,.0f} msgs/s); RSS {before:.0f} MB before, at most {most:.0f} MB"
          f" while exporting (+{most - before:.0f} MB); process peak"
          f" {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)


async def main(args: argparse.Namespace) -> None:
    print(f"machine: reference loop {machine_speed():.3f} s (sum of 10**7 squares)")
    print(f"database: {'MariaDB' if args.mysql else 'SQLite'}")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    async with throwaway_store(mysql=args.mysql, prefix="cs-bench-reports-") as store:
        await store.migrate()
        await fill(store, args, start)
        zone = ZoneInfo("Asia/Shanghai")
        whole = ReportRange(start, end, zone, None)
        week = ReportRange(end - timedelta(days=7), end, zone, None)
        print("reports (Store.report + percentiles in Python):")
        await time_reports(store, whole, f"{args.days} days", args.repeat)
        await time_reports(store, week, "last 7 days", args.repeat)
        await export(store, whole)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each report")
    parser.add_argument("--mysql", action="store_true",
                        help="MariaDB on 127.0.0.1:3306 (root, no password), a scratch database")
    parsed = parser.parse_args()
    if not (1000 <= parsed.messages <= 5_000_000 and 7 <= parsed.days <= 3000
            and 1 <= parsed.repeat <= 20):
        parser.error("--messages 1,000..5,000,000, --days 7..3,000, --repeat 1..20")
    trio.run(main, parsed)
