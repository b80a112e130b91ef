"""What a benchmark needs to run the server as several processes: a scratch MariaDB database,
a private Redis, and the worker processes of a ``[server] workers`` supervisor.

The database is MariaDB on 127.0.0.1:3306 (root, no password), named ``cs_bench_<random>``
and dropped at the end; Redis is a ``redis-server`` of our own on a free loopback port,
without persistence. Everything here reads /proc or talks to loopback only, and every wait
is bounded in time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pymysql

from bench.common import HOST, free_port

MYSQL_PORT = 3306
MYSQL_USER = "root"
MYSQL_SERVERS = ("mariadbd", "mysqld")


# ---- MariaDB ----------------------------------------------------------------------------------

def new_database_name() -> str:
    """A fresh database name; the server creates the database on first connection."""
    return f"cs_bench_{secrets.token_hex(4)}"


def drop_database(name: str) -> None:
    """DROP the scratch database (waits at most 10 s for locks; the servers must be stopped)."""
    conn = pymysql.connect(host=HOST, port=MYSQL_PORT, user=MYSQL_USER, password="",
                           connect_timeout=5, read_timeout=30, write_timeout=30)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET SESSION lock_wait_timeout = 10")
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def mysql_server_pid() -> int | None:
    """The MariaDB/MySQL server's PID, found by name in /proc (it is the machine's, shared)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in MYSQL_SERVERS:
                    return int(entry.name)
            except OSError:
                continue
    return None


# ---- Redis ------------------------------------------------------------------------------------

class PrivateRedis:
    """``redis-server`` on a free loopback port, no persistence, its log in ``folder``;
    stopped by PID in ``stop``."""

    def __init__(self, folder: Path, timeout: float = 10.0) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = folder / "redis.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
                 "--appendonly", "no", "--dir", str(folder)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"redis-server exited: {self.log_path.read_text()[-1000:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit("redis-server did not answer PING")

    def stop(self) -> None:
        stop_process(self.process, timeout=5)


# ---- processes --------------------------------------------------------------------------------

def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL by PID after ``timeout`` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def children(pid: int) -> list[int]:
    """A process's child PIDs (its workers, for a ``[server] workers`` supervisor)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def kill_if_child_of(pids: list[int], parent: int) -> None:
    """SIGKILL each PID still running as ``parent``'s child, or orphaned (parent 1) after it."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue  # gone
        if ppid in (parent, 1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def server_sockets(port: int) -> dict[int, int]:
    """The server side of every established loopback TCP connection to ``port``:
    {client port: socket inode}, from /proc/net/tcp."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            out[int(fields[2].rsplit(":", 1)[1], 16)] = int(fields[9])
    return out


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets a process holds, from /proc/<pid>/fd."""
    found: set[int] = set()
    try:
        entries = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return found
    for fd in entries:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def connection_owners(port: int, pids: list[int]) -> dict[int, int]:
    """Which process holds the server side of each connection to ``port``:
    {client port: PID}. The kernel chose, among the processes listening with SO_REUSEPORT."""
    held = {pid: socket_inodes(pid) for pid in pids}
    owners = {}
    for client_port, inode in server_sockets(port).items():
        for pid, inodes in held.items():
            if inode in inodes:
                owners[client_port] = pid
                break
    return owners
