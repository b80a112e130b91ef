"""``agents set NAME --capacity N|default`` and what ``agents list`` shows of auto-assignment
(availability, capacity, open conversations); bad capacities refused in one line, with
nothing changed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from customer_service.core.models import ConversationStatus
from customer_service.storage.base import Store

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]
AddAgent = Callable[..., Result]


def listed(run: CliRun) -> dict[str, dict[str, Any]]:
    result = run("agents", "list", "--json")
    assert result.exit_code == 0, result.output
    return {a["username"]: a for a in json.loads(result.stdout)}


def test_set_capacity_then_list_shows_it(run: CliRun, add_agent: AddAgent,
                                         store_call: StoreCall) -> None:
    add_agent("alice")
    add_agent("bob")

    async def hold_one(store: Store) -> None:
        alice = await store.get_agent_by_username("alice")
        assert alice is not None
        visitor = await store.create_visitor("v", "", "", "/")
        cid = (await store.current_conversation(visitor.id)).id
        await store.set_conversation_state(cid, ConversationStatus.ASSIGNED, alice.id)
        await store.set_agent_status(alice.id, "away")

    store_call(hold_one)
    result = run("agents", "set", "alice", "--capacity", "2")
    assert result.exit_code == 0, result.output
    assert "Agent alice may hold 2 open conversation(s); holds 1 now." in result.output
    assert 'Auto-assignment is off ([routing] mode = "manual")' in result.output

    table = run("agents", "list")
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[2].strip(): [cell.strip() for cell in line.split("│")[1:-1]]
            for line in table.output.splitlines() if line.startswith("│")}
    # id, username, name, status, availability, capacity, open, created
    assert rows["alice"][3:7] == ["enabled", "away", "2", "1"]
    assert rows["bob"][3:7] == ["enabled", "online", "5 (default)", "0"]

    agents = listed(run)
    assert agents["alice"]["capacity"] == 2 and agents["alice"]["effective_capacity"] == 2
    assert agents["alice"]["availability"] == "away"
    assert agents["alice"]["open_conversations"] == 1
    assert agents["bob"]["capacity"] is None and agents["bob"]["effective_capacity"] == 5

    # back to the default
    result = run("agents", "set", "alice", "--capacity", "default")
    assert result.exit_code == 0, result.output
    assert "may hold 5 (default) open conversation(s)" in result.output
    assert listed(run)["alice"]["capacity"] is None


def test_the_default_comes_from_the_config(run: CliRun, add_agent: AddAgent,
                                           config_path: Path) -> None:
    add_agent("alice")
    config_path.write_text(config_path.read_text()
                           + '\n[routing]\nmode = "round_robin"\ndefault_capacity = 3\n')
    assert listed(run)["alice"]["effective_capacity"] == 3
    result = run("agents", "set", "alice", "--capacity", "4")
    assert result.exit_code == 0, result.output
    assert "Auto-assignment is off" not in result.output


@pytest.mark.parametrize("bad", ["-1", "0", "1001", "two", "2.5", ""])
def test_bad_capacity_is_one_clear_line_and_changes_nothing(
        run: CliRun, add_agent: AddAgent, bad: str) -> None:
    add_agent("alice")
    run("agents", "set", "alice", "--capacity", "3")
    result = run("agents", "set", "alice", "--capacity", bad)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(
        "Error: --capacity must be a whole number from 1 to 1000, or 'default'")
    assert listed(run)["alice"]["capacity"] == 3


def test_set_needs_an_option_and_a_known_agent(run: CliRun, add_agent: AddAgent) -> None:
    add_agent("alice")
    result = run("agents", "set", "alice")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: nothing to set: give --capacity N (or --capacity default)")
    result = run("agents", "set", "ghost", "--capacity", "2")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no agent named 'ghost'"
