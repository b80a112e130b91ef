"""One's own message is shown once, from the moment it is sent: never a sent copy and a
pending copy side by side.

The server hands a committed message to every socket of the conversation (the sender's own
included) before the sender's ``ack`` goes out, so the sender sees the echo first. A page
that adds the echo as a new element and removes its pending copy only on the ack shows the
message twice in between: for a moment normally, for seconds when the ack is delayed (a
``timeout`` error and the resend it causes). A MutationObserver in the page records the most
copies of each text present at once, after every task (every WebSocket event).
"""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect

from tests.browser.harness import AGENTS, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    FrameLog,
    agent_reply,
    conversation_view,
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    tid,
    widget_send_acked,
)

pytestmark = pytest.mark.browser

# Watches the elements matching `selector` (in `root`, or in the widget's shadow root) and
# keeps, per text, the highest number of them present at the same time.
WATCH = """([selector, textSelector, inWidget]) => {
  const host = inWidget ? document.querySelector('[data-cs-widget]') : null;
  const root = inWidget ? host.shadowRoot : document;
  const most = window.__csMostCopies = {};
  const check = () => {
    const counts = {};
    for (const el of root.querySelectorAll(selector)) {
      const text = (el.querySelector(textSelector) || el).textContent;
      counts[text] = (counts[text] || 0) + 1;
      most[text] = Math.max(most[text] || 0, counts[text]);
    }
  };
  new MutationObserver(check).observe(root, {childList: true, subtree: true, attributes: true});
}"""


def _most_copies(page: Page) -> dict[str, int]:
    result: dict[str, int] = page.evaluate("() => window.__csMostCopies")
    return result


def test_visitor_message_never_shown_twice(server: ServerProcess, pages: Pages) -> None:
    visitor = pages.new("visitor")
    frames = FrameLog(visitor)
    open_widget_page(visitor, f"{server.url}/")
    visitor.evaluate(WATCH, ['[data-testid="cs-message"][data-role="visitor"]',
                             '[data-testid="cs-text"]', True])
    texts = [f"Question number {n}" for n in range(1, 4)]
    for text in texts:
        widget_send_acked(visitor, text)
    most = _most_copies(visitor)
    order = [f"{frame['type']}(seq {frame.get('seq')})" for frame in frames.received
             if frame.get("type") in ("ack", "message")]
    assert {text: most.get(text) for text in texts} == dict.fromkeys(texts, 1), \
        f"most copies of each message shown at once in the widget: {most}; frames received: {order}"


def test_agent_reply_never_shown_twice(server: ServerProcess, pages: Pages) -> None:
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Hello?")
    open_conversation(agent, first_conversation_id(agent))
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    agent.evaluate(WATCH, ['[data-testid="conversation-view"] [data-testid="message"][data-role="agent"]',
                           '[data-testid="message-text"]', False])
    texts = [f"Answer number {n}" for n in range(1, 4)]
    for text in texts:
        agent_reply(agent, text)
        expect(agent.locator(tid("message") + '[data-role="agent"][data-pending="true"]')).to_have_count(0)
    most = _most_copies(agent)
    assert {text: most.get(text) for text in texts} == dict.fromkeys(texts, 1), \
        f"most copies of each reply shown at once in the dashboard: {most}"
