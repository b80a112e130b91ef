"""Playwright helpers for the widget and the agent dashboard (the DOM contract's test ids).

The widget lives in an open shadow root; Playwright's CSS locators pierce it, so the same
selectors work for the inline chat on ``/`` and for the launcher on any other page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from playwright.sync_api import Locator, Page, WebSocket, expect

from tests.browser.harness import AgentAccount

T = TypeVar("T")

BADGE = re.compile(r"^\(\d+\) ")


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


def exact(text: str) -> re.Pattern[str]:
    """A pattern for ``has_text`` / ``to_have_text`` that matches ``text`` and nothing more."""
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def wait_until(page: Page, check: Callable[[], T | None], *, timeout: float = 10.0,
               interval: float = 0.1, message: str = "condition") -> T:
    """Poll ``check`` (keeping Playwright's events flowing) until it returns a truthy value."""
    waited = 0.0
    while True:
        value = check()
        if value:
            return value
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        page.wait_for_timeout(interval * 1000)
        waited += interval


# ---- widget ---------------------------------------------------------------------------------


def widget_panel(page: Page) -> Locator:
    return page.locator(tid("cs-panel"))


def widget_messages(page: Page, role: str | None = None) -> Locator:
    selector = tid("cs-message") + (f'[data-role="{role}"]' if role else "")
    return page.locator(selector)


def widget_message(page: Page, text: str, role: str | None = "visitor") -> Locator:
    """The widget's message(s) whose text is exactly ``text``."""
    return widget_messages(page, role).filter(has=page.locator(tid("cs-text"), has_text=exact(text)))


def widget_send(page: Page, text: str) -> Locator:
    """Type ``text`` into the widget and send it; returns its message element(s)."""
    box = page.locator(tid("cs-input"))
    box.fill(text)
    page.locator(tid("cs-send")).click()
    expect(box).to_have_value("")
    return widget_message(page, text)


def widget_wait_acked(page: Page, text: str) -> Locator:
    """Wait until the visitor's message ``text`` is sent and shown exactly once.

    The echo of one's own message arrives before its ack; the pending element turns into the
    sent message on whichever comes first (never a second copy: test_no_duplicates.py). So
    "acked" here means it has its seq, not necessarily that the ack frame has arrived."""
    message = widget_message(page, text)
    acked = page.locator(tid("cs-message") + '[data-role="visitor"]:not([data-pending="true"])').filter(
        has=page.locator(tid("cs-text"), has_text=exact(text)))
    expect(acked).to_have_count(1)
    expect(message).to_have_count(1)
    expect(message).not_to_have_attribute("data-pending", "true")
    expect(message).to_have_attribute("data-seq", re.compile(r"^[1-9]\d*$"))
    return message


def widget_send_acked(page: Page, text: str) -> Locator:
    widget_send(page, text)
    return widget_wait_acked(page, text)


def open_widget_page(page: Page, url: str) -> None:
    """Open the standalone page and wait until the inline chat is ready: connected for a
    returning visitor, "idle" for a first-time one (it connects with the first message)."""
    page.goto(url)
    expect(widget_panel(page)).to_be_visible()
    expect(widget_panel(page)).to_have_attribute("data-state", re.compile(r"^(open|idle)$"))


# ---- dashboard ------------------------------------------------------------------------------


def login(page: Page, base_url: str, agent: AgentAccount) -> None:
    """Log ``agent`` into ``/agent`` and wait until the dashboard is connected."""
    page.goto(f"{base_url}/agent")
    page.locator(tid("login-username")).fill(agent.username)
    page.locator(tid("login-password")).fill(agent.password)
    page.locator(tid("login-submit")).click()
    expect(page.locator(tid("agent-name"))).to_contain_text(agent.name)
    expect(page.locator(tid("login-form"))).to_be_hidden()
    expect(page.locator(tid("connection-status"))).to_have_attribute("data-state", "open")


def conversation_items(page: Page) -> Locator:
    return page.locator(tid("conversation-item"))


def conversation_item(page: Page, conversation_id: str | int) -> Locator:
    return page.locator(f'{tid("conversation-item")}[data-conversation-id="{conversation_id}"]')


def tab(page: Page, name: str) -> Locator:
    return page.locator(tid(f"tab-{name}"))


def tab_count(page: Page, name: str) -> Locator:
    return tab(page, name).locator(tid("count"))


def show_tab(page: Page, name: str) -> None:
    tab(page, name).click()


def first_conversation_id(page: Page, tab_name: str = "waiting") -> str:
    """Wait for a conversation in ``tab_name`` and return its id."""
    show_tab(page, tab_name)
    item = conversation_items(page).first
    expect(item).to_be_visible()
    conversation_id = item.get_attribute("data-conversation-id")
    assert conversation_id and conversation_id.isdigit(), f"bad data-conversation-id {conversation_id!r}"
    return conversation_id


def conversation_view(page: Page) -> Locator:
    return page.locator(tid("conversation-view"))


def open_conversation(page: Page, conversation_id: str | int, tab_name: str | None = None) -> Locator:
    if tab_name is not None:
        show_tab(page, tab_name)
    conversation_item(page, conversation_id).click()
    view = conversation_view(page)
    expect(view).to_be_visible()
    expect(view).to_have_attribute("data-conversation-id", str(conversation_id))
    return view


def view_messages(page: Page, role: str | None = None) -> Locator:
    selector = tid("message") + (f'[data-role="{role}"]' if role else "")
    return conversation_view(page).locator(selector)


def view_message(page: Page, text: str, role: str | None = None) -> Locator:
    return view_messages(page, role).filter(has=page.locator(tid("message-text"), has_text=exact(text)))


def agent_reply(page: Page, text: str) -> Locator:
    box = page.locator(tid("reply-input"))
    box.fill(text)
    page.locator(tid("reply-send")).click()
    expect(box).to_have_value("")
    message = view_message(page, text, "agent")
    settled = tid("message") + '[data-role="agent"]:not([data-pending="true"])'
    acked = conversation_view(page).locator(settled).filter(
        has=page.locator(tid("message-text"), has_text=exact(text)))
    expect(acked).to_have_count(1)  # sent: its echo (which comes before the ack) or its ack came
    expect(message).to_have_count(1)
    return message


def seqs(messages: Locator) -> list[int]:
    """The ``data-seq`` values of ``messages``, in document order (a missing one fails)."""
    values: list[str | None] = messages.evaluate_all("els => els.map(e => e.getAttribute('data-seq'))")
    assert all(value and value.isdigit() for value in values), f"bad data-seq values: {values}"
    return [int(value) for value in values if value]


# ---- WebSocket frames ---------------------------------------------------------------------


class FrameLog:
    """Every JSON frame a page sends and receives over its WebSockets."""

    def __init__(self, page: Page) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.sockets: list[str] = []
        page.on("websocket", self._on_socket)

    def _on_socket(self, socket: WebSocket) -> None:
        self.sockets.append(socket.url)
        socket.on("framesent", lambda payload: self._record(self.sent, payload))
        socket.on("framereceived", lambda payload: self._record(self.received, payload))

    @staticmethod
    def _record(into: list[dict[str, Any]], payload: str | bytes) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            frame = {"type": "<not json>", "raw": repr(payload)[:200]}
        if isinstance(frame, dict):
            into.append(frame)
