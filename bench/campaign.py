"""Campaign throughput: N contacts, one AI-written message each, against the fake upstream.

    python -m bench.campaign --contacts 100000 --latency 0.2 [--rate 300 --concurrency 64]

Creates a fresh SQLite database (or a private MariaDB database with --mysql) with N
contacts, starts the fake OpenAI upstream answering each request after ``--latency``
seconds, creates a prompt campaign and runs ``customer-service campaigns run`` as a
process, sampling its CPU and RSS every second. Prints the elapsed time, messages/s,
the runner's CPU, its peak RSS and RSS samples (flat or not), and the AI requests in
flight (max/avg, as the runner counted them). The goal: 100,000 in at most 10 minutes
(167 messages/s; at 0.2 s per request that needs about 40 requests in flight).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import trio

from bench.ai import ROOT, start_upstream, stop
from bench.common import code_version, machine_speed, proc_times, raise_fd_limit
from customer_service.campaigns.create import Audience, create_campaign
from customer_service.config import load_config
from customer_service.core.campaign_template import parse_template
from customer_service.core.models import CampaignKind, CampaignSpec, ContactInput, Role
from customer_service.storage import open_store

PROMPT = "Write {name} two friendly lines about our spring offer for {plan} customers."


def write_config(folder: Path, base_url: str, mysql_database: str | None,
                 sqlite_cache_mb: int) -> Path:
    storage = (f'backend = "mysql"\nmysql_database = "{mysql_database}"\n' if mysql_database
               else f'sqlite_path = "bench.db"\nsqlite_cache_mb = {sqlite_cache_mb}\n')
    path = folder / "bench.toml"
    path.write_text(f"""
[storage]
{storage}
[log]
level = "warning"
[campaigns]
min_hours_between = 0
[ai]
enabled = true
base_url = "{base_url}"
api_key = "bench"
model = "fake-model"
max_reply_tokens = 64
""")
    return path


async def prepare(config_path: Path, contacts: int, rate: float, concurrency: int) -> int:
    config = load_config(config_path, environ={})
    async with open_store(config) as store:
        await store.migrate()
        started = time.monotonic()
        for first in range(0, contacts, 1000):
            await store.upsert_contacts([
                ContactInput(external_id=f"c{n:07d}", name=f"Customer {n}",
                             email=f"c{n}@example.com", tags=("spring",),
                             attributes={"plan": ("pro", "free", "team")[n % 3]})
                for n in range(first, min(first + 1000, contacts))])
        print(f"{contacts:,} contacts imported in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        spec = CampaignSpec(name="bench", kind=CampaignKind.PROMPT, body=PROMPT,
                            sender_role=Role.AI, sender_id=None, sender_name="Assistant",
                            audience={"tags": ["spring"]}, concurrency=concurrency, rate=rate,
                            scheduled_at=None, fallback=None, max_tokens_total=None)
        campaign, total = await create_campaign(store, spec, Audience(tags=("spring",)),
                                                [("prompt", parse_template(PROMPT))])
        print(f"campaign {campaign.id} created with {total:,} recipients in "
              f"{time.monotonic() - started:.1f} s")
        return campaign.id


def drop_mysql(database: str) -> None:
    subprocess.run(["mysql", "-h", "127.0.0.1", "-u", "root", "-e",
                    f"DROP DATABASE IF EXISTS `{database}`"], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.2, help="upstream seconds per request")
    parser.add_argument("--rate", type=float, default=300.0, help="campaign --rate")
    parser.add_argument("--concurrency", type=int, default=64, help="campaign --concurrency")
    parser.add_argument("--mysql", action="store_true", help="MariaDB on 127.0.0.1:3306")
    parser.add_argument("--sqlite-cache-mb", type=int, default=64,
                        help="[storage] sqlite_cache_mb of the runner (the RSS it may fill)")
    args = parser.parse_args()
    if not (1 <= args.contacts <= 1_000_000 and args.latency >= 0 and args.rate > 0
            and 1 <= args.concurrency <= 1000):
        parser.error("--contacts 1..1,000,000, --latency >= 0, --rate > 0, --concurrency 1..1000")
    raise_fd_limit(args.concurrency * 2 + 200)
    print(f"code: {code_version(ROOT)}; reference loop {machine_speed():.2f} s")
    database = f"cs_bench_campaign_{secrets.token_hex(4)}" if args.mysql else None
    with tempfile.TemporaryDirectory(prefix="cs-bench-campaign-") as tmp:
        folder = Path(tmp)
        upstream_args = SimpleNamespace(tokens=20, chunk_delay=0.0,
                                        first_token_delay=args.latency)
        upstream, base_url = start_upstream(upstream_args, folder / "upstream.log")  # type: ignore[arg-type]
        try:
            if not base_url:
                raise SystemExit("the fake upstream did not start")
            config_path = write_config(folder, base_url, database, args.sqlite_cache_mb)
            campaign_id = trio.run(prepare, config_path, args.contacts, args.rate,
                                   args.concurrency)
            log = folder / "run.log"
            started = time.monotonic()
            with log.open("wb") as out:
                runner = subprocess.Popen(
                    [sys.executable, "-m", "customer_service", "--config", str(config_path),
                     "campaigns", "run", str(campaign_id), "--quiet"],
                    cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)})
                samples: list[tuple[float, float, int]] = []
                while runner.poll() is None:
                    try:
                        cpu, rss = proc_times(runner.pid)
                    except (FileNotFoundError, ProcessLookupError, StopIteration):
                        break
                    samples.append((time.monotonic() - started, cpu, rss))
                    time.sleep(1.0)
                runner.wait()
            elapsed = time.monotonic() - started
            text = log.read_text()
            if runner.returncode != 0:
                raise SystemExit(f"campaigns run exited {runner.returncode}:\n{text[-3000:]}")
        finally:
            stop(upstream)
            if database:
                drop_mysql(database)
    report(args, elapsed, samples, text)


def report(args: argparse.Namespace, elapsed: float, samples: list[tuple[float, float, int]],
           text: str) -> None:
    print(text.strip().splitlines()[-1])
    sent = re.search(r"([\d,]+) sent, ", text)
    count = int(sent.group(1).replace(",", "")) if sent else 0
    flight = re.search(r"in flight: max (\d+), avg ([\d.]+)", text)
    cpu = samples[-1][1] if samples else float("nan")
    rss = [s[2] / 2**20 for s in samples]
    # SQLite's page cache ([storage] sqlite_cache_mb, 64 MiB) fills during the first part
    # of a long run: the verdict is on the last third, where a leak would still grow.
    steady = rss[2 * len(rss) // 3:] or rss
    flat = bool(steady) and max(steady) - min(steady) <= max(16.0, 0.1 * max(steady))
    step = max(1, len(rss) // 10)
    print(f"contacts {args.contacts:,}, latency {args.latency:g} s, rate {args.rate:g}/s, "
          f"concurrency {args.concurrency}, {'MariaDB' if args.mysql else 'SQLite'}")
    print(f"elapsed {elapsed:,.1f} s (process start to exit), {count:,} messages, "
          f"{count / elapsed:,.1f} messages/s")
    print(f"runner CPU {cpu:,.1f} s ({cpu / elapsed:.0%} of one core)")
    print(f"peak RSS {max(rss, default=0):.0f} MiB; samples (MiB): "
          + ", ".join(f"{v:.0f}" for v in rss[::step])
          + f" -> {'flat' if flat else 'NOT flat'} over the last third")
    if flight:
        print(f"AI requests in flight: max {flight.group(1)}, avg {flight.group(2)}")
    goal = 100_000 / 600
    print(f"goal 100,000 in 10 min (>= {goal:.0f}/s): "
          f"{'met' if count / elapsed >= goal else 'NOT met'} at this size")


if __name__ == "__main__":
    main()
