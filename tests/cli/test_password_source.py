"""A password piped in without ``--password-stdin``: one clear line, not getpass's warning.

These run the CLI in a subprocess whose stdin is a pipe and which has no controlling
terminal (a new session), as in a script or a CI job: there getpass would fall back to
reading stdin with a ``GetPassWarning`` and end in ``Aborted!``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

CliRun = Callable[..., Result]

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"  # as in conftest.py
WANTED = ("Error: stdin is not a terminal, so the password cannot be asked for; to read it "
          "from stdin, add --password-stdin\n")


def _run_piped(config_path: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("CUSTOMER_SERVICE_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "customer_service", "--config", str(config_path), *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=config_path.parent,
        timeout=60, check=False, start_new_session=True)


@pytest.mark.parametrize("command", [["agents", "add", "alice"], ["agents", "passwd", "alice"]],
                         ids=["add", "passwd"])
def test_a_piped_password_without_the_flag_says_to_use_it(config_path: Path,
                                                          command: list[str]) -> None:
    done = _run_piped(config_path, *command, stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert done.returncode == 1
    assert done.stderr == WANTED
    assert done.stdout == ""
    assert not (config_path.parent / "test.db").exists()  # refused before opening the database


def test_a_piped_password_with_the_flag_works(config_path: Path) -> None:
    done = _run_piped(config_path, "agents", "add", "alice", "--password-stdin",
                      stdin=f"{PASSWORD}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Added agent alice (id 1")
    assert "Warning" not in done.stderr


def test_no_terminal_in_process(run: CliRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("customer_service.cli.agents._stdin_is_terminal", lambda: False)
    result = run("agents", "add", "alice", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 1
    assert result.output == WANTED
