"""``customer-service tokens create|list|revoke``: printed once, listed without the secret,
revoked, and one ``Error:`` line for each bad input."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from customer_service.auth import token_hash
from tests.cli.conftest import CliRun


def test_create_prints_the_token_once_and_stores_its_hash(run: CliRun, tmp_path: Path) -> None:
    created = run("tokens", "create", "crm-bot", "--scope", "write")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert len(secret) >= 32 and "\n" not in secret
    assert "shown only this once" in created.stderr and secret not in created.stderr
    listed = run("tokens", "list")
    assert "crm-bot" in listed.stdout and "write" in listed.stdout
    assert secret not in listed.stdout
    with sqlite3.connect(tmp_path / "test.db") as db:
        rows = db.execute("SELECT * FROM api_tokens").fetchall()
    assert secret not in repr(rows) and token_hash(secret) in repr(rows)


def test_list_json_and_revoke(run: CliRun) -> None:
    assert run("tokens", "list", "--json").stdout == "[]\n"
    assert "No API tokens yet" in run("tokens", "list").stdout
    assert run("tokens", "create", "reader", "--scope", "read").exit_code == 0
    assert run("tokens", "create", "writer", "--scope", "write").exit_code == 0
    revoked = run("tokens", "revoke", "reader")
    assert revoked.exit_code == 0 and "Revoked API token reader" in revoked.stdout
    listed = json.loads(run("tokens", "list", "--json").stdout)
    assert [(t["name"], t["scope"], t["revoked"]) for t in listed] == [
        ("reader", "read", True), ("writer", "write", False)]
    assert listed[0]["revoked_at"] is not None and listed[1]["last_used_at"] is None
    assert set(listed[0]) == {"name", "scope", "agent_id", "created_at", "last_used_at",
                              "revoked", "revoked_at"}


def test_the_bot_shows_in_agents_list_and_gets_no_login_token(
        run: CliRun, add_agent: Callable[..., Result]) -> None:
    add_agent("alice")
    assert run("tokens", "create", "crm-bot", "--scope", "read").exit_code == 0
    agents = {a["username"]: a for a in json.loads(run("agents", "list", "--json").stdout)}
    assert agents["crm-bot"]["bot"] is True and agents["alice"]["bot"] is False
    assert "(bot)" in run("agents", "list").stdout
    refused = run("agents", "token", "crm-bot")
    assert refused.exit_code == 1
    assert refused.output == ("Error: 'crm-bot' is an API token's bot agent, which cannot log "
                              "in (see 'customer-service tokens')\n")


@pytest.mark.parametrize(("args", "message"), [
    (("create", "", "--scope", "read"), "the token name is empty: give a name such as "
     "'crm-bot'"),
    (("create", "bad name", "--scope", "read"), "invalid token name 'bad name': 1-64 letters, "
     "digits or _ . @ -, starting with a letter or digit"),
    (("create", "crm-bot", "--scope", "admin"), "--scope: unknown scope 'admin': read or write"),
    (("revoke", "nope"), "no API token named 'nope' (see 'customer-service tokens list')"),
])
def test_bad_input_is_one_error_line(run: CliRun, args: tuple[str, ...], message: str) -> None:
    result = run("tokens", *args)
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    assert run("tokens", "list", "--json").stdout == "[]\n"


def test_a_duplicate_name_is_refused(run: CliRun, add_agent: Callable[..., Result]) -> None:
    assert run("tokens", "create", "crm-bot", "--scope", "read").exit_code == 0
    duplicate = run("tokens", "create", "crm-bot", "--scope", "write")
    assert duplicate.exit_code == 1
    assert duplicate.output == ("Error: an API token named 'crm-bot' exists already (revoked "
                                "ones keep their name)\n")
    add_agent("alice")
    taken = run("tokens", "create", "alice", "--scope", "read")
    assert taken.output.startswith("Error: an agent named 'alice' exists already")
    assert len(json.loads(run("tokens", "list", "--json").stdout)) == 1
