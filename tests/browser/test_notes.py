"""Private notes in Chromium: an agent writes one, the other agent's dashboard shows it live
and after a reload, in its place in the timeline; the widget never shows it."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Locator, Page, expect

from tests.browser.harness import AGENTS, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    agent_reply,
    conversation_view,
    exact,
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    tid,
    view_message,
    widget_message,
    widget_messages,
    widget_panel,
    widget_send_acked,
)

pytestmark = pytest.mark.browser

NOTE = "Refund approved by Dana: tell her on Monday, not before"
BOB_NOTE = "I handled her last order, ask me if needed"


def notes(page: Page) -> Locator:
    return conversation_view(page).locator(tid("note"))


def note(page: Page, text: str) -> Locator:
    return notes(page).filter(has=page.locator(tid("note-text"), has_text=exact(text)))


def write_note(page: Page, text: str) -> None:
    page.locator(tid("compose-note")).click()
    expect(page.locator(tid("note-form"))).to_be_visible()
    expect(page.locator(tid("reply-input"))).to_be_hidden()
    box = page.locator(tid("note-input"))
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")
    expect(note(page, text)).to_have_count(1)


def timeline(page: Page) -> list[str]:
    """The texts of the open conversation's messages and notes, in document order."""
    items = conversation_view(page).locator(f'{tid("message")}, {tid("note")}')
    texts: list[str] = items.evaluate_all(
        "els => els.map(e => e.querySelector('.text').textContent)")
    return texts


def test_a_note_reaches_the_other_agent_and_never_the_widget(server: ServerProcess,
                                                             pages: Pages) -> None:
    alice = pages.new("alice")
    login(alice, server.url, AGENTS["alice"])
    bob = pages.new("bob")
    login(bob, server.url, AGENTS["bob"])
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Where is my refund?")

    conversation_id = first_conversation_id(alice)
    open_conversation(alice, conversation_id)
    alice.locator(tid("accept")).click()
    expect(conversation_view(alice)).to_have_attribute("data-status", "assigned")
    open_conversation(bob, conversation_id, "others")  # bob follows it: he opened it

    write_note(alice, NOTE)
    mine = note(alice, NOTE)
    expect(mine.locator(tid("note-label"))).to_have_text("Private note")
    background = mine.locator(tid("note-text")).evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(254, 243, 199)", background  # yellow, unlike any message
    expect(note(bob, NOTE)).to_have_count(1)  # live, on bob's dashboard

    # bob may write one in a conversation that is not his (the reply box stays closed)
    bob.locator(tid("compose-note")).click()
    expect(bob.locator(tid("reply-note"))).to_be_hidden()
    write_note(bob, BOB_NOTE)
    expect(note(alice, BOB_NOTE)).to_have_count(1)
    bob.locator(tid("compose-reply")).click()
    expect(bob.locator(tid("note-form"))).to_be_hidden()
    expect(bob.locator("#reply-note")).to_contain_text("is handling this conversation")

    alice.locator(tid("compose-reply")).click()
    agent_reply(alice, "We are on it.")
    expect(widget_message(visitor, "We are on it.", "agent")).to_have_count(1)
    expect(view_message(bob, "We are on it.")).to_have_count(1)
    assert timeline(alice) == ["Where is my refund?", timeline(alice)[1], NOTE, BOB_NOTE,
                               "We are on it."]

    # the widget: never a note, neither live nor after a reload (replay)
    for _ in range(2):
        expect(widget_panel(visitor)).not_to_contain_text(NOTE)
        expect(widget_panel(visitor)).not_to_contain_text(BOB_NOTE)
        assert NOTE not in visitor.content() and BOB_NOTE not in visitor.content()
        visitor.reload()
        open_widget_page(visitor, f"{server.url}/")
        expect(widget_message(visitor, "We are on it.", "agent")).to_have_count(1)
    expect(widget_messages(visitor, "note")).to_have_count(0)

    # bob reloads: the notes come with the history, in their place
    bob.reload()
    expect(bob.locator(tid("connection-status"))).to_have_attribute("data-state", "open")
    open_conversation(bob, conversation_id, "others")
    expect(note(bob, NOTE)).to_have_count(1)
    expect(note(bob, BOB_NOTE)).to_have_count(1)
    expect(view_message(bob, "We are on it.")).to_have_count(1)
    assert timeline(bob) == timeline(alice)
