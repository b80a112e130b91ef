"""Canned replies in the dashboard: "/" opens the list, typing filters it, arrows and Enter
insert one with the visitor's name filled in, Escape closes it, a click inserts too."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Locator, Page, expect

from tests.browser.harness import AGENTS, ServerProcess, login_token, seed_conversation
from tests.browser.pages import Pages
from tests.browser.ui import (
    conversation_view,
    exact,
    login,
    open_conversation,
    tid,
    view_message,
)

pytestmark = pytest.mark.browser

REPLIES = {
    "refund": "Hi {visitor.name|there}, the refund for #{conversation.id} is on its way. {agent.name}",
    "hello": "Hello {visitor.name|there}! {{ref}}",
    "shipping": "Shipping takes 3 days.",
}


def add_canned(base_url: str, token: str, shortcut: str, text: str) -> None:
    response = httpx.post(f"{base_url}/api/v1/canned", json={"shortcut": shortcut, "text": text},
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text


def shortcuts(page: Page) -> list[str]:
    items: list[str | None] = page.locator(tid("canned-item")).evaluate_all(
        "els => els.map(e => e.dataset.shortcut)")
    return [item or "" for item in items]


def selected(page: Page) -> Locator:
    return page.locator(f'{tid("canned-item")}[aria-selected="true"]')


def test_slash_opens_filters_and_inserts_with_fields(server: ServerProcess, pages: Pages) -> None:
    token = login_token(server.url, AGENTS["alice"])
    for shortcut, text in REPLIES.items():
        add_canned(server.url, token, shortcut, text)
    seeded = seed_conversation(server.url, ["Where is my refund?"], name="Jamie Doe")
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    open_conversation(agent, seeded.conversation_id, "waiting")
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")

    box = agent.locator(tid("reply-input"))
    panel = agent.locator(tid("canned"))
    box.focus()
    expect(panel).to_be_hidden()
    agent.keyboard.type("/")
    expect(panel).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    expect(agent.locator(tid("canned-item"))).to_have_count(3)
    assert shortcuts(agent) == ["hello", "refund", "shipping"]
    expect(selected(agent)).to_have_attribute("data-shortcut", "hello")

    # the filter: what follows the "/" (shortcuts starting with it first, then the texts)
    agent.keyboard.type("sh")
    expect(agent.locator(tid("canned-item"))).to_have_count(1)
    expect(selected(agent)).to_have_attribute("data-shortcut", "shipping")
    agent.keyboard.type("x")
    expect(agent.locator(tid("canned-item"))).to_have_count(0)
    expect(agent.locator(tid("canned-note"))).to_have_text("No canned reply matches “/shx”.")
    for _ in range(3):
        agent.keyboard.press("Backspace")
    agent.keyboard.type("r")
    expect(agent.locator(tid("canned-item"))).to_have_count(2)
    assert shortcuts(agent) == ["refund", "hello"]  # "hello" by its text ({visitor.name})

    # arrows move (and wrap), Enter inserts the selected one with its fields filled
    expect(selected(agent)).to_have_attribute("data-shortcut", "refund")
    agent.keyboard.press("ArrowDown")
    expect(selected(agent)).to_have_attribute("data-shortcut", "hello")
    agent.keyboard.press("ArrowDown")
    expect(selected(agent)).to_have_attribute("data-shortcut", "refund")
    agent.keyboard.press("ArrowUp")
    agent.keyboard.press("ArrowUp")
    expect(selected(agent)).to_have_attribute("data-shortcut", "refund")
    agent.keyboard.press("Enter")
    expect(panel).to_be_hidden()
    expected = (f"Hi Jamie Doe, the refund for #{seeded.conversation_id} is on its way. "
                "Alice Smith")
    expect(box).to_have_value(expected)
    expect(box).to_be_focused()
    expect(view_message(agent, expected, "agent")).to_have_count(0)  # inserted, not sent

    # the next Enter sends it, as usual
    agent.keyboard.press("Enter")
    expect(box).to_have_value("")
    expect(view_message(agent, expected, "agent")).to_have_count(1)

    # Escape closes the list and keeps the text; it stays closed while the word grows
    agent.keyboard.type("/he")
    expect(panel).to_be_visible()
    agent.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(box).to_have_value("/he")
    expect(box).to_have_attribute("aria-expanded", "false")
    agent.keyboard.type("l")
    expect(panel).to_be_hidden()
    box.fill("")
    agent.keyboard.type("/hel")
    expect(panel).to_be_visible()
    agent.keyboard.press("Tab")  # Tab inserts too
    expect(box).to_have_value("Hello Jamie Doe! {ref}")

    # a click inserts; a reply another agent added meanwhile is there (fetched on opening)
    add_canned(server.url, token, "bye", "Bye {visitor.name}, from {agent.name}.")
    box.fill("")
    agent.keyboard.type("/")
    expect(agent.locator(tid("canned-item"))).to_have_count(4)
    agent.locator(f'{tid("canned-item")}[data-shortcut="shipping"]').click()
    expect(panel).to_be_hidden()
    expect(box).to_have_value("Shipping takes 3 days.")
    box.fill("")
    agent.keyboard.type("/by")
    agent.keyboard.press("Enter")
    expect(box).to_have_value(exact("Bye Jamie Doe, from Alice Smith."))


def test_a_visitor_without_a_name_gets_the_fallback(server: ServerProcess, pages: Pages) -> None:
    token = login_token(server.url, AGENTS["bob"])
    add_canned(server.url, token, "hello", "Hello {visitor.name|there}, {visitor.email}I am {agent.name}.")
    seeded = seed_conversation(server.url, ["Hi"])
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["bob"])
    open_conversation(agent, seeded.conversation_id, "waiting")
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    box = agent.locator(tid("reply-input"))
    box.focus()
    agent.keyboard.type("/hello")  # Enter at once: inserted as soon as the list comes
    agent.keyboard.press("Enter")
    expect(box).to_have_value("Hello there, I am Bob Jones.")


def test_a_reply_that_reads_like_a_shortcut_does_not_reopen_the_list(
        server: ServerProcess, pages: Pages) -> None:
    add_canned(server.url, login_token(server.url, AGENTS["alice"]), "docs", "/help")
    seeded = seed_conversation(server.url, ["Hi"], name="Ann")
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    open_conversation(agent, seeded.conversation_id, "waiting")
    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    box, panel = agent.locator(tid("reply-input")), agent.locator(tid("canned"))
    box.focus()
    agent.keyboard.type("/do")
    expect(agent.locator(tid("canned-item"))).to_have_count(1)
    agent.keyboard.press("Enter")
    expect(box).to_have_value("/help")
    expect(panel).to_be_hidden()
    agent.keyboard.type("s")
    expect(box).to_have_value("/helps")
    expect(panel).to_be_hidden()
    agent.keyboard.press("Enter")  # the list is closed: Enter sends, as usual
    expect(box).to_have_value("")
    expect(view_message(agent, "/helps", "agent")).to_have_count(1)
