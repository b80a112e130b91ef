"""``conversations list|show``, ``db migrate|status`` and ``stats``."""

from __future__ import annotations

import json
import re
import secrets
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
from click.testing import Result

from customer_service.auth import token_hash
from customer_service.cli.doctor_checks import newest_migration
from customer_service.core.models import ConversationStatus, NewMessage, Role
from customer_service.storage._sql import SQLITE
from customer_service.storage._sql_schema import load_migrations
from customer_service.storage.base import Store

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]
LATEST = {backend: newest_migration(backend) for backend in ("sqlite", "mysql")}


@pytest.fixture
def seeded(store_call: StoreCall) -> dict[str, int]:
    """Two visitors: Vera (open, 3 messages) and Max (closed, 1 message)."""

    async def work(store: Store) -> dict[str, int]:
        vera = await store.create_visitor(token_hash("v1"), "Vera [vip]", "vera@example.com",
                                          "/pricing")
        max_ = await store.create_visitor(token_hash("v2"), "Max", "", "/")
        c1 = await store.current_conversation(vera.id)
        c2 = await store.current_conversation(max_.id)
        await store.append_messages([
            NewMessage(c1.id, Role.VISITOR, vera.id, "Vera [vip]", "Hello, is anyone there?"),
            NewMessage(c2.id, Role.VISITOR, max_.id, "Max", "Bye"),
            NewMessage(c1.id, Role.AI, None, "Assistant", "Yes, how can I help?"),
            NewMessage(c1.id, Role.VISITOR, vera.id, "Vera [vip]", "[bold]pricing[/bold]?"),
        ])
        await store.set_conversation_state(c2.id, ConversationStatus.CLOSED, None)
        return {"open": c1.id, "closed": c2.id}

    result: dict[str, int] = store_call(work)
    return result


def test_list_table(run: CliRun, seeded: dict[str, int]) -> None:
    result = run("conversations", "list")
    assert result.exit_code == 0, result.output
    assert "2 conversation(s)" in result.output
    assert "Vera [vip]" in result.output and "Max" in result.output
    assert "open" in result.output and "closed" in result.output


def test_list_json(run: CliRun, seeded: dict[str, int]) -> None:
    result = run("conversations", "list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {c["id"] for c in data} == set(seeded.values())
    vera = next(c for c in data if c["id"] == seeded["open"])
    assert vera["status"] == "open"
    assert vera["last_seq"] == 3
    assert vera["visitor"]["email"] == "vera@example.com"
    assert vera["last_message"]["content"] == "[bold]pricing[/bold]?"
    assert vera["last_message"]["created_at"].endswith("Z")


def test_list_status_and_limit(run: CliRun, seeded: dict[str, int]) -> None:
    data = json.loads(run("conversations", "list", "--status", "closed", "--json").stdout)
    assert [c["id"] for c in data] == [seeded["closed"]]
    data = json.loads(run("conversations", "list", "--limit", "1", "--json").stdout)
    assert len(data) == 1


def test_list_bad_status_is_a_usage_error(run: CliRun) -> None:
    result = run("conversations", "list", "--status", "lost")
    assert result.exit_code == 2
    assert "open" in result.output and "closed" in result.output


def test_list_empty(run: CliRun) -> None:
    result = run("conversations", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


def test_show_prints_the_messages(run: CliRun, seeded: dict[str, int]) -> None:
    result = run("conversations", "show", str(seeded["open"]))
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Conversation {seeded['open']}" in out
    assert "vera@example.com" in out
    assert "Hello, is anyone there?" in out and "Yes, how can I help?" in out
    assert "[bold]pricing[/bold]?" in out  # content shown as typed, not as markup
    assert out.index("Hello") < out.index("Yes, how") < out.index("[bold]pricing")


def test_show_json(run: CliRun, seeded: dict[str, int]) -> None:
    result = run("conversations", "show", str(seeded["open"]), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["id"] == seeded["open"]
    assert data["needs_agent"] is False
    assert data["visitor"]["name"] == "Vera [vip]"
    assert [m["seq"] for m in data["messages"]] == [1, 2, 3]
    assert [m["sender_role"] for m in data["messages"]] == ["visitor", "ai", "visitor"]


def test_show_unknown_conversation(run: CliRun) -> None:
    result = run("conversations", "show", "999")
    assert result.exit_code == 1
    assert "Error: no conversation 999" in result.output
    assert "Traceback" not in result.output


def test_show_an_id_no_database_holds_is_a_usage_error(run: CliRun) -> None:
    for bad in ("0", str(2**63), "9" * 30):
        result = run("conversations", "show", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "Invalid value for 'ID'" in result.output
        assert "Traceback" not in result.output


# --- the tables, line by line ------------------------------------------------------------

def _lines(result: Result) -> list[str]:
    """The output's lines, times replaced (they are the test's own run time)."""
    assert result.exit_code == 0, result.output
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "YYYY-MM-DD HH:MM", result.output).split("\n")


@pytest.fixture
def assigned(store_call: StoreCall) -> None:
    """Vera's conversation, taken by Alice Martin (username alice) with a system note."""

    async def work(store: Store) -> None:
        alice = await store.create_agent("alice", "Alice Martin", "x")
        vera = await store.create_visitor(token_hash("v1"), "Vera", "vera@example.com",
                                          "/pricing")
        conv = await store.current_conversation(vera.id)
        await store.append_messages([
            NewMessage(conv.id, Role.VISITOR, vera.id, "Vera", "Hello?"),
            NewMessage(conv.id, Role.SYSTEM, None, "system", "Alice Martin joined"),
            NewMessage(conv.id, Role.AGENT, alice.id, "Alice Martin", "Hi"),
        ])
        await store.set_conversation_state(conv.id, ConversationStatus.ASSIGNED, alice.id)

    store_call(work)


def test_list_lines_name_the_agent(run: CliRun, assigned: None) -> None:
    assert _lines(run("conversations", "list")) == [
        "1 conversation(s)",
        "┏━━━━┳━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━┳━━━━━━━━┳━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━┓",
        "┃ id ┃ status   ┃ visitor ┃ agent        ┃ msgs ┃ unread ┃ updated (UTC)    ┃ last message     ┃",
        "┡━━━━╇━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━╇━━━━━━━━╇━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━┩",
        "│ 1  │ assigned │ Vera    │ Alice Martin │ 3    │ 3      │ YYYY-MM-DD HH:MM │ Alice Martin: Hi │",
        "└────┴──────────┴─────────┴──────────────┴──────┴────────┴──────────────────┴──────────────────┘",
        "",
    ]


def test_show_lines_name_the_agent_and_the_system_once(run: CliRun, assigned: None) -> None:
    assert _lines(run("conversations", "show", "1")) == [
        "Conversation 1: assigned, agent Alice Martin, Vera <vera@example.com> on /pricing, "
        "started YYYY-MM-DD HH:MM UTC",
        "3 message(s)",
        "┏━━━━━┳━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━┓",
        "┃ seq ┃ time (UTC)       ┃ from                 ┃ message             ┃",
        "┡━━━━━╇━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━┩",
        "│ 1   │ YYYY-MM-DD HH:MM │ Vera (visitor)       │ Hello?              │",
        "│ 2   │ YYYY-MM-DD HH:MM │ system               │ Alice Martin joined │",
        "│ 3   │ YYYY-MM-DD HH:MM │ Alice Martin (agent) │ Hi                  │",
        "└─────┴──────────────────┴──────────────────────┴─────────────────────┘",
        "",
    ]


def test_agents_list_and_stats_lines_end_without_spaces(run: CliRun, assigned: None,
                                                         tmp_path: Path) -> None:
    assert _lines(run("agents", "list")) == [
        "1 agent(s)",
        "┏━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━━┳━━━━━━┳━━━━━━━━━━━━━━━━━━┓",
        "┃ id ┃ username ┃ name         ┃ status  ┃ availability ┃ capacity    ┃ open ┃ created (UTC)    ┃",
        "┡━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━━━━━━━━┩",
        "│ 1  │ alice    │ Alice Martin │ enabled │ online       │ 5 (default) │ 1    │ YYYY-MM-DD HH:MM │",
        "└────┴──────────┴──────────────┴─────────┴──────────────┴─────────────┴──────┴──────────────────┘",
        "",
    ]
    lines = _lines(run("stats"))
    assert lines[0] == f"Database: SQLite {tmp_path / 'test.db'}"
    assert [line for line in lines if line != line.rstrip()] == []


# --- db -------------------------------------------------------------------------------

def test_migrate_then_up_to_date(run: CliRun, tmp_path: Path) -> None:
    result = run("db", "migrate")
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "test.db") in result.output
    assert "applied migration 1" in result.output
    result = run("db", "migrate")
    assert result.exit_code == 0, result.output
    assert "Up to date" in result.output


def test_migrate_json(run: CliRun) -> None:
    first = json.loads(run("db", "migrate", "--json").stdout)
    assert first["before"] == 0
    assert first["applied"] and first["applied"][0] == 1
    assert first["version"] == first["applied"][-1]
    again = json.loads(run("db", "migrate", "--json").stdout)
    assert again["applied"] == [] and again["version"] == first["version"]


def test_status_changes_nothing(run: CliRun, tmp_path: Path) -> None:
    file = tmp_path / "test.db"
    result = run("db", "status")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Database: SQLite {file}\n"
        f"Schema version: none; the SQLite file {file} does not exist ('customer-service db "
        "migrate' creates it)\n")
    assert not file.exists()
    assert json.loads(run("db", "status", "--json").stdout) == {
        "database": f"SQLite {file}", "exists": False, "version": 0, "latest": LATEST["sqlite"]}
    sqlite3.connect(file).close()  # an empty file: there, but not migrated
    result = run("db", "status")
    assert result.output.endswith(
        "Schema version: 0 (empty, not migrated; run 'customer-service db migrate')\n")
    assert _sqlite_tables(file) == []
    run("db", "migrate")
    result = run("db", "status")
    assert result.output.endswith(f"Schema version: {LATEST['sqlite']} (up to date)\n")
    data = json.loads(run("db", "status", "--json").stdout)
    assert data == {"database": f"SQLite {file}", "exists": True,
                    "version": LATEST["sqlite"], "latest": LATEST["sqlite"]}


def test_status_of_an_older_schema_says_not_migrated(run: CliRun, tmp_path: Path) -> None:
    run("db", "migrate")
    db = sqlite3.connect(tmp_path / "test.db")
    with db:
        db.execute("DELETE FROM schema_migrations WHERE version = ?", (LATEST["sqlite"],))
    db.close()
    result = run("db", "status")
    # The migration before the newest (numbers may skip: each feature has its own).
    previous = max(m.version for m in load_migrations(SQLITE) if m.version < LATEST["sqlite"])
    assert result.output.endswith(
        f"Schema version: {previous} (not migrated to {LATEST['sqlite']}, this "
        "release's; run 'customer-service db migrate')\n")


def _sqlite_tables(file: Path) -> list[str]:
    db = sqlite3.connect(file)
    try:
        return [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
    finally:
        db.close()


def _mysql_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 3306), timeout=1):
            return True
    except OSError:
        return False


def _mysql(sql: str) -> list[tuple[Any, ...]]:
    server = pymysql.connect(host="127.0.0.1", user="root", password="")
    try:
        with server.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        server.close()


@pytest.mark.mysql
@pytest.mark.skipif(not _mysql_up(), reason="no MariaDB on 127.0.0.1:3306")
def test_status_creates_no_mysql_database(run: CliRun, tmp_path: Path) -> None:
    name = f"cs_test_{secrets.token_hex(6)}"
    path = tmp_path / "mysql.toml"
    path.write_text(f'[storage]\nbackend = "mysql"\nmysql_database = "{name}"\n')
    where = f"MySQL root@127.0.0.1:3306/{name}"
    try:
        result = run("db", "status", config=path)
        assert result.exit_code == 0, result.output
        assert result.output == (
            f"Database: {where}\n"
            f"Schema version: none; the MySQL database {name} does not exist on "
            "127.0.0.1:3306 ('customer-service db migrate' creates it)\n")
        assert json.loads(run("db", "status", "--json", config=path).stdout)["exists"] is False
        assert _mysql(f"SHOW DATABASES LIKE '{name}'") == []
        _mysql(f"CREATE DATABASE `{name}`")
        result = run("db", "status", config=path)
        assert result.output.endswith(
            "Schema version: 0 (empty, not migrated; run 'customer-service db migrate')\n")
        assert _mysql(f"SHOW TABLES FROM `{name}`") == []  # no migration ran
        assert run("db", "migrate", config=path).exit_code == 0
        result = run("db", "status", config=path)
        assert result.output.endswith(f"Schema version: {LATEST['mysql']} (up to date)\n")
    finally:
        _mysql(f"DROP DATABASE IF EXISTS `{name}`")


def test_an_unreachable_database_is_a_clean_error(run: CliRun, tmp_path: Path) -> None:
    path = tmp_path / "mysql.toml"
    path.write_text('[storage]\nbackend = "mysql"\nmysql_host = "127.0.0.1"\nmysql_port = 1\n')
    result = run("stats", config=path)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output


# --- stats ----------------------------------------------------------------------------

def test_stats(run: CliRun, seeded: dict[str, int], add_agent: Callable[..., Result]) -> None:
    add_agent("alice")
    add_agent("bob")
    run("agents", "disable", "bob")
    result = run("stats")
    assert result.exit_code == 0, result.output
    assert "agents" in result.output and "2 (1 disabled)" in result.output
    data = json.loads(run("stats", "--json").stdout)
    assert data == {"agents": 2, "agents_disabled": 1, "visitors": 2,
                    "conversations_by_status": data["conversations_by_status"],
                    "conversations": 2, "messages": 4}
    assert data["conversations_by_status"].get("open") == 1
    assert data["conversations_by_status"].get("closed") == 1
