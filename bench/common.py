"""What the benchmark commands share: ports, process figures from /proc, percentiles."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from customer_service.config import StorageConfig
from customer_service.storage import Store

HOST = "127.0.0.1"
"""Benchmarks only ever target loopback."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def raise_fd_limit(needed: int) -> int:
    """Raise this process's (and so its children's) open-file limit to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"need about {needed} open files, the hard limit is {soft}")
    return soft


def proc_times(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return cpu, rss


def machine_cpu_seconds() -> float:
    """CPU seconds all the machine's cores have spent busy since boot (everything but idle and
    iowait), from /proc/stat: the difference over a window shows what else ran."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_healthy(server: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    """Until the server answers /healthz with 200; exit if it dies or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise SystemExit("the server did not start")
        time.sleep(0.1)


def write_server_config(folder: Path, port: int, *, group_commit_max: int = 512,
                        transport: str | None = None, extra: str = "",
                        sqlite_cache_mb: int | None = None, mysql_database: str | None = None,
                        redis_url: str | None = None, workers: int = 1,
                        mysql_pool_size: int | None = None) -> Path:
    """The server's TOML for a benchmark: loopback, rate limits out of the way, warnings only.
    Storage is SQLite in ``folder``, or MariaDB on 127.0.0.1:3306 (root, no password) in
    ``mysql_database`` (``mysql_pool_size`` None: the server's default); ``redis_url`` turns
    the bus on; ``workers`` above 1 runs that many processes on the port. ``transport``
    None keeps the server's default; ``extra`` is appended (more sections)."""
    chosen = f'transport = "{transport}"\n' if transport else ""
    if workers != 1:
        chosen += f"workers = {workers}\n"
    if mysql_database:
        storage = f'backend = "mysql"\nmysql_database = "{mysql_database}"\n'
        if mysql_pool_size:
            storage += f"mysql_pool_size = {mysql_pool_size}\n"
    else:
        storage = 'sqlite_path = "bench.db"\n'
        if sqlite_cache_mb:
            storage += f"sqlite_cache_mb = {sqlite_cache_mb}\n"
    bus = f'[bus]\nredis_url = "{redis_url}"\n' if redis_url else ""
    path = folder / "bench.toml"
    path.write_text(f"""
[server]
host = "{HOST}"
port = {port}
{chosen}rate_limit_per_second = 1000000.0
rate_limit_burst = 1000000
outbound_queue = 1024
[storage]
{storage}group_commit_max = {group_commit_max}
{bus}[log]
level = "warning"
{extra}""")
    return path


def code_version(root: Path) -> str:
    """The checkout's commit and whether the server's code differs from it (read-only git:
    ``--no-optional-locks`` keeps ``status`` from rewriting the index)."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        changed = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain", "--",
             "customer_service"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    files = len(changed.splitlines())
    return f"{commit}, customer_service/ " + (f"with {files} changed file(s)" if files else "as committed")


def machine_speed() -> float:
    """Seconds this machine's Python takes for a fixed loop (sum of 10**7 squares), best of 3:
    figures from different machines compare only next to it."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(10**7))
        best = min(best, time.perf_counter() - started)
    return best


@asynccontextmanager
async def throwaway_store(*, mysql: bool, prefix: str,
                          cache_mb: int | None = None) -> AsyncIterator[Store]:
    """A new, empty store for one benchmark: a MariaDB database made for it and dropped
    after, or a SQLite file in a temporary folder."""
    if mysql:
        from customer_service.storage.mysql import open_mysql_store  # noqa: PLC0415

        name = f"cs_bench_{uuid.uuid4().hex[:8]}"
        config = StorageConfig(backend="mysql", mysql_database=name)
        try:
            async with open_mysql_store(config) as store:
                yield store
        finally:
            import pymysql  # noqa: PLC0415

            conn = pymysql.connect(host=config.mysql_host, port=config.mysql_port,
                                   user=config.mysql_user, password=config.mysql_password)
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            conn.close()
        return
    from customer_service.storage.sqlite import open_sqlite_store  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        path = Path(folder) / "bench.db"
        async with (open_sqlite_store(path) if cache_mb is None
                    else open_sqlite_store(path, cache_mb=cache_mb)) as store:
            yield store
