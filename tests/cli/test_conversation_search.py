"""``conversations search TEXT...``: a table of hits, ``--json``, paging, clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result

from customer_service.auth import token_hash
from customer_service.core.models import NewMessage, Role
from customer_service.storage.base import Store

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]


@pytest.fixture
def chats(store_call: StoreCall) -> tuple[int, int]:
    """Vera asked for a refund in Chinese; Max wrote in English; an agent noted a secret."""

    async def work(store: Store) -> tuple[int, int]:
        ids = []
        for n, (name, email, text) in enumerate((
                ("Vera", "vera@example.com", "我想退款，水壶坏了"),
                ("Max", "max@example.org", "My kettle is broken, refund please"))):
            visitor = await store.create_visitor(token_hash(f"v{n}"), name, email, "/")
            conv = await store.current_conversation(visitor.id)
            await store.append_messages([NewMessage(conv.id, Role.VISITOR, visitor.id, name,
                                                    text)])
            ids.append(conv.id)
        agent = await store.create_agent("alice", "Alice", "x")
        await store.add_note(ids[0], agent.id, "Alice", "退款 approved: secret")
        await store.append_messages([NewMessage(ids[0], Role.AGENT, agent.id, "Alice",
                                                "好的，马上为您办理退款")])
        return ids[0], ids[1]

    found: tuple[int, int] = store_call(work)
    return found


def test_a_chinese_search_prints_a_table(run: CliRun, chats: tuple[int, int]) -> None:
    vera, _ = chats
    result = run("conversations", "search", "退款")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "2 hit(s) for 退款"
    assert "conversation" in lines[2] and "snippet" in lines[2]
    rows = [line for line in lines if f"{vera} #" in line]
    assert len(rows) == 2
    assert "Alice (agent)" in rows[0] and "好的，马上为您办理退款" in rows[0]
    assert "Vera (visitor)" in rows[1] and "我想退款，水壶坏了" in rows[1]
    assert "secret" not in result.output     # private notes are not searched


def test_json_and_paging(run: CliRun, chats: tuple[int, int]) -> None:
    vera, max_ = chats
    first = run("conversations", "search", "退款", "--limit", "1", "--json")
    assert first.exit_code == 0, first.output
    page = json.loads(first.stdout)
    assert page["query"] == "退款"
    assert [(h["kind"], h["conversation_id"], h["seq"], h["role"]) for h in page["hits"]] == [
        ("message", vera, 2, "agent")]
    assert page["next"] == page["hits"][0]["cursor"]
    second = json.loads(run("conversations", "search", "退款", "--limit", "1", "--json",
                            "--before", page["next"]).stdout)
    assert [(h["conversation_id"], h["seq"]) for h in second["hits"]] == [(vera, 1)]

    words = json.loads(run("conversations", "search", "KETTLE", "refund", "--json").stdout)
    assert [(h["conversation_id"], h["snippet"]) for h in words["hits"]] == [
        (max_, "My kettle is broken, refund please")]
    people = json.loads(run("conversations", "search", "max@example", "--json").stdout)
    assert [(h["kind"], h["conversation_id"], h["snippet"]) for h in people["hits"]] == [
        ("visitor", max_, "Max <max@example.org>")]
    table = run("conversations", "search", "max@example")
    assert "visitor Max" in table.output and "More:" not in table.output
    assert "More: --before" in run("conversations", "search", "退款", "--limit", "1").output


@pytest.mark.parametrize(("args", "problem"), [
    ((), "the search text is empty"),
    (("  ",), "the search text is empty"),
    (("x" * 201,), "the search text is too long: at most 200 characters, not 201"),
    (("a", "--limit", "0"), "0 is not in the range 1<=x<=100"),
    (("a", "--before", "yesterday"), "the cursor 'yesterday' is not one a search answered"),
])
def test_bad_input_is_one_clear_line(run: CliRun, args: tuple[str, ...], problem: str) -> None:
    result = run("conversations", "search", *args)
    assert result.exit_code == 2
    assert problem in " ".join(result.output.split())
    assert "Traceback" not in result.output
