"""Several real server processes on one MariaDB database and one Redis, for the cluster tests.

Every server is ``python -m customer_service --config=…`` on 127.0.0.1 (its port read
from its banner), sharing a fresh MariaDB database and a private ``redis-server``
started on a free loopback port (so a test may kill and restart it without touching
the machine's own Redis). Processes are stopped with SIGTERM, or killed with their PID.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pymysql

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    """Our environment without CUSTOMER_SERVICE_* (they would override the test config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMER_SERVICE_")}
    env["COLUMNS"] = "200"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli() -> list[str]:
    return [sys.executable, "-m", "customer_service"]


class _Logged:
    """A child process whose output goes to a log file."""

    def __init__(self, command: list[str], log_path: Path, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        self.command = command
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                            stderr=subprocess.STDOUT, cwd=cwd,
                                            env=env or environment())
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill9(self) -> None:
        """``kill -9`` by PID: no shutdown at all."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)
        self._log.close()

    def stop(self) -> None:
        try:
            if self.alive():
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(STOP_TIMEOUT)
        finally:
            self._log.close()


class RedisProcess(_Logged):
    """A private ``redis-server`` on ``port`` (no persistence), restartable on the same port."""

    def __init__(self, folder: Path, port: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = port
        super().__init__(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(folder)],
                         folder / "redis.log", folder)
        self.wait_ready()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("redis-server did not answer")

    def restart(self, pause: float = 0.0) -> None:
        """Kill it (SIGKILL: it loses everything, as a crash would) and start it again."""
        self.kill9()
        time.sleep(pause)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, cwd=self.folder,
                                        env=environment())
        self.wait_ready()


@contextmanager
def private_redis(folder: Path) -> Iterator[RedisProcess]:
    redis = RedisProcess(folder, free_port())
    try:
        yield redis
    finally:
        redis.stop()


def mysql_available() -> bool:
    try:
        pymysql.connect(connect_timeout=2, **MYSQL).close()  # type: ignore[arg-type]
    except pymysql.MySQLError:
        return False
    return True


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty MariaDB database name, dropped afterwards."""
    name = f"cs_cluster_{secrets.token_hex(4)}"
    try:
        yield name
    finally:
        conn = pymysql.connect(connect_timeout=5, **MYSQL)  # type: ignore[arg-type]
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines: list[str] = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in keys.items())
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def cluster_config(folder: Path, database: str, redis_url: str, *, port: int = 0,
                   **overrides: dict[str, Any]) -> Path:
    """A config for one instance: loopback, MariaDB ``database``, the bus on ``redis_url``,
    generous frame limits, quick heartbeats (so tests see an instance go in seconds)."""
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout": 3.0,
                   "rate_limit_per_second": 1000.0, "rate_limit_burst": 2000,
                   "rate_limit_strikes": 1000},
        "storage": {"backend": "mysql", "mysql_database": database, "mysql_pool_size": 4},
        "bus": {"redis_url": redis_url, "heartbeat_interval": 0.5, "instance_timeout": 3.0},
        "log": {"level": os.environ.get("CS_CLUSTER_LOG_LEVEL", "info")},
        "ai": {"enabled": False},
        "auth": {"scrypt_n": 2**14},
        # Other features' tests count seqs from the visitor's first message.
        "auto_replies": {"welcome": {}, "away": {}, "closed": {}},
    }
    for section, keys in overrides.items():
        sections.setdefault(section, {}).update(keys)
    return write_config(folder / "customer-service.toml", sections)


class ServerProcess(_Logged):
    """One instance: ``customer-service --config=…``; the port comes from its banner."""

    def __init__(self, folder: Path, config: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.folder = folder
        self.config = config
        self.port = 0
        super().__init__([*cli(), f"--config={config}"], folder / f"{name}.log", folder)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = START_TIMEOUT, *, bus: str | None = "ok") -> None:
        """Until the banner names the port and /healthz answers 200 (with ``bus`` as given)."""
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"http://127\.0\.0\.1:(\d+)/healthz")
        while not self.port:
            found = pattern.search(self.log_text())
            if found:
                self.port = int(found.group(1))
                break
            self._check(deadline, "print its banner")
            time.sleep(0.05)
        while True:
            health = self.health()
            if health is not None and health.get("status") == "ok" and (
                    bus is None or health.get("bus") == bus):
                return
            self._check(deadline, f"report healthy (last: {health})")
            time.sleep(0.05)

    def _check(self, deadline: float, what: str) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n"
                               f"{self.log_text()[-4000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{self.name} did not {what}:\n{self.log_text()[-4000:]}")

    def health(self) -> dict[str, Any] | None:
        try:
            answer = httpx.get(f"{self.url}/healthz", timeout=2.0)
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = answer.json()
        return body


def start_server(folder: Path, config: Path, name: str, *, bus: str | None = "ok"
                 ) -> ServerProcess:
    server = ServerProcess(folder, config, name)
    try:
        server.wait_ready(bus=bus)
    except BaseException:
        server.stop()
        raise
    return server


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``check()`` (blocking) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s (last: {value!r})")
        time.sleep(interval)
