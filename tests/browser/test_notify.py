"""Desktop notifications in the dashboard (agent-notify.js): off until the agent turns them
on (the permission is asked on that click), then one for a new conversation and one for a
visitor's message in Mine while the tab is hidden, none while it is visible; a click on
one opens its conversation. The page's visibility and window.Notification are wrapped by
an init script, which records every ``new Notification(title, options)``."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect

from tests.browser.harness import AGENTS, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    conversation_item,
    conversation_view,
    login,
    open_conversation,
    open_widget_page,
    tid,
    view_message,
    wait_until,
    widget_send_acked,
)

pytestmark = pytest.mark.browser

WRAP = """
(() => {
  let hidden = true;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get() { return hidden ? "hidden" : "visible"; } });
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get() { return hidden; } });
  window.__setHidden = (value) => { hidden = value; document.dispatchEvent(new Event("visibilitychange")); };
  const Real = window.Notification;
  const shown = window.__notifications = [];
  window.__notificationObjects = [];
  function Wrapped(title, options) {
    shown.push({ title, body: options && options.body, tag: options && options.tag });
    let made;
    try { made = new Real(title, options); }
    catch (_) { made = new EventTarget(); made.close = () => {}; }  // (headless may refuse)
    window.__notificationObjects.push(made);
    return made;
  }
  Object.defineProperty(Wrapped, "permission", { get: () => Real.permission });
  Wrapped.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Wrapped;
})();
"""


def shown(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("window.__notifications")
    return found


def test_desktop_notifications_while_the_tab_is_hidden(server: ServerProcess, pages: Pages) -> None:
    agent = pages.new("agent", permissions=["notifications"])
    agent.add_init_script(WRAP)
    login(agent, server.url, AGENTS["alice"])
    toggle = agent.locator(tid("notify-toggle"))
    expect(toggle).to_have_attribute("data-state", "off")
    expect(toggle).to_have_text("Notifications off")

    # off: a new conversation beeps and counts in the title, but shows no notification
    first = pages.new("first-visitor")
    open_widget_page(first, f"{server.url}/")
    widget_send_acked(first, "Anyone there?")
    expect(agent).to_have_title(re.compile(r"^\(1\) "))
    assert shown(agent) == []

    toggle.click()  # granted already (grant_permissions): on at once
    expect(toggle).to_have_attribute("data-state", "on")
    expect(toggle).to_have_text("Notifications on")
    expect(toggle).to_have_attribute("aria-pressed", "true")

    # a new conversation while the tab is hidden
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Where is my parcel?")
    wait_until(agent, lambda: shown(agent), message="a notification")
    (new,) = shown(agent)
    assert re.fullmatch(r"New conversation: Visitor #\d+", new["title"]), new
    assert new["body"] == "Where is my parcel?"
    conversation_id = int(new["tag"].removeprefix("cs-conversation-"))
    expect(conversation_item(agent, conversation_id)).to_be_attached()

    # it becomes mine; the visitor writes again: a message notification, same tag
    open_conversation(agent, conversation_id)
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    widget_send_acked(visitor, "It was due yesterday.")
    wait_until(agent, lambda: len(shown(agent)) == 2, message="a second notification")
    message = shown(agent)[1]
    assert message["title"] == new["title"].replace("New conversation: ", "New message from ")
    assert message["body"] == "It was due yesterday."
    assert message["tag"] == new["tag"]  # one per conversation: it replaces the first

    # a click on it brings the conversation up (another one is open meanwhile)
    agent.locator(tid("tab-waiting")).click()
    waiting = agent.locator(f'{tid("conversation-item")}:visible')
    expect(waiting).to_have_count(1)  # the first visitor's
    other_id = waiting.get_attribute("data-conversation-id")
    assert other_id and other_id != str(conversation_id)
    open_conversation(agent, other_id)
    agent.evaluate("window.__notificationObjects.at(-1).dispatchEvent(new Event('click'))")
    expect(conversation_view(agent)).to_be_visible()
    expect(conversation_view(agent)).to_have_attribute("data-conversation-id", str(conversation_id))

    # visible: nothing more, however many messages come
    agent.evaluate("window.__setHidden(false)")
    widget_send_acked(visitor, "Hello again?")
    expect(view_message(agent, "Hello again?", "visitor")).to_have_count(1)
    other = pages.new("other-visitor")
    open_widget_page(other, f"{server.url}/")
    widget_send_acked(other, "A new question")
    agent.locator(tid("tab-waiting")).click()
    expect(agent.locator(tid("last-message")).filter(has_text="A new question")).to_have_count(1)
    assert len(shown(agent)) == 2, shown(agent)

    # the choice is remembered
    agent.reload()
    expect(agent.locator(tid("notify-toggle"))).to_have_attribute("data-state", "on")
    agent.locator(tid("notify-toggle")).click()
    expect(agent.locator(tid("notify-toggle"))).to_have_attribute("data-state", "off")


def test_the_permission_is_asked_on_the_click_not_on_load(server: ServerProcess, pages: Pages) -> None:
    agent = pages.new("agent")
    agent.add_init_script("""
      window.__asked = 0;
      Notification.requestPermission = () => { window.__asked += 1; return Promise.resolve("denied"); };
    """)
    login(agent, server.url, AGENTS["alice"])
    assert agent.evaluate("window.__asked") == 0
    agent.locator(tid("notify-toggle")).click()
    wait_until(agent, lambda: agent.evaluate("window.__asked") == 1, message="the permission request")
    expect(agent.locator(tid("notify-toggle"))).to_have_attribute("data-state", "off")
    expect(agent.locator(tid("toast"))).to_contain_text("Desktop notifications are blocked")
