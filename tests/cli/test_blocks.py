"""``blocks list|add|remove`` against a real SQLite store, and their bad input."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from customer_service.core.blocks import Block
from customer_service.storage.base import Store
from tests.cli.conftest import CliRun

StoreCall = Callable[[Callable[[Store], Awaitable[Any]]], Any]


def stored(store_call: StoreCall) -> list[Block]:
    async def work(store: Store) -> list[Block]:
        return await store.list_blocks(None)

    found: list[Block] = store_call(work)
    return found


def a_visitor(store_call: StoreCall) -> int:
    async def work(store: Store) -> int:
        return (await store.create_visitor("hash-v", "Vera", "", "")).id

    visitor_id: int = store_call(work)
    return visitor_id


def test_add_list_and_remove(run: CliRun, store_call: StoreCall) -> None:
    visitor_id = a_visitor(store_call)
    result = run("blocks", "add", "--visitor", str(visitor_id), "--ip", "2001:DB8::/32",
                 "--for", "7d", "--reason", "spam")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Blocked visitor {visitor_id} and network 2001:db8::/32 "
                                    "(block 1), until ")
    assert "The servers apply it within 5 s." in result.output
    (made,) = stored(store_call)
    assert (made.visitor_id, made.network, made.reason, made.created_by) == (
        visitor_id, "2001:db8::/32", "spam", "cli")
    assert made.expires_at is not None
    assert abs(made.expires_at - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    result = run("blocks", "add", "--ip", "203.0.113.7", "--until", "2099-01-01T00:00+01:00")
    assert result.exit_code == 0 and "network 203.0.113.7/32 (block 2), until 2098-12-31 23:00"\
        in result.output
    listed = run("blocks", "list")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert any("2001:db8::/32" in line and "spam" in line and "cli" in line for line in lines)
    assert any("203.0.113.7/32" in line and "2098-12-31 23:00" in line for line in lines)
    as_json: list[dict[str, Any]] = json.loads(run("blocks", "list", "--json").output)
    assert [(b["id"], b["network"], b["active"]) for b in as_json] == [
        (1, "2001:db8::/32", True), (2, "203.0.113.7/32", True)]
    assert as_json[1]["expires_at"] == "2098-12-31T23:00:00.000Z"
    result = run("blocks", "remove", "1")
    assert result.exit_code == 0
    assert result.output.startswith(f"Removed block 1 (visitor {visitor_id} and network "
                                    "2001:db8::/32).")
    assert [b.id for b in stored(store_call)] == [2]


def test_expired_blocks_are_listed_only_with_all(run: CliRun, store_call: StoreCall) -> None:
    async def work(store: Store) -> None:
        await store.add_block(visitor_id=None, network="10.0.0.0/8", reason="old",
                              created_by="ann", expires_at=datetime.now(UTC) - timedelta(1))

    store_call(work)
    assert run("blocks", "list").output == "No active blocks.\n"
    assert json.loads(run("blocks", "list", "--json").output) == []
    every = run("blocks", "list", "--all")
    assert "10.0.0.0/8" in every.output and "(expired)" in every.output
    assert json.loads(run("blocks", "list", "--all", "--json").output)[0]["active"] is False


@pytest.mark.parametrize(("args", "says"), [
    (["--ip", "10.1.2.3/16"], "did you mean 10.1.0.0/16?"),
    (["--ip", "999.1.1.1"], "Invalid value for '--ip': invalid IP address or CIDR network "
                            "'999.1.1.1'"),
    (["--ip", "0.0.0.0/0"], "that is every address"),
    (["--ip", "10.0.0.1", "--for", "7 days"], "Invalid value for '--for': invalid duration "
                                              "'7 days'"),
    (["--ip", "10.0.0.1", "--for", "0m"], "longer than 0"),
    (["--ip", "10.0.0.1", "--until", "tomorrow"], "'tomorrow' is not an ISO 8601 date"),
    (["--ip", "10.0.0.1", "--until", "2001-01-01"], "2001-01-01 00:00 UTC is in the past"),
    (["--ip", "10.0.0.1", "--for", "1d", "--until", "2099-01-01"], "--for or --until, not both"),
    (["--ip", "10.0.0.1", "--reason", "x" * 501], "at most 500"),
    ([], "give --visitor ID, --ip ADDR_OR_CIDR, or both"),
    (["--visitor", "0"], "Invalid value for '--visitor'"),
    (["--visitor", "77"], "Error: no visitor 77 (a conversation's visitor_id"),
])
def test_bad_input_is_one_clear_error(run: CliRun, store_call: StoreCall, args: list[str],
                                      says: str) -> None:
    result = run("blocks", "add", *args)
    assert result.exit_code != 0
    assert says in result.output
    assert "Traceback" not in result.output
    assert stored(store_call) == []


def test_removing_an_unknown_block(run: CliRun) -> None:
    result = run("blocks", "remove", "42")
    assert result.exit_code == 1
    assert result.output == "Error: no block 42 (see 'customer-service blocks list')\n"
    result = run("blocks", "remove", "abc")
    assert result.exit_code == 2 and "Invalid value for 'ID'" in result.output
