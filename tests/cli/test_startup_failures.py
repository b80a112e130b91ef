"""Every way ``serve`` can fail to start prints one ``Error: …`` line, no traceback, exit 1.

The server runs as a real process (``python -m customer_service``), as an operator
starts it: what reaches the terminal is what is asserted. Redis not answering at
start is not a failure: the instance starts on its own and says so in one warning.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("CUSTOMER_SERVICE_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def _serve(config: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "customer_service", "--config", str(config),
                           "serve", *args], capture_output=True, text=True, env=_env(),
                          cwd=REPO, timeout=60, check=False)


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) +\S")


def _assert_one_error_line(done: subprocess.CompletedProcess[str], wanted: str) -> None:
    """Exit 1, nothing on stdout (no banner), and on stderr one ``Error:`` line starting
    with ``wanted``, last, after nothing but log lines (a new database logs its migration)."""
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    *before, last = done.stderr.splitlines()
    assert last.startswith(f"Error: {wanted}"), done.stderr
    assert [line for line in before if not LOG_LINE.match(line)] == [], done.stderr


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cs.toml"
    path.write_text('[server]\nport = 0\n' + text)
    return path


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(_config(tmp_path, '[storage]\nsqlite_path = "cs.db"\n'),
                      "--port", str(port))
    _assert_one_error_line(done, f"cannot listen on 127.0.0.1:{port}: Address already in use "
                                 "(change [server] host or port, or stop what uses it)")


def test_a_config_file_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    _assert_one_error_line(_serve(tmp_path / "file" / "cs.toml"),
                           f"{tmp_path / 'file' / 'cs.toml'}: cannot read: Not a directory")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[server]\n")
    _assert_one_error_line(_serve(binary), f"{binary}: not UTF-8 text")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_config_file_without_read_permission(tmp_path: Path) -> None:
    path = _config(tmp_path, "")
    path.chmod(0)
    _assert_one_error_line(_serve(path), f"{path}: cannot read: Permission denied")


def test_an_sqlite_file_that_cannot_be_opened(tmp_path: Path) -> None:
    done = _serve(_config(tmp_path, '[storage]\nsqlite_path = "missing/folder/cs.db"\n'))
    _assert_one_error_line(done, f"cannot open SQLite database {tmp_path}/missing/folder/cs.db: "
                                 "unable to open database file")


@pytest.mark.parametrize(("host", "port", "why"), [
    ("127.0.0.1", 1, "Connection refused"),
    ("no-such-host.invalid", 3306, "no-such-host.invalid"),
], ids=["refused", "unknown-host"])
def test_a_mysql_that_cannot_be_reached(tmp_path: Path, host: str, port: int, why: str) -> None:
    done = _serve(_config(tmp_path, f'[storage]\nbackend = "mysql"\nmysql_host = "{host}"\n'
                                    f'mysql_port = {port}\nmysql_database = "cs_test_none"\n'))
    _assert_one_error_line(done, f"cannot connect to MySQL at {host}:{port} (database "
                                 "cs_test_none): ")
    assert why in done.stderr


def _read_until(stream: IO[bytes] | None, needle: str, deadline: float) -> str:
    """What a pipe gives until it holds ``needle`` (or the deadline passes)."""
    assert stream is not None
    fd = stream.fileno()
    seen = ""
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536).decode()
        if not chunk:
            break
        seen += chunk
    return seen


def test_a_redis_that_does_not_answer_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    path = _config(tmp_path, '[storage]\nsqlite_path = "cs.db"\n'
                             '[bus]\nredis_url = "redis://127.0.0.1:1/0"\n')
    server = subprocess.Popen([sys.executable, "-m", "customer_service", "--config", str(path),
                               "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=_env(), cwd=REPO, text=True)
    try:
        banner = _read_until(server.stdout, "SIGTERM stops it", time.monotonic() + 30)
        assert "Health" in banner, banner
        server.send_signal(signal.SIGTERM)
        rest, errors = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    assert server.returncode == 0, errors
    assert "Traceback" not in banner + rest + errors
    assert "Error" not in errors
    assert "bus: Redis at redis://127.0.0.1:1/0 is not usable" in errors
