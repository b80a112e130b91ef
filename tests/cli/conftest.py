"""CLI tests run the commands in-process through click's CliRunner.

Each test gets its own working directory and a config file in ``tmp_path`` whose
SQLite database lives next to it, and no ``CUSTOMER_SERVICE_*`` variables from
the environment of whoever runs the tests.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from customer_service.cli import cli
from customer_service.cli.common import with_store
from customer_service.config import Config, load_config
from customer_service.storage.base import Store

T = TypeVar("T")
PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("CUSTOMER_SERVICE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # CliRunner's stdin stands for the terminal the password prompts read from (the real
    # check is tested in a subprocess with a pipe on stdin: test_password_source.py).
    monkeypatch.setattr("customer_service.cli.agents._stdin_is_terminal", lambda: True)
    yield


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "test.toml"
    # scrypt_n: the least accepted, so adding agents takes milliseconds, not 0.3 s.
    path.write_text('[storage]\nsqlite_path = "test.db"\n\n[server]\nport = 0\n\n'
                    '[auth]\nscrypt_n = 16384\n')
    return path


@pytest.fixture
def config(config_path: Path) -> Config:
    return load_config(config_path, environ={})


CliRun = Callable[..., Result]


@pytest.fixture
def run(config_path: Path) -> CliRun:
    """``run("agents", "list", input=...)``: the CLI with ``--config`` set to the test file."""

    def invoke(*args: str, input: str | None = None, config: Path | None = config_path,
               env: dict[str, str] | None = None) -> Result:
        prefix = ["--config", str(config)] if config is not None else []
        return CliRunner().invoke(cli, [*prefix, *args], input=input, env=env,
                                  catch_exceptions=False)

    return invoke


@pytest.fixture
def store_call(config: Config) -> Callable[[Callable[[Store], Awaitable[Any]]], Any]:
    """Run one async function against the test database (migrated), outside the CLI."""

    def call(work: Callable[[Store], Awaitable[T]]) -> T:
        return with_store(config, work)

    return call


@pytest.fixture
def add_agent(run: CliRun) -> Callable[..., Result]:
    """``add_agent("bob", "--name", "Bob")``: add an agent with PASSWORD, asserting success."""

    def add(username: str = "alice", *extra: str) -> Result:
        result = run("agents", "add", username, "--password-stdin", *extra,
                     input=PASSWORD + "\n")
        assert result.exit_code == 0, result.output
        return result

    return add
