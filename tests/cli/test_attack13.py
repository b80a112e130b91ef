"""Issue 13's attack pass on the CLI. ``conversations export`` when the output cannot be
written (a full disk, a file over the size limit, stdout on a full device): one clear line
and exit 1, never a traceback; the half-written file removed, a device never. A bot agent
gets no password."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from customer_service.storage.base import Store
from tests.cluster.harness import cli, environment
from tests.reports_fixture import Fixture, fill

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]
RANGE = ("--since", "2026-11-02", "--until", "2026-11-03")
FULL = Path("/dev/full")


@pytest.fixture
def fixture(store_call: StoreCall) -> Fixture:
    found: Fixture = store_call(fill)
    return found


LIMIT = 64 * 1024


def _small_files() -> None:
    """In the child: no file grows past LIMIT (the write fails with EFBIG rather than
    SIGXFSZ killing it). The database's files stay under it: the export only reads."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _long_messages(config_path: Path, conversation_id: int) -> None:
    """Enough text that the export outgrows LIMIT (the fixture's is a few KB)."""
    with sqlite3.connect(config_path.parent / "test.db") as db:
        (created,) = db.execute("SELECT created_at FROM conversations WHERE id = ?",
                                (conversation_id,)).fetchone()
        db.executemany(
            "INSERT INTO messages (conversation_id, seq, sender_role, sender_id, sender_name,"
            " content, created_at) VALUES (?, ?, 'system', NULL, 'system', ?, ?)",
            [(conversation_id, 1000 + n, "x" * 2000, created + n) for n in range(60)])


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_write_that_fails_is_one_line_and_the_partial_file_is_removed(
        fixture: Fixture, config_path: Path, tmp_path: Path, fmt: str) -> None:
    _long_messages(config_path, fixture.ids["C1"])
    target = tmp_path / f"out.{fmt}"
    done = subprocess.run(
        [*cli(), f"--config={config_path}", "conversations", "export", *RANGE, "--format", fmt,
         "-q", str(target)], cwd=tmp_path, env=environment(), capture_output=True, text=True,
        timeout=60, check=False, preexec_fn=_small_files)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"Error: cannot write {target}: File too large\n"
    assert not target.exists()


@pytest.mark.skipif(not FULL.exists(), reason="needs Linux's /dev/full")
def test_a_full_device_is_one_line_and_is_not_removed(run: CliRun, fixture: Fixture) -> None:
    result = run("conversations", "export", *RANGE, "--format", "csv", "--force", str(FULL))
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write {FULL}: No space left on device\n"
    assert FULL.exists() and not FULL.is_file()


@pytest.mark.skipif(not FULL.exists(), reason="needs Linux's /dev/full")
def test_stdout_on_a_full_device_is_one_line(fixture: Fixture, config_path: Path,
                                             tmp_path: Path) -> None:
    with FULL.open("wb") as full:
        done = subprocess.run(
            [*cli(), f"--config={config_path}", "conversations", "export", *RANGE,
             "--format", "jsonl", "-"], cwd=tmp_path, env=environment(), stdout=full,
            stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr == "Error: cannot write stdout: No space left on device\n"


def test_a_closed_pipe_ends_quietly(fixture: Fixture, config_path: Path,
                                    tmp_path: Path) -> None:
    """``| head -1``: the reader goes away; no traceback (click ends a broken pipe)."""
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "wb") as closed:
        done = subprocess.run(
            [*cli(), f"--config={config_path}", "conversations", "export", *RANGE,
             "--format", "jsonl", "-"], cwd=tmp_path, env=environment(), stdout=closed,
            stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr


def test_a_bot_agent_gets_no_password(run: CliRun) -> None:
    """``agents passwd BOT`` used to set one and say "their tokens are revoked" while the
    API token went on working (issue 13's attack pass)."""
    assert run("tokens", "create", "crm-bot", "--scope", "write").exit_code == 0
    refused = run("agents", "passwd", "crm-bot", "--password-stdin", input="pw pw pw pw\n")
    assert refused.exit_code == 1
    assert refused.output == ("Error: 'crm-bot' is an API token's bot agent, which has no "
                              "password (see 'customer-service tokens')\n")
    assert json.loads(run("tokens", "list", "--json").stdout)[0]["revoked"] is False


@pytest.mark.skipif(not FULL.exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("args", [("reports", *RANGE), ("reports", *RANGE, "--json"),
                                  ("agents", "list")])
def test_any_command_on_a_full_stdout_is_one_line(fixture: Fixture, config_path: Path,
                                                  tmp_path: Path, args: tuple[str, ...]) -> None:
    """It was a traceback (the table's rich console, click.echo)."""
    with FULL.open("wb") as full:
        done = subprocess.run([*cli(), f"--config={config_path}", *args], cwd=tmp_path,
                              env=environment(), stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr == "Error: cannot write the output: No space left on device\n"
