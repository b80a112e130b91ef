"""Agent status and auto-assignment in the dashboard: the top bar's status control switches
to away and back, is remembered across a reload and shows in a colleague's transfer list;
with ``[routing] mode = "round_robin"`` a new conversation lands under Mine by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import (
    AGENTS,
    ServerProcess,
    agent_ids,
    login_token,
    running_server,
    seed_conversation,
)
from tests.browser.pages import Pages
from tests.browser.ui import (
    conversation_item,
    exact,
    login,
    open_conversation,
    show_tab,
    tab_count,
    tid,
    view_message,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def routed_server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    """The server with auto-assignment on (round_robin), agents alice and bob."""
    with running_server(tmp_path / "routed", agents_db=agents_db,
                        extra={"routing": {"mode": "round_robin"}}) as process:
        yield process


def statuses(base_url: str, token: str) -> dict[str, str]:
    response = httpx.get(f"{base_url}/api/v1/agents", timeout=5.0,
                         headers={"authorization": f"Bearer {token}"})
    response.raise_for_status()
    return {a["username"]: a["status"] for a in response.json()["agents"]}


def test_status_control_switches_to_away_and_back_and_is_remembered(
        server: ServerProcess, pages: Pages) -> None:
    alice = pages.new("alice")
    login(alice, server.url, AGENTS["alice"])
    bob = pages.new("bob")
    login(bob, server.url, AGENTS["bob"])
    control = alice.locator(tid("status-select"))
    expect(control).to_be_enabled()
    expect(control).to_have_value("online")
    token = login_token(server.url, AGENTS["bob"])
    alice_id = agent_ids(server.url, token)["alice"]
    colleague = bob.locator(f'{tid("transfer-select")} option[value="{alice_id}"]')
    expect(colleague).to_have_text("Alice Smith (online)")

    control.select_option("away")
    expect(control).to_have_attribute("data-status", "away")
    expect(colleague).to_have_text("Alice Smith (away)")  # live, by an agent_status frame
    assert statuses(server.url, token)["alice"] == "away"
    widget = httpx.get(f"{server.url}/api/v1/widget", timeout=5.0).json()
    assert widget["status"] == "online"  # bob is still online

    alice.reload()
    expect(alice.locator(tid("connection-status"))).to_have_attribute("data-state", "open")
    expect(alice.locator(tid("status-select"))).to_have_value("away")  # remembered

    alice.locator(tid("status-select")).select_option("online")
    expect(alice.locator(tid("status-select"))).to_have_attribute("data-status", "online")
    expect(colleague).to_have_text("Alice Smith (online)")
    assert statuses(server.url, token)["alice"] == "online"


def test_an_auto_assigned_conversation_appears_under_mine(routed_server: ServerProcess,
                                                         pages: Pages) -> None:
    alice = pages.new("alice")
    login(alice, routed_server.url, AGENTS["alice"])
    expect(tab_count(alice, "mine")).to_have_text(exact("0"))
    seeded = seed_conversation(routed_server.url, ["Is my parcel on its way?"], name="Ann")
    expect(tab_count(alice, "mine")).to_have_text(exact("1"))
    show_tab(alice, "mine")
    item = conversation_item(alice, seeded.conversation_id)
    expect(item).to_be_visible()
    expect(item).to_have_attribute("data-status", "assigned")
    open_conversation(alice, seeded.conversation_id)
    expect(view_message(alice, "Alice Smith joined the conversation")).to_be_visible()
    expect(alice.locator(tid("reply-input"))).to_be_visible()  # hers to answer at once

    # away: the next one waits in the queue instead
    alice.locator(tid("status-select")).select_option("away")
    expect(alice.locator(tid("status-select"))).to_have_attribute("data-status", "away")
    second = seed_conversation(routed_server.url, ["Hello?"], name="Ben")
    show_tab(alice, "waiting")
    expect(conversation_item(alice, second.conversation_id)).to_be_visible()
    expect(tab_count(alice, "waiting")).to_have_text(exact("1"))
    # back online: it comes to her by itself
    alice.locator(tid("status-select")).select_option("online")
    expect(tab_count(alice, "mine")).to_have_text(exact("2"))
    expect(tab_count(alice, "waiting")).to_have_text(exact("0"))
