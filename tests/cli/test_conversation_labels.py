"""``conversations label|unlabel ID LABEL...`` and ``conversations list --label``."""

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
def two(store_call: StoreCall) -> tuple[int, int]:
    """Two conversations with a message each: Vera's and Max's."""

    async def work(store: Store) -> tuple[int, int]:
        ids = []
        for n, name in enumerate(("Vera", "Max")):
            visitor = await store.create_visitor(token_hash(f"v{n}"), name, "", "/")
            conv = await store.current_conversation(visitor.id)
            await store.append_messages([NewMessage(conv.id, Role.VISITOR, visitor.id, name,
                                                    "hello")])
            ids.append(conv.id)
        return ids[0], ids[1]

    found: tuple[int, int] = store_call(work)
    return found


def test_label_unlabel_and_list(run: CliRun, two: tuple[int, int],
                                store_call: StoreCall) -> None:
    vera, max_ = two
    result = run("conversations", "label", str(vera), "VIP", "billing", "退款")
    assert result.exit_code == 0, result.output
    assert f"Conversation {vera} labels: billing, vip, 退款." in result.output
    assert run("conversations", "label", str(max_), "vip").exit_code == 0
    assert store_call(lambda store: store.conversation_labels(vera)) == ["billing", "vip", "退款"]

    def ids(*args: str) -> list[int]:
        listed = run("conversations", "list", "--json", *args)
        assert listed.exit_code == 0, listed.output
        return sorted(c["id"] for c in json.loads(listed.stdout))

    assert ids("--label", "vip") == [vera, max_]
    assert ids("--label", "vip", "--label", "Billing") == [vera]
    assert ids("--label", "nobody") == []
    data = json.loads(run("conversations", "list", "--json").stdout)
    assert {c["id"]: c["labels"] for c in data} == {vera: ["billing", "vip", "退款"],
                                                    max_: ["vip"]}
    table = run("conversations", "list", "--label", "退款")
    assert "1 conversation(s)" in table.output  # the labels column wraps in a narrow terminal
    assert all(name in table.output for name in ("billing", "vip", "退款", "Vera"))

    removed = run("conversations", "unlabel", str(vera), "vip", "never-had", "--json")
    assert removed.exit_code == 0, removed.output
    assert json.loads(removed.stdout) == {"conversation_id": vera, "labels": ["billing", "退款"]}
    shown = run("conversations", "show", str(vera))
    assert "Labels: billing, 退款" in shown.output
    assert json.loads(run("conversations", "show", str(vera), "--json").stdout)["labels"] == [
        "billing", "退款"]
    last = run("conversations", "unlabel", str(vera), "billing", "退款")
    assert f"Conversation {vera} labels: none." in last.output


@pytest.mark.parametrize(("args", "message"), [
    (("label", "{id}", "two words"),
     "Invalid value for 'LABEL...': label 'two words' may only contain letters, digits"),
    (("label", "{id}", "x" * 33), "is too long: at most 32 characters, not 33"),
    (("unlabel", "{id}", " "), "Invalid value for 'LABEL...': a label cannot be empty"),
    (("label", "{id}"), "Missing argument 'LABEL...'"),
    (("list", "--label", "a/b"), "Invalid value for '--label': label 'a/b' may only contain"),
])
def test_bad_labels_are_usage_errors(run: CliRun, two: tuple[int, int], args: tuple[str, ...],
                                     message: str) -> None:
    result = run("conversations", *(a.format(id=two[0]) for a in args))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_conversation_and_the_limit(run: CliRun, two: tuple[int, int]) -> None:
    missing = run("conversations", "label", "999", "vip")
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines()[-1] == "Error: no conversation 999"
    assert run("conversations", "unlabel", "999", "vip").exit_code == 1
    assert run("conversations", "label", str(two[0]), *(f"l{i}" for i in range(20))).exit_code == 0
    full = run("conversations", "label", str(two[0]), "one-more")
    assert full.exit_code == 1 and "at most 20 (remove one first)" in full.output
