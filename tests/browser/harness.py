"""Processes and clients shared by the browser tests and ``tools/screenshots.py``.

Nothing here imports pytest or Playwright: the server, the fake AI upstream and the agents
are real subprocesses and the CLI, driven the way an operator would.

    db = make_agents_db(workdir / "template")              # once: alice and bob
    with running_server(workdir / "run", agents_db=db) as server:
        server.url                                         # http://127.0.0.1:<port>
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = [
    "AGENTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "REPO_ROOT",
    "AgentAccount",
    "EmbeddingSite",
    "FakeUpstream",
    "SeededConversation",
    "ServerProcess",
    "agent_ids",
    "api_messages",
    "login_token",
    "make_agents_db",
    "missing_requirements",
    "running_fake_upstream",
    "running_server",
    "seed_conversation",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class AgentAccount:
    username: str
    name: str
    password: str


AGENTS: dict[str, AgentAccount] = {
    "alice": AgentAccount("alice", "Alice Smith", "alice-correct-horse"),
    "bob": AgentAccount("bob", "Bob Jones", "bob-battery-staple"),
}


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium); browsers are not downloaded"
    return None


def _environment() -> dict[str, str]:
    """Our environment without CUSTOMER_SERVICE_* (they would override the test config)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CUSTOMER_SERVICE_")}
    env["COLUMNS"] = "200"  # the banner is one line per entry, whatever the paths' length
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _cli() -> list[str]:
    if (REPO_ROOT / "customer_service" / "__main__.py").exists():
        return [sys.executable, "-m", "customer_service"]
    return [sys.executable, "-c", "from customer_service.cli import main; main()"]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(folder: Path, *, ai_base_url: str | None = None,
                 extra: dict[str, dict[str, object]] | None = None) -> Path:
    """A config in ``folder``: loopback, port 0, SQLite ``cs.db`` next to it, generous limits;
    ``extra``: more sections (``{"identity": {"secret": …}}``)."""
    sections: dict[str, dict[str, object]] = {
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 3.0,
                   "rate_limit_per_second": 1000.0, "rate_limit_burst": 2000,
                   "rate_limit_strikes": 1000},
        "storage": {"sqlite_path": "cs.db"},
        # CS_BROWSER_LOG_LEVEL=info (or debug) when investigating a failure: the log is in the report.
        "log": {"level": os.environ.get("CS_BROWSER_LOG_LEVEL", "warning")},
        "ai": {"enabled": False},
        "auth": {"scrypt_n": 2**14},  # the least accepted: agents added and logged in quickly
        # Other features' tests count messages from the visitor's first one (test_hours.py
        # turns auto-replies on).
        "auto_replies": {"welcome": {}, "away": {}, "closed": {}},
    }
    if ai_base_url is not None:
        sections["ai"] = {"enabled": True, "base_url": ai_base_url, "api_key": "test",
                          "mode": "when_no_agent", "prewarm_connections": 1}
    sections.update(extra or {})
    lines: list[str] = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in keys.items())
        lines.append("")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "customer-service.toml"
    path.write_text("\n".join(lines))
    return path


def make_agents_db(folder: Path, agents: Sequence[AgentAccount] = tuple(AGENTS.values())) -> Path:
    """A SQLite database with ``agents`` added through the CLI (``agents add --password-stdin``)."""
    config = write_config(folder)
    for agent in agents:
        subprocess.run([*_cli(), f"--config={config}", "agents", "add", agent.username,
                        "--name", agent.name, "--password-stdin"],
                       input=agent.password + "\n", capture_output=True, text=True, check=True,
                       env=_environment(), cwd=folder, timeout=30)
    return folder / "cs.db"


def _wait_for_line(log_path: Path, pattern: re.Pattern[str], process: subprocess.Popen[bytes],
                   timeout: float, what: str) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        text = log_path.read_text(errors="replace")
        match = pattern.search(text)
        if match:
            return match
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start within {timeout} s:\n{text[-3000:]}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


class _Process:
    """A child process whose output goes to a log file (no pipes to drain or to leak)."""

    def __init__(self, command: list[str], log_path: Path, cwd: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                            stderr=subprocess.STDOUT, env=_environment(), cwd=cwd)
        except BaseException:
            self._log.close()
            raise

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        try:
            _stop(self.process)
        finally:
            self._log.close()


class ServerProcess(_Process):
    """``customer-service --config=…`` on 127.0.0.1, port 0; the port is read from its banner."""

    def __init__(self, folder: Path, config: Path) -> None:
        super().__init__([*_cli(), f"--config={config}"], folder / "server.log", folder)
        self.folder = folder
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        match = _wait_for_line(self.log_path, re.compile(r"http://127\.0\.0\.1:(\d+)/healthz"),
                               self.process, timeout, "the server")
        self.port = int(match.group(1))
        with httpx.Client(timeout=2.0) as client:
            while True:
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"/healthz never answered 200:\n{self.log_text()[-3000:]}")
                time.sleep(0.05)


@contextlib.contextmanager
def running_server(folder: Path, *, agents_db: Path | None = None,
                   ai_base_url: str | None = None,
                   extra: dict[str, dict[str, object]] | None = None) -> Iterator[ServerProcess]:
    """A server in ``folder`` (its config, database and log), stopped (SIGTERM) on exit.

    ``agents_db``: a database from :func:`make_agents_db`, copied in first; ``extra``: more
    config sections.
    """
    config = write_config(folder, ai_base_url=ai_base_url, extra=extra)
    if agents_db is not None:
        for suffix in ("", "-wal", "-shm"):
            source = agents_db.with_name(agents_db.name + suffix)
            if source.exists():
                shutil.copyfile(source, folder / ("cs.db" + suffix))
    server = ServerProcess(folder, config)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class FakeUpstream(_Process):
    """``python -m tests.fakes.openai_server`` (an OpenAI-compatible streaming fake)."""

    def __init__(self, folder: Path, tokens: int, chunk_delay: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__([sys.executable, "-m", "tests.fakes.openai_server", "--port", "0",
                          "--tokens", str(tokens), "--chunk-delay", str(chunk_delay)],
                         folder / "fake-openai.log", REPO_ROOT)
        self.tokens = tokens
        self.base_url = ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        match = _wait_for_line(self.log_path, re.compile(r"listening on (\S+)"), self.process,
                               timeout, "the fake OpenAI server")
        url = match.group(1).rstrip("/")
        self.base_url = url if url.endswith("/v1") else url + "/v1"

    @property
    def reply_text(self) -> str:
        """The whole reply it streams (see ``_cli_tokens`` in tests/fakes/openai_server.py)."""
        return "".join("Hello" if i == 0 else f" word{i}" for i in range(self.tokens))


@contextlib.contextmanager
def running_fake_upstream(folder: Path, *, tokens: int = 20,
                          chunk_delay: float = 0.15) -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(folder, tokens, chunk_delay)
    try:
        upstream.wait_ready()
        yield upstream
    finally:
        upstream.stop()


# ---- HTTP API -------------------------------------------------------------------------------


def login_token(base_url: str, agent: AgentAccount) -> str:
    response = httpx.post(f"{base_url}/api/v1/login", timeout=5.0,
                          json={"username": agent.username, "password": agent.password})
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def api_messages(base_url: str, token: str, conversation_id: int | str) -> list[dict[str, Any]]:
    """Every message of a conversation through ``GET /api/v1/conversations/{id}/messages``."""
    messages: list[dict[str, Any]] = []
    before: int | None = None
    with httpx.Client(base_url=base_url, timeout=5.0,
                      headers={"authorization": f"Bearer {token}"}) as client:
        for _ in range(100):
            params: dict[str, int] = {"limit": 500}
            if before is not None:
                params["before_seq"] = before
            response = client.get(f"/api/v1/conversations/{conversation_id}/messages", params=params)
            response.raise_for_status()
            page: list[dict[str, Any]] = response.json()["messages"]
            messages[:0] = page
            if len(page) < 500:
                break
            before = page[0]["seq"]
    return messages


def agent_ids(base_url: str, token: str) -> dict[str, int]:
    """username → agent id, from ``GET /api/v1/agents``."""
    response = httpx.get(f"{base_url}/api/v1/agents", timeout=5.0,
                         headers={"authorization": f"Bearer {token}"})
    response.raise_for_status()
    return {agent["username"]: int(agent["id"]) for agent in response.json()["agents"]}


# ---- a visitor over a raw WebSocket ---------------------------------------------------------

_ids = itertools.count(1)


@dataclass(frozen=True)
class SeededConversation:
    conversation_id: int
    visitor_token: str
    last_seq: int


def seed_conversation(base_url: str, texts: Sequence[str], *, name: str | None = None,
                      page: str | None = None, visitor_token: str | None = None,
                      timeout: float = 20.0) -> SeededConversation:
    """A visitor who says ``texts`` over ``/ws/visitor`` (trio-websocket, in its own trio.run),
    waiting for every ack; returns where it ended."""
    import trio  # noqa: PLC0415
    from trio_websocket import open_websocket_url  # noqa: PLC0415

    ws_url = base_url.replace("http://", "ws://", 1) + "/ws/visitor"

    async def run() -> SeededConversation:
        with trio.fail_after(timeout):
            async with open_websocket_url(ws_url) as ws:
                hello: dict[str, Any] = {"type": "hello"}
                for key, value in (("name", name), ("page", page), ("visitor_token", visitor_token)):
                    if value is not None:
                        hello[key] = value
                await ws.send_message(json.dumps(hello))
                welcome: dict[str, Any] = {}
                while welcome.get("type") != "welcome":
                    welcome = json.loads(await ws.get_message())
                pending: set[str] = set()
                for text in texts:
                    frame_id = f"seed-{os.getpid()}-{next(_ids)}"
                    pending.add(frame_id)
                    await ws.send_message(json.dumps({"type": "text", "id": frame_id, "content": text}))
                last_seq = int(welcome["last_seq"])
                while pending:
                    frame = json.loads(await ws.get_message())
                    if frame["type"] == "error":
                        raise RuntimeError(f"the server refused a seeded message: {frame}")
                    if frame["type"] == "ack" and frame.get("id") in pending:
                        pending.discard(frame["id"])
                        last_seq = max(last_seq, int(frame["seq"]))
                return SeededConversation(int(welcome["conversation_id"]),
                                          str(welcome["visitor_token"]), last_seq)

    return trio.run(run)


# ---- a third-party site that embeds the widget ------------------------------------------------


class EmbeddingSite:
    """A plain HTTP site on its own origin (127.0.0.1:<another port>) whose every page embeds
    ``<script src="<server>/widget.js" …>``: the widget as customers install it."""

    def __init__(self, chat_url: str, script_attributes: str = "") -> None:
        import http.server  # noqa: PLC0415
        import threading  # noqa: PLC0415

        page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>Example shop</title></head><body><h1>Example shop</h1>"
                f"<p>Blue widget, 42 EUR.</p>"
                f"<script src=\"{chat_url}/widget.js\" {script_attributes} async></script>"
                f"</body></html>").encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/favicon.ico":
                    self.send_response(204)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="embedding-site")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
