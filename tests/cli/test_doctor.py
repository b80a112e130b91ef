"""``customer-service doctor`` against real components: SQLite files, the Redis on
127.0.0.1:6379, the fake OpenAI-compatible server and the real server (as
subprocesses), and a plain HTTP server standing in for a proxy that drops the
WebSocket upgrade headers.

The doctor runs ``trio.run`` inside the command, so everything it talks to runs in
another process or thread.
"""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pymysql
import pytest
from click.testing import Result

from customer_service.cli.doctor_checks import newest_migration
from customer_service.cli.doctor_report import CHECK_NAMES, Check, mask_url, scrub, summary_line
from customer_service.storage._sql import SQLITE
from customer_service.storage._sql_schema import load_migrations

REPO = Path(__file__).resolve().parents[2]
API_KEY = "sk-doctor-test-key"
CliRun = Callable[..., Result]
FEW = ("--connections", "100")  # keep the file-descriptor check out of the way


# ---- helpers ------------------------------------------------------------------------------

def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "doctor.toml"
    path.write_text(f'[storage]\nsqlite_path = "test.db"\n\n{extra}')
    return path


def doctor_json(run: CliRun, config: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    result = run("doctor", "--json", *FEW, *args, config=config)
    assert "Traceback" not in result.output
    return result, json.loads(result.output)


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in report["checks"] if c["name"] == name]
    assert isinstance(found, dict)
    return found


def flat(text: str) -> str:
    """Text output with rich's line wrapping undone."""
    return " ".join(text.split())


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")


@pytest.fixture
def migrated(run: CliRun, tmp_path: Path) -> Path:
    """The test database, migrated with the CLI like an admin would."""
    config = write_config(tmp_path)
    result = run("db", "migrate", config=config)
    assert result.exit_code == 0, result.output
    return tmp_path / "test.db"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMER_SERVICE_")}


def _start(args: list[str], folder: Path, pattern: str, what: str
           ) -> tuple[subprocess.Popen[bytes], str]:
    """Start a process with its output in ``folder``; wait for ``pattern`` in its stdout."""
    out, err = folder / f"{what}.out", folder / f"{what}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, cwd=REPO, env=_clean_env())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = re.search(pattern, out.read_text(errors="replace"))
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    _stop(proc)
    pytest.fail(f"{what} did not start:\n{out.read_text()}\n{err.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server (``customer-service serve`` on a free port); yields its http:// URL."""
    folder = tmp_path_factory.mktemp("server")
    config = folder / "server.toml"
    config.write_text(f'[storage]\nsqlite_path = "{folder / "server.db"}"\n\n'
                      "[server]\nport = 0\nshutdown_timeout = 2.0\n")
    proc, url = _start([sys.executable, "-m", "customer_service", "--config", str(config),
                        "serve"], folder, r"(http://127\.0\.0\.1:\d+)/healthz", "server")
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def fake_openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/fakes/openai_server.py requiring API_KEY; yields its base URL (…/v1)."""
    folder = tmp_path_factory.mktemp("openai")
    proc, url = _start([sys.executable, "-m", "tests.fakes.openai_server", "--port", "0",
                        "--api-key", API_KEY], folder, r"listening on (http://\S+)", "openai")
    yield url
    _stop(proc)


class _PlainHandler(BaseHTTPRequestHandler):
    """200 to every GET, like a proxy that passes requests on without their upgrade headers.
    Under /nomodels/ it is an OpenAI-compatible API without a /models endpoint."""

    def do_GET(self) -> None:
        if self.path.startswith("/nomodels/"):
            self._send(404, b'{"error": {"message": "not found"}}')
        else:
            self._send(200, b"ok")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200, json.dumps({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "OK"},
             "finish_reason": "length"}]}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def plain_http() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PlainHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


# ---- config and output --------------------------------------------------------------------

def test_all_pass_on_a_migrated_sqlite(run: CliRun, tmp_path: Path, migrated: Path) -> None:
    config = write_config(tmp_path)
    result = run("doctor", *FEW, config=config)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("✓ config")
    assert str(config) in lines[0]
    text = flat(result.output)
    assert (f"✓ database SQLite {migrated.resolve()} (schema {newest_migration('sqlite')}, "
            "writable)") in text
    assert "- redis skipped: single instance; no bus configured" in text
    assert "- ai skipped: [ai] enabled = false" in text
    assert "- public url skipped:" in text
    assert lines[-1] == "All checks passed."
    assert all(line == line.rstrip() for line in lines)


def test_json_shape(run: CliRun, tmp_path: Path, migrated: Path) -> None:
    result, report = doctor_json(run, write_config(tmp_path))
    assert result.exit_code == 0
    assert set(report) == {"ok", "checks"}
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    for c in report["checks"]:
        assert set(c) == {"name", "status", "detail"}
        assert c["status"] in ("ok", "warn", "fail", "skip")
        assert isinstance(c["detail"], str) and c["detail"]
    assert [c["status"] for c in report["checks"]] == ["ok", "ok", "skip", "skip", "ok", "skip"]


def test_a_broken_config_is_the_one_failure(run: CliRun, tmp_path: Path) -> None:
    config = write_config(tmp_path, "[server]\nprot = 8080\n")
    result = run("doctor", config=config)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    text = flat(result.output)
    assert "✗ config" in text and "unknown key 'prot' in [server]" in text
    assert text.count("skipped: the config did not load") == len(CHECK_NAMES) - 1
    assert result.output.splitlines()[-1] == "1 check failed."
    _, report = doctor_json(run, config)
    assert report["ok"] is False
    assert [c["status"] for c in report["checks"]] == ["fail"] + ["skip"] * 5


def test_embedded_defaults_are_named(run: CliRun, tmp_path: Path) -> None:
    result = run("doctor", "--json", *FEW, config=None)
    report = json.loads(result.output)
    assert check(report, "config") == {"name": "config", "status": "ok",
                                       "detail": "embedded defaults"}


def test_summary_and_masking_helpers() -> None:
    ok, warn, fail = Check("a", "ok", "x"), Check("b", "warn", "x"), Check("c", "fail", "x")
    assert summary_line([ok]) == "All checks passed."
    assert summary_line([ok, warn]) == "All checks passed (1 warning)."
    assert summary_line([fail, fail, warn, warn]) == "2 checks failed (2 warnings)."
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert mask_url("rediss://:pw@[::1]:6380/2?password=x") == "rediss://:***@[::1]:6380/2?password=***"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    assert mask_url("https://x.azure.com/v1?api-key=abc&v=2") == "https://x.azure.com/v1?api-key=***&v=2"
    assert scrub("Incorrect API key provided: sk-proj-abc123**9xyz. See …", "") == (
        "Incorrect API key provided: sk-***. See …")
    assert scrub("bad key hunter2hunter2", "hunter2hunter2") == "bad key ***"


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys\nfrom customer_service.cli import cli\n"
            "try:\n    cli.main(['doctor', '--help'], prog_name='customer-service')\n"
            "except SystemExit:\n    pass\nprint(sorted(sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True, timeout=60, env=_clean_env())
    assert "--connections" in done.stdout
    heavy = [m for m in ("trio", "rich", "httpx", "coredis", "customer_service.storage",
                         "customer_service.transport.client") if f"'{m}'" in done.stderr]
    assert heavy == []


# ---- database -----------------------------------------------------------------------------

def test_a_missing_sqlite_file_fails_and_is_not_created(run: CliRun, tmp_path: Path) -> None:
    result, report = doctor_json(run, write_config(tmp_path))
    assert result.exit_code == 1
    database = check(report, "database")
    assert database["status"] == "fail"
    assert "does not exist" in database["detail"]
    assert "run customer-service db migrate" in database["detail"]
    assert not (tmp_path / "test.db").exists()


def test_an_unmigrated_sqlite_fails_with_the_migrate_hint(run: CliRun, tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "test.db").close()  # an empty database file
    result, report = doctor_json(run, write_config(tmp_path))
    assert result.exit_code == 1
    newest = newest_migration("sqlite")
    assert check(report, "database") == {
        "name": "database", "status": "fail",
        "detail": f"SQLite {(tmp_path / 'test.db').resolve()}: empty, this release needs "
                  f"schema {newest}: run customer-service db migrate"}


def test_a_partly_migrated_sqlite_names_both_versions(run: CliRun, tmp_path: Path,
                                                      migrated: Path) -> None:
    newest = newest_migration("sqlite")
    with sqlite3.connect(migrated) as db:
        db.execute("DELETE FROM schema_migrations WHERE version = ?", (newest,))
    db.close()
    result, report = doctor_json(run, write_config(tmp_path))
    assert result.exit_code == 1
    detail = check(report, "database")["detail"]
    # The migration before the newest (numbers may skip: each feature has its own).
    previous = max(m.version for m in load_migrations(SQLITE) if m.version < newest)
    assert f"schema {previous}, this release needs schema {newest}" in detail
    assert "db migrate" in detail


def _mysql_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 3306), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.mysql
@pytest.mark.skipif(not _mysql_up(), reason="no MariaDB on 127.0.0.1:3306")
def test_mysql_unmigrated_then_migrated(run: CliRun, tmp_path: Path) -> None:
    name = f"cs_doctor_{secrets.token_hex(4)}"
    config = write_config(tmp_path).read_text().replace(
        'sqlite_path = "test.db"', f'backend = "mysql"\nmysql_database = "{name}"')
    path = tmp_path / "mysql.toml"
    path.write_text(config)
    where = f"MySQL root@127.0.0.1:3306/{name}"
    try:
        _, report = doctor_json(run, path)
        assert check(report, "database")["detail"] == (
            f"{where}: the database does not exist; run customer-service db migrate to create it")
        server = pymysql.connect(host="127.0.0.1", user="root", password="")
        try:
            with server.cursor() as cursor:  # doctor changes nothing: it created no database
                assert cursor.execute(f"SHOW DATABASES LIKE '{name}'") == 0
                cursor.execute(f"CREATE DATABASE `{name}`")
        finally:
            server.close()
        _, report = doctor_json(run, path)
        assert check(report, "database")["detail"].startswith(f"{where}: empty, this release")
        assert run("db", "migrate", config=path).exit_code == 0
        result, report = doctor_json(run, path)
        assert result.exit_code == 0, report
        assert check(report, "database")["detail"] == (
            f"{where} (schema {newest_migration('mysql')}, writable)")
    finally:
        server = pymysql.connect(host="127.0.0.1", user="root", password="")
        try:
            with server.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            server.close()


# ---- redis --------------------------------------------------------------------------------

def _resp(*words: str) -> bytes:
    return b"".join([f"*{len(words)}\r\n".encode()]
                    + [f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words])


def _read_until(sock: socket.socket, needle: bytes) -> bytes:
    data = b""
    while needle not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@needs_redis
def test_redis_round_trip_is_real_and_under_the_namespace(run: CliRun, tmp_path: Path,
                                                          migrated: Path) -> None:
    namespace = f"doctor-test-{secrets.token_hex(4)}"
    config = write_config(tmp_path, f'[bus]\nredis_url = "redis://127.0.0.1:6379/0"\n'
                                    f'namespace = "{namespace}"\n')
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as watcher:
        watcher.sendall(_resp("PSUBSCRIBE", f"{namespace}:*"))
        _read_until(watcher, b"psubscribe")
        result, report = doctor_json(run, config)
        seen = _read_until(watcher, b"doctor\r\n")  # the doctor's message, as another client saw it
    assert result.exit_code == 0, report
    redis = check(report, "redis")
    assert redis["status"] == "ok"
    assert re.fullmatch(r"redis://127\.0\.0\.1:6379/0 \(Redis \d[\d.]*; PING [\d.]+ ms, "
                        r"pub/sub round trip [\d.]+ ms\)", redis["detail"]), redis
    assert re.search(rf"{namespace}:doctor:[0-9a-f]{{16}}".encode(), seen)


def test_redis_on_a_closed_port_fails_without_a_traceback(run: CliRun, tmp_path: Path,
                                                          migrated: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, f'[bus]\nredis_url = "redis://:hunter2@127.0.0.1:{port}/0"\n')
    result = run("doctor", *FEW, config=config)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "hunter2" not in result.output
    text = flat(result.output)
    assert f"✗ redis redis://:***@127.0.0.1:{port}/0 unreachable: connection refused" in text
    assert result.output.splitlines()[-1] == "1 check failed."
    _, report = doctor_json(run, config)
    assert check(report, "redis")["status"] == "fail"
    assert "hunter2" not in json.dumps(report)


def test_a_silent_redis_hits_the_deadline(run: CliRun, tmp_path: Path, migrated: Path) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        config = write_config(tmp_path, f'[bus]\nredis_url = "{url}"\n')
        result, report = doctor_json(run, config, "--timeout", "0.5")
    assert result.exit_code == 1
    assert check(report, "redis")["detail"].startswith(f"{url}: no answer within 0.5 s (PING)")


# ---- ai -----------------------------------------------------------------------------------

def ai_section(base_url: str, key: str, model: str = "fake-model") -> str:
    return (f'[ai]\nenabled = true\nbase_url = "{base_url}"\napi_key = "{key}"\n'
            f'model = "{model}"\n')


def test_ai_ok_against_the_fake(run: CliRun, tmp_path: Path, migrated: Path,
                                fake_openai: str) -> None:
    result, report = doctor_json(run, write_config(tmp_path, ai_section(fake_openai, API_KEY)))
    assert result.exit_code == 0, report
    ai = check(report, "ai")
    assert ai["status"] == "ok"
    assert ai["detail"].startswith(f"{fake_openai}, model fake-model (model listed; one-token reply")
    assert API_KEY not in result.output


def test_ai_with_a_wrong_key_is_refused(run: CliRun, tmp_path: Path, migrated: Path,
                                        fake_openai: str) -> None:
    config = write_config(tmp_path, ai_section(fake_openai, "sk-wrong-key"))
    result, report = doctor_json(run, config)
    assert result.exit_code == 1
    ai = check(report, "ai")
    assert ai["status"] == "fail"
    assert "the API key was refused" in ai["detail"] and "401" in ai["detail"]
    assert "sk-wrong-key" not in result.output
    text_result = run("doctor", *FEW, config=config)
    assert "sk-wrong-key" not in text_result.output
    assert "✗ ai" in text_result.output


def test_ai_model_not_offered_fails(run: CliRun, tmp_path: Path, migrated: Path,
                                    fake_openai: str) -> None:
    config = write_config(tmp_path, ai_section(fake_openai, API_KEY, model="gpt-nope"))
    result, report = doctor_json(run, config)
    assert result.exit_code == 1
    assert "model 'gpt-nope' is not offered" in check(report, "ai")["detail"]
    assert "fake-model" in check(report, "ai")["detail"]


def test_ai_without_models_endpoint_is_a_warning(run: CliRun, tmp_path: Path, migrated: Path,
                                                 plain_http: str) -> None:
    result, report = doctor_json(run, write_config(
        tmp_path, ai_section(f"{plain_http}/nomodels", "sk-any")))
    assert result.exit_code == 0, report  # warnings pass
    ai = check(report, "ai")
    assert ai["status"] == "warn"
    assert "no /models endpoint (404)" in ai["detail"] and "one-token reply" in ai["detail"]
    text = run("doctor", *FEW, config=write_config(
        tmp_path, ai_section(f"{plain_http}/nomodels", "sk-any")))
    assert text.output.splitlines()[-1] == "All checks passed (1 warning)."


# ---- file descriptors ---------------------------------------------------------------------

def test_too_many_connections_for_the_fd_limit(run: CliRun, tmp_path: Path,
                                               migrated: Path) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no soft limit on open files here")
    config = write_config(tmp_path)
    result = run("doctor", "--json", "--connections", str(soft * 2), config=config)
    report = json.loads(result.output)
    assert result.exit_code == 1
    fds = check(report, "file descriptors")
    assert fds["status"] == "fail"
    assert f"soft limit {soft} open files, need about {soft * 2 + 100}" in fds["detail"]
    assert "ulimit -n" in fds["detail"] and "LimitNOFILE=" in fds["detail"]


# ---- public url ---------------------------------------------------------------------------

def test_public_url_round_trip_through_the_real_server(run: CliRun, tmp_path: Path,
                                                       migrated: Path, live_server: str) -> None:
    config = write_config(tmp_path, f'[server]\npublic_url = "{live_server}/"\n')
    result, report = doctor_json(run, config)
    assert result.exit_code == 0, report
    public = check(report, "public url")
    assert public["status"] == "ok"
    ws = live_server.replace("http://", "ws://") + "/ws/visitor"
    assert public["detail"].startswith(f"{live_server}: /healthz 200 (customer-service ")
    assert f"WebSocket ping/pong via {ws} in" in public["detail"]


def test_a_proxy_dropping_the_upgrade_headers_is_named(run: CliRun, tmp_path: Path,
                                                       migrated: Path, plain_http: str) -> None:
    config = write_config(tmp_path, f'[server]\npublic_url = "{plain_http}"\n')
    result = run("doctor", *FEW, config=config)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    text = flat(result.output)
    assert "✗ public url" in text
    assert "got 200" in text and "instead of 101" in text
    assert "dropped the Upgrade headers" in text and "docs/deploy.md" in text


def test_a_silent_public_url_hits_the_deadline(run: CliRun, tmp_path: Path,
                                               migrated: Path) -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        result, report = doctor_json(run, write_config(tmp_path, f'[server]\npublic_url = "{url}"\n'),
                                     "--timeout", "0.5")
        assert time.monotonic() - started < 5
    assert result.exit_code == 1
    assert check(report, "public url")["detail"].startswith(
        f"no answer within 0.5 s (GET {url}/healthz)")


def test_public_url_on_a_closed_port(run: CliRun, tmp_path: Path, migrated: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    _, report = doctor_json(run, write_config(tmp_path, f'[server]\npublic_url = "{url}"\n'))
    assert check(report, "public url") == {
        "name": "public url", "status": "fail",
        "detail": f"{url}/healthz unreachable: connection refused"}
