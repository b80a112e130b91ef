"""A visitor who reloads the page gets the conversation back as it was, read marks included."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    agent_reply,
    conversation_view,
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    seqs,
    tid,
    widget_message,
    widget_messages,
    widget_send_acked,
)

pytestmark = pytest.mark.browser


def test_reload_restores_history_and_read_marks(server: ServerProcess, pages: Pages) -> None:
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Do you ship to Canada?")
    open_conversation(agent, first_conversation_id(agent))
    expect(widget_message(visitor, "Do you ship to Canada?")).to_have_attribute("data-read", "true")
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    agent_reply(agent, "We do, in 5 to 8 working days.")
    expect(widget_messages(visitor)).to_have_count(3)

    visitor.reload()
    expect(visitor.locator(tid("cs-panel"))).to_have_attribute("data-state", "open")
    expect(widget_messages(visitor)).to_have_count(3)
    assert seqs(widget_messages(visitor)) == [1, 2, 3]
    expect(widget_message(visitor, "We do, in 5 to 8 working days.", "agent")).to_have_count(1)
    # The agent read it before the reload; the page should still say so.
    expect(widget_message(visitor, "Do you ship to Canada?")).to_have_attribute("data-read", "true")
