"""The visitor's network drops (a TCP proxy cuts every connection) and comes back."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, ServerProcess, api_messages, login_token
from tests.browser.pages import Pages
from tests.browser.proxy import TcpProxy
from tests.browser.ui import (
    FrameLog,
    agent_reply,
    conversation_view,
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    seqs,
    tid,
    view_message,
    view_messages,
    wait_until,
    widget_message,
    widget_messages,
    widget_send,
    widget_send_acked,
    widget_wait_acked,
)

pytestmark = pytest.mark.browser

OFFLINE_TEXT = "my connection is flaky, are you still there?"
REPLIES = ("Yes, I am still here.", "Your order #1042 left the warehouse this morning.")


def test_reconnect_resends_pending_and_replays_missed(server: ServerProcess, proxy: TcpProxy,
                                                     pages: Pages) -> None:
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    visitor = pages.new("visitor")
    # While the network is down Chromium logs each failed WebSocket handshake as a console error.
    pages.allow(visitor, r"WebSocket connection to .* failed")
    pages.allow(visitor, r"net::ERR_CONNECTION_(RESET|REFUSED|CLOSED)")
    frames = FrameLog(visitor)
    open_widget_page(visitor, f"{proxy.url}/")  # the page, widget.js and the socket via the proxy
    widget_send_acked(visitor, "Hello, where is my order?")  # (a first visitor connects with it)
    assert frames.sockets and all(f"127.0.0.1:{proxy.port}" in url for url in frames.sockets), frames.sockets
    conversation_id = first_conversation_id(agent)
    open_conversation(agent, conversation_id)
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    agent_reply(agent, "Let me look that up.")
    expect(widget_message(visitor, "Let me look that up.", "agent")).to_have_count(1)

    proxy.cut()
    panel = visitor.locator(tid("cs-panel"))
    expect(panel).to_have_attribute("data-state", "reconnecting")
    expect(visitor.locator(tid("cs-status"))).to_contain_text("reconnecting…")

    for text in REPLIES:
        agent_reply(agent, text)
    pending = widget_send(visitor, OFFLINE_TEXT)
    expect(pending).to_have_count(1)
    expect(pending).to_have_attribute("data-pending", "true")
    visitor.wait_for_timeout(1000)  # a reconnection attempt or two fails meanwhile
    expect(pending).to_have_attribute("data-pending", "true")
    for text in REPLIES:
        expect(widget_message(visitor, text, "agent")).to_have_count(0)

    proxy.restore()
    expect(panel).to_have_attribute("data-state", "open")
    expect(visitor.locator(tid("cs-status"))).not_to_contain_text(re.compile("connecting"))
    widget_wait_acked(visitor, OFFLINE_TEXT)
    for text in REPLIES:
        expect(widget_message(visitor, text, "agent")).to_have_count(1)
    expect(visitor.locator(tid("cs-message") + '[data-pending="true"]')).to_have_count(0)

    # The message written offline was sent (again) after the reconnect, and acked once.
    text_ids = {frame["id"] for frame in frames.sent
                if frame.get("type") == "text" and frame.get("content") == OFFLINE_TEXT}
    assert len(text_ids) == 1, f"the offline message went out under ids {text_ids}"
    # The element shows as sent from its echo on, which comes just before the ack: wait for it.
    acks = wait_until(visitor, lambda: [frame for frame in frames.received
                                        if frame.get("type") == "ack" and frame.get("id") in text_ids],
                      message="the ack of the offline message")
    assert len(acks) == 1, f"acks for the offline message: {acks}"
    hellos = [frame for frame in frames.sent if frame.get("type") == "hello"]
    assert len(hellos) >= 2 and hellos[-1].get("visitor_token"), hellos

    # The visitor's history is whole: seq 1..N, no gap, no duplicate, as the server has it.
    token = login_token(server.url, AGENTS["alice"])
    stored = api_messages(server.url, token, conversation_id)
    assert [m["content"] for m in stored].count(OFFLINE_TEXT) == 1
    expect(widget_messages(visitor)).to_have_count(len(stored))
    shown = seqs(widget_messages(visitor))
    assert shown == list(range(1, len(stored) + 1)), shown
    assert shown == [m["seq"] for m in stored]
    roles = widget_messages(visitor).evaluate_all("els => els.map(e => e.getAttribute('data-role'))")
    assert roles == [m["sender"]["role"] for m in stored]
    for message in stored:
        if message["sender"]["role"] != "system":
            expect(widget_message(visitor, message["content"], message["sender"]["role"])).to_have_attribute(
                "data-seq", str(message["seq"]))


def test_dashboard_reconnect_fills_more_than_a_page_missed(server: ServerProcess, proxy: TcpProxy,
                                                          pages: Pages) -> None:
    """More than one history page (50) arrives while the agent is away: after the reconnect
    the open conversation shows every message, without a gap."""
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "first message")
    agent = pages.new("agent")
    pages.allow(agent, r"WebSocket connection to .* failed")
    pages.allow(agent, r"net::ERR_CONNECTION_(RESET|REFUSED|CLOSED)")
    # after a failed handshake the dashboard asks /api/v1/me whether its token still works
    pages.allow(agent, r"net::ERR_(EMPTY_RESPONSE|SOCKET_NOT_CONNECTED|CONNECTION_\w+) \(http://[^)]*/api/v1/me")
    login(agent, proxy.url, AGENTS["alice"])  # the dashboard and its socket via the proxy
    conversation_id = first_conversation_id(agent)
    open_conversation(agent, conversation_id)
    expect(view_message(agent, "first message")).to_have_count(1)

    proxy.cut()
    expect(agent.locator(tid("connection-status"))).to_have_attribute("data-state", "reconnecting")
    for i in range(55):
        widget_send(visitor, f"while away {i}")
    widget_wait_acked(visitor, "while away 54")

    proxy.restore()
    expect(agent.locator(tid("connection-status"))).to_have_attribute("data-state", "open", timeout=40_000)
    expect(view_message(agent, "while away 54")).to_have_count(1)
    expect(view_message(agent, "first message")).to_have_count(1)
    held = seqs(view_messages(agent))
    assert held == list(range(held[0], held[0] + len(held))), f"a gap: {held}"
    for i in range(55):
        expect(view_message(agent, f"while away {i}")).to_have_count(1)
