"""``conversations list|show``, ``db migrate|status`` and ``stats``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from customer_service.auth import token_hash
from customer_service.core.models import ConversationStatus, NewMessage, Role
from customer_service.storage.base import Store

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]


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
    assert data["visitor"]["name"] == "Vera [vip]"
    assert [m["seq"] for m in data["messages"]] == [1, 2, 3]
    assert [m["sender_role"] for m in data["messages"]] == ["visitor", "ai", "visitor"]


def test_show_unknown_conversation(run: CliRun) -> None:
    result = run("conversations", "show", "999")
    assert result.exit_code == 1
    assert "Error: no conversation 999" in result.output
    assert "Traceback" not in result.output


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


def test_status_changes_nothing(run: CliRun) -> None:
    result = run("db", "status")
    assert result.exit_code == 0, result.output
    assert "Schema version: 0" in result.output and "db migrate" in result.output
    run("db", "migrate")
    data = json.loads(run("db", "status", "--json").stdout)
    assert data["version"] >= 1


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
