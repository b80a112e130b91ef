"""Blocking from the dashboard: the agent blocks the visitor (and its address) on the open
conversation, the conversation shows it, and the widget says it cannot chat (and does not
reconnect); unblocked, the visitor chats again."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    conversation_view,
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    tid,
    widget_panel,
    widget_send_acked,
)

pytestmark = pytest.mark.browser


def test_an_agent_blocks_a_visitor_and_the_widget_cannot_chat(server: ServerProcess,
                                                              pages: Pages) -> None:
    alice = pages.new("alice")
    login(alice, server.url, AGENTS["alice"])
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "You are all useless!")
    sockets: list[str] = []
    visitor.on("websocket", lambda ws: sockets.append(ws.url))

    conversation_id = first_conversation_id(alice)
    view = open_conversation(alice, conversation_id)
    banner = alice.locator(tid("blocked-banner"))
    expect(banner).to_be_hidden()
    alice.locator(tid("block-visitor")).click()
    form = alice.locator(tid("block-form"))
    expect(form).to_be_visible()
    expect(alice.locator(tid("block-address"))).to_be_enabled()  # the visitor is online
    alice.locator(tid("block-address")).check()
    alice.locator(tid("block-duration")).select_option("7d")
    alice.locator(tid("block-reason")).fill("insults")
    alice.locator(tid("block-confirm")).click()

    expect(banner).to_be_visible()
    expect(banner).to_contain_text(
        re.compile(r"Blocked · until .+ · network 127\.0\.0\.1/32 · by alice — insults"))
    expect(form).to_be_hidden()
    expect(alice.locator(tid("block-visitor"))).to_be_hidden()
    expect(view).to_have_attribute("data-blocked", "")

    root = visitor.locator(".cs-root")
    expect(root).to_have_attribute("data-refused", "blocked")
    expect(visitor.locator(tid("cs-error"))).to_contain_text("You cannot chat here")
    expect(widget_panel(visitor)).to_have_attribute("data-state", "closed")
    visitor.wait_for_timeout(1500)  # a reconnect would have come within 0.5-1 s
    expect(widget_panel(visitor)).to_have_attribute("data-state", "closed")
    assert sockets == []

    # The page opened again: refused at hello, before anything is stored.
    visitor.reload()
    expect(visitor.locator(".cs-root")).to_have_attribute("data-refused", "blocked")

    # Another conversation shows no banner; back on this one, the banner is loaded again.
    alice.reload()
    expect(alice.locator(tid("connection-status"))).to_have_attribute("data-state", "open")
    view = open_conversation(alice, conversation_id, "waiting")
    expect(banner).to_contain_text("network 127.0.0.1/32")

    alice.locator(tid("unblock")).click()
    expect(banner).to_be_hidden()
    expect(alice.locator(tid("block-visitor"))).to_be_visible()
    expect(conversation_view(alice)).not_to_have_attribute("data-blocked", "")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Sorry about that.")
