"""The widget embedded on another site (another origin), as customers install it: a launcher
bubble that opens the panel, the visitor's name and page reaching the dashboard."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, EmbeddingSite, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    agent_reply,
    conversation_item,
    conversation_view,
    first_conversation_id,
    login,
    open_conversation,
    tid,
    widget_message,
    widget_panel,
    widget_send_acked,
)

pytestmark = pytest.mark.browser


def test_widget_on_another_site(server: ServerProcess, embedding_site: EmbeddingSite, pages: Pages) -> None:
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    visitor = pages.new("visitor")
    shop_page = f"{embedding_site.url}/products/blue-widget?ref=home"
    visitor.goto(shop_page)

    bubble = visitor.locator(tid("cs-bubble"))
    panel = widget_panel(visitor)
    expect(bubble).to_be_visible()
    expect(panel).to_be_hidden()
    bubble.click()
    expect(panel).to_be_visible()
    # opening the chat creates nothing: a first-time visitor connects with their first message
    expect(panel).to_have_attribute("data-state", "idle")
    expect(panel).to_contain_text("Example shop support")

    widget_send_acked(visitor, "Is the blue widget waterproof?")
    expect(panel).to_have_attribute("data-state", "open")
    conversation_id = first_conversation_id(agent)
    item = conversation_item(agent, conversation_id)
    expect(item.locator(tid("visitor-name"))).to_contain_text("Jamie Doe")
    expect(item.locator(tid("visitor-page"))).to_contain_text(f"127.0.0.1:{embedding_site.port}/products/blue-widget")
    open_conversation(agent, conversation_id)
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    agent_reply(agent, "Yes, it is rated IP67.")
    expect(widget_message(visitor, "Yes, it is rated IP67.", "agent")).to_have_count(1)

    # The launcher closes the panel again; the conversation is still there when it reopens.
    bubble.click()
    expect(panel).to_be_hidden()
    bubble.click()
    expect(panel).to_be_visible()
    expect(widget_message(visitor, "Is the blue widget waterproof?")).to_have_count(1)
