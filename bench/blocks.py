"""Blocks benchmark: what 1,000 blocks cost a visitor's hello.

    .venv/bin/python bench/blocks.py --blocks 1000 --hellos 500

Measures, in one process (SQLite in a temporary folder, loopback only):

- the block check itself (``BlockGuard.refusal``: parsing the client address and
  matching it and the visitor id), with no blocks and with ``--blocks`` blocks (a mix of
  IPv4 networks /8 to /32, IPv6 networks /32 to /128, and visitors), for an address no
  block holds and for one a block holds;
- reloading the active blocks from the database (``BlockGuard.load``: the query and
  the index), which every instance does every 5 s;
- a real server's hello → welcome latency for new visitors and for returning ones
  (``visitor_token``: the visitor check runs after its lookup), sequentially, with no
  blocks and then with ``--blocks`` blocks.

Prints a table; ``--json PATH`` writes the same numbers.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import statistics
import tempfile
import time
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import trio
from trio_websocket import open_websocket_url

from customer_service.config import Config
from customer_service.core.blocks import Block, BlockList
from customer_service.server.blocks import BlockGuard
from customer_service.server.hub import Hub
from customer_service.server.run import Server, open_server
from customer_service.storage.base import Store


def make_blocks(count: int, seed: int = 7) -> list[tuple[int | None, str | None]]:
    """(visitor id, network) pairs: half IPv4 networks, a quarter IPv6, a quarter visitors;
    none holds 127.0.0.1 (the benchmark's own address) nor 198.51.100.77."""
    rng = random.Random(seed)
    made: list[tuple[int | None, str | None]] = []
    while len(made) < count:
        kind = len(made) % 4
        if kind in (0, 1):
            length = rng.choice([8, 12, 16, 20, 24, 28, 32])
            network = ipaddress.ip_network((rng.getrandbits(32), length), strict=False)
            if network.overlaps(ipaddress.ip_network("127.0.0.0/8")) or \
                    ipaddress.ip_address("198.51.100.77") in network:
                continue
            made.append((None, str(network)))
        elif kind == 2:
            length = rng.choice([32, 48, 56, 64, 128])
            value = (0x2001 << 112) | rng.getrandbits(112)
            made.append((None, str(ipaddress.ip_network((value, length), strict=False))))
        else:
            made.append((1_000_000 + len(made), None))
    return made


def check_cost(count: int) -> dict[str, float]:
    """Microseconds per ``refusal`` call, as the hello path makes it."""
    now = datetime.now(UTC)
    blocks = [Block(i + 1, visitor, network, "", "bench", now, now + timedelta(days=1))
              for i, (visitor, network) in enumerate(make_blocks(count))]
    guard = BlockGuard(cast(Store, None), Hub(), 1.0)  # refusal() never reads the store
    guard.blocks = BlockList(blocks)
    cases = [("miss_ipv4", None, "198.51.100.77"), ("miss_ipv4_and_visitor", 5, "198.51.100.77"),
             ("miss_ipv6", None, "2001:db8::1")]
    hit_network = next((b.network for b in blocks if b.network and "." in b.network), None)
    if hit_network is not None:
        cases.append(("hit_ipv4", None, str(ipaddress.ip_network(hit_network).network_address)))
    results = {}
    for name, visitor, address in cases:
        runs = 20_000
        seconds = min(timeit.repeat(lambda v=visitor, a=address: guard.refusal(v, a),
                                    number=runs, repeat=5))
        results[name] = seconds / runs * 1e6
    return results


async def hello_latencies(server: Server, hellos: int) -> dict[str, float]:
    url = f"ws://127.0.0.1:{server.port}/ws/visitor"
    fresh: list[float] = []
    returning: list[float] = []
    tokens: list[str] = []
    for _ in range(hellos):
        async with open_websocket_url(url) as ws:
            started = time.perf_counter()
            await ws.send_message('{"type":"hello"}')
            welcome = json.loads(await ws.get_message())
            fresh.append(time.perf_counter() - started)
            assert welcome["type"] == "welcome", welcome
            tokens.append(welcome["visitor_token"])
    for token in tokens:
        async with open_websocket_url(url) as ws:
            started = time.perf_counter()
            await ws.send_message(json.dumps({"type": "hello", "visitor_token": token}))
            welcome = json.loads(await ws.get_message())
            returning.append(time.perf_counter() - started)
            assert welcome["type"] == "welcome", welcome

    def ms(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1] * 1000

    return {"new_p50_ms": ms(fresh, 50), "new_p99_ms": ms(fresh, 99),
            "returning_p50_ms": ms(returning, 50), "returning_p99_ms": ms(returning, 99)}


async def server_numbers(count: int, hellos: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        config = Config().with_changes(
            server__host="127.0.0.1", server__port=0, server__transport="native",
            storage__sqlite_path=str(Path(folder) / "bench.db"),
            server__rate_limit_per_second=10_000.0, server__rate_limit_burst=10_000)
        async with open_server(config) as server, trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            before = await hello_latencies(server, hellos)
            store = server.service.store
            expires = datetime.now(UTC) + timedelta(days=1)
            for number, network in make_blocks(count):
                visitor = None if number is None else (
                    await store.create_visitor(f"bench-{number}", "", "", "")).id
                await store.add_block(visitor_id=visitor, network=network, reason="bench",
                                      created_by="bench", expires_at=expires)
            loads = []
            for _ in range(20):
                started = time.perf_counter()
                await server.service.blocks.load()
                loads.append(time.perf_counter() - started)
            assert len(server.service.blocks.blocks) == count
            found = await store.list_blocks(datetime.now(UTC))
            started = time.perf_counter()
            BlockList(found)
            index_ms = (time.perf_counter() - started) * 1000
            after = await hello_latencies(server, hellos)
            server.shutdown()
    return {"hello_without_blocks": before, "hello_with_blocks": after,
            "reload_ms_median": statistics.median(loads) * 1000, "index_build_ms": index_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=1000)
    parser.add_argument("--hellos", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    numbers: dict[str, Any] = {
        "blocks": args.blocks,
        "check_us_no_blocks": check_cost(0),
        "check_us_with_blocks": check_cost(args.blocks),
    }
    numbers.update(trio.run(server_numbers, args.blocks, args.hellos))
    print(f"blocks: {args.blocks}")
    for label in ("check_us_no_blocks", "check_us_with_blocks"):
        cells = ", ".join(f"{k} {v:.2f} µs" for k, v in numbers[label].items())
        print(f"{label}: {cells}")
    print(f"reload from the database, unchanged (median of 20): "
          f"{numbers['reload_ms_median']:.2f} ms; building the index when changed: "
          f"{numbers['index_build_ms']:.2f} ms")
    for label in ("hello_without_blocks", "hello_with_blocks"):
        cells = ", ".join(f"{k} {v:.2f}" for k, v in numbers[label].items())
        print(f"{label}: {cells}")
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
