"""An AI reply streams into the widget and into the dashboard's open conversation."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Locator, Page, expect

from tests.browser.harness import AGENTS, FakeUpstream, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    tid,
    view_messages,
    wait_until,
    widget_messages,
    widget_send_acked,
)

pytestmark = pytest.mark.browser


def _grows(page: Page, message: Locator, text_testid: str) -> None:
    """The streaming message's text gets longer between two observations."""
    text = message.locator(tid(text_testid))
    before = len(text.inner_text())
    wait_until(page, lambda: len(text.inner_text()) > before, timeout=3.0,
               message=f"the streaming text to grow past {before} characters")
    expect(message).to_have_attribute("data-streaming", "true")


def test_ai_reply_streams_to_visitor_and_dashboard(ai_server: ServerProcess, fake_upstream: FakeUpstream,
                                                   pages: Pages) -> None:
    agent = pages.new("agent")
    login(agent, ai_server.url, AGENTS["alice"])
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{ai_server.url}/")

    widget_send_acked(visitor, "What are your opening hours?")
    conversation_id = first_conversation_id(agent)
    open_conversation(agent, conversation_id)

    in_widget = widget_messages(visitor, "ai")
    expect(in_widget).to_have_count(1)
    expect(in_widget).to_have_attribute("data-streaming", "true")
    expect(in_widget).to_have_attribute("data-stream-id", re.compile(r".+"))
    in_view = view_messages(agent, "ai")
    expect(in_view).to_have_count(1)
    expect(in_view).to_have_attribute("data-streaming", "true")
    _grows(visitor, in_widget, "cs-text")
    _grows(agent, in_view, "message-text")

    # The stored message replaces the pieces: one message, the whole text, no longer streaming.
    final = fake_upstream.reply_text
    for message, text_testid in ((in_widget, "cs-text"), (in_view, "message-text")):
        expect(message).not_to_have_attribute("data-streaming", "true")
        expect(message).to_have_count(1)
        expect(message.locator(tid(text_testid))).to_have_text(final)
    expect(in_widget).to_have_attribute("data-seq", "2")
    expect(in_view).to_have_attribute("data-seq", "2")
    expect(widget_messages(visitor)).to_have_count(2)
