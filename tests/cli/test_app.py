"""The root group: help, version, lazy imports, config discovery, errors, serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from customer_service import __version__
from customer_service.cli import cli
from customer_service.cli.app import _single_error
from customer_service.cli.banner import banner_rows
from customer_service.config import Config, load_config
from customer_service.errors import Conflict, NotFound

CliRun = Callable[..., Result]

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("trio", "rich", "hypercorn", "httpx", "msgspec", "pymysql", "sqlite3",
         "customer_service.storage", "customer_service.server")

COMMANDS = [[], ["serve"], ["agents"], ["agents", "add"], ["agents", "list"],
            ["agents", "disable"], ["agents", "enable"], ["agents", "passwd"],
            ["agents", "token"], ["conversations"], ["conversations", "list"],
            ["conversations", "show"], ["db"], ["db", "migrate"], ["db", "status"], ["stats"],
            ["config"], ["config", "init"], ["config", "check"], ["config", "docs"], ["doctor"]]


def test_help_lists_every_command(run: CliRun) -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("serve", "agents", "conversations", "db", "stats", "config"):
        assert name in result.output
    assert "--config" in result.output


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "root")
def test_every_command_has_help(run: CliRun, args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_version(run: CliRun) -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"customer-service {__version__}"


def test_help_imports_nothing_heavy() -> None:
    """``--help`` must stay fast: trio, rich, storage and server are imported lazily."""
    code = (
        "import sys, json\n"
        "from customer_service.cli import cli\n"
        "for args in ARGS:\n"
        "    try:\n"
        "        cli.main(args + ['--help'], prog_name='customer-service')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    ).replace("ARGS", repr(COMMANDS))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=REPO, check=True, timeout=60)
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"--help imported {heavy}"


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "customer_service", "--version"],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"customer-service {__version__}"


# --- bad config files: a clean error naming file, line and key ----------------

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def _assert_clean_error(result: Any, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click's error exit, not a crash
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: ")
    for fragment in fragments:
        assert fragment in result.output


@pytest.mark.parametrize("args", [["agents", "list"], ["stats"], ["serve"], []],
                         ids=["agents list", "stats", "serve", "bare"])
def test_unknown_key_names_file_line_and_key(run: CliRun, tmp_path: Path,
                                             args: list[str]) -> None:
    path = _write(tmp_path, "[server]\nport = 8080\nprot = 1\n")
    result = run(*args, config=path)
    _assert_clean_error(result, f"{path}:3", "prot", "[server]")


def test_bad_type_names_file_line_and_key(run: CliRun, tmp_path: Path) -> None:
    path = _write(tmp_path, '[storage]\nbackend = "sqlite"\n\n[server]\nport = "eighty"\n')
    _assert_clean_error(run("agents", "list", config=path), f"{path}:5", "port", "integer")


def test_invalid_toml_names_the_line(run: CliRun, tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nport = 8080\nhost = \n")
    _assert_clean_error(run("agents", "list", config=path), f"{path}:3", "invalid TOML")


def test_missing_config_file(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    _assert_clean_error(run("agents", "list", config=path), str(path), "not found",
                        "config init")


def test_bad_environment_value_names_the_variable(run: CliRun) -> None:
    result = run("agents", "list", env={"CUSTOMER_SERVICE_SERVER_PORT": "high"})
    _assert_clean_error(result, "CUSTOMER_SERVICE_SERVER_PORT")


def test_config_env_var_chooses_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nbogus = 1\n")
    result = CliRunner().invoke(cli, ["agents", "list"],
                                env={"CUSTOMER_SERVICE_CONFIG": str(path)})
    _assert_clean_error(result, f"{path}:2", "bogus")


def test_default_config_file_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "customer-service.toml").write_text("[log]\nlevel = \"loud\"\n")
    result = CliRunner().invoke(cli, ["stats"])
    _assert_clean_error(result, "customer-service.toml:2", "level")


def test_embedded_defaults_without_a_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 0, result.output
    assert "embedded defaults" in result.output
    assert str(tmp_path / "customer-service.db") in result.output


def test_a_broken_default_file_does_not_block_config_init(tmp_path: Path) -> None:
    (tmp_path / "customer-service.toml").write_text("this is not toml")
    result = CliRunner().invoke(cli, ["config", "init", "other.toml"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "other.toml").is_file()


def test_single_error_unwraps_one_error_groups() -> None:
    inner = NotFound("nope")
    assert _single_error(inner) is inner
    assert _single_error(ExceptionGroup("x", [ExceptionGroup("y", [inner])])) is inner
    assert _single_error(ExceptionGroup("x", [inner, Conflict("c")])) is None
    assert _single_error(ExceptionGroup("x", [ValueError()])) is None


# --- serve and the bare command -------------------------------------------------

@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Replace ``customer_service.server.run`` so serve returns after printing the banner."""
    calls: list[Config] = []
    module = types.ModuleType("customer_service.server.run")

    def run_server(config: Config, banner: Any = None) -> None:
        calls.append(config)
        if banner is not None:
            banner(f"http://{config.server.host}:{config.server.port or 43210}")

    module.run_server = run_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "customer_service.server.run", module)
    return calls


@pytest.mark.parametrize("args", [[], ["serve"]], ids=["bare", "serve"])
def test_serve_prints_the_banner(run: CliRun, fake_server: list[Config], config_path: Path,
                                 args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert len(fake_server) == 1
    assert fake_server[0].source == str(config_path)
    for url in ("http://127.0.0.1:43210/healthz", "http://127.0.0.1:43210/metrics",
                "ws://127.0.0.1:43210/ws/visitor", "ws://127.0.0.1:43210/ws/agent"):
        assert url in result.output
    assert str(config_path.parent / "test.db") in result.output
    assert "AI" in result.output and "off" in result.output


def test_serve_host_and_port_override_the_file(run: CliRun, fake_server: list[Config]) -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", "9999")
    assert result.exit_code == 0, result.output
    assert fake_server[0].server.host == "0.0.0.0"
    assert fake_server[0].server.port == 9999
    assert "http://0.0.0.0:9999/healthz" in result.output


def test_banner_uses_public_url(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[server]\npublic_url = "https://chat.example.com/"\n[ai]\nenabled = true\n')
    rows = dict(banner_rows(load_config(path, environ={}), "http://127.0.0.1:8080"))
    assert rows["Health"] == "https://chat.example.com/healthz"
    assert rows["Agent dashboard"] == "https://chat.example.com/agent"
    assert rows["Widget"] == '<script src="https://chat.example.com/widget.js"></script>'
    assert rows["Agent socket"] == "wss://chat.example.com/ws/agent"
    assert rows["Listening on"] == "http://127.0.0.1:8080"
    assert rows["AI"] == "on"
