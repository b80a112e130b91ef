"""Conversation labels in the dashboard: add one (Enter) and see it as a chip on the
conversation and in the list, also on another agent's dashboard; a bad one is refused
with the server's reason; the list filtered by a label; its remove button takes one off."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect

from tests.browser.harness import AGENTS, ServerProcess, seed_conversation
from tests.browser.pages import Pages
from tests.browser.ui import conversation_item, exact, login, open_conversation, tab_count, tid

pytestmark = pytest.mark.browser


def chips(page: Page, where: str) -> list[str]:
    found: list[str] = page.locator(where).evaluate_all("els => els.map(e => e.dataset.label)")
    return found


def add_label(page: Page, text: str) -> None:
    box = page.locator(tid("label-input"))
    box.fill(text)
    box.press("Enter")


def test_add_a_label_filter_the_list_by_it_and_remove_it(server: ServerProcess,
                                                         pages: Pages) -> None:
    ann = seed_conversation(server.url, ["My invoice is wrong"], name="Ann").conversation_id
    ben = seed_conversation(server.url, ["Hello"], name="Ben").conversation_id
    alice = pages.new("alice")
    login(alice, server.url, AGENTS["alice"])
    bob = pages.new("bob")
    login(bob, server.url, AGENTS["bob"])
    for page in (alice, bob):
        expect(tab_count(page, "waiting")).to_have_text(exact("2"))

    open_conversation(alice, ann)
    add_label(alice, "VIP")
    view_chips = f'{tid("conversation-view")} {tid("label")}'
    expect(alice.locator(view_chips)).to_have_count(1)
    assert chips(alice, view_chips) == ["vip"]  # the server's one spelling
    expect(alice.locator(tid("label-input"))).to_have_value("")
    add_label(alice, "退款")
    expect(alice.locator(view_chips)).to_have_count(2)
    assert chips(alice, view_chips) == ["vip", "退款"]
    ann_chips = f'{tid("conversation-item")}[data-conversation-id="{ann}"] {tid("item-label")}'
    expect(alice.locator(ann_chips)).to_have_count(2)
    # bob follows the queue: the change reaches his list too
    expect(bob.locator(ann_chips)).to_have_count(2)
    assert chips(bob, ann_chips) == ["vip", "退款"]

    # a bad label: the server's reason, nothing added, the text kept for fixing
    pages.allow(alice, r"status of 400")  # Chromium logs the refused request
    add_label(alice, "two words")
    expect(alice.locator(tid("toast"))).to_contain_text(
        "label 'two words' may only contain letters, digits")
    expect(alice.locator(view_chips)).to_have_count(2)
    expect(alice.locator(tid("label-input"))).to_have_value("two words")

    # the filter: only Ann's conversation, and the count says so
    box = bob.locator(tid("label-filter"))
    box.fill("VIP")
    box.press("Enter")
    expect(conversation_item(bob, ann)).to_be_visible()
    expect(conversation_item(bob, ben)).to_be_hidden()
    expect(tab_count(bob, "waiting")).to_have_text(exact("1"))
    box.fill("nothing-has-this")
    box.press("Enter")
    expect(conversation_item(bob, ann)).to_be_hidden()
    expect(tab_count(bob, "waiting")).to_have_text(exact("0"))
    bob.locator(tid("label-filter-clear")).click()
    expect(conversation_item(bob, ann)).to_be_visible()
    expect(conversation_item(bob, ben)).to_be_visible()
    expect(tab_count(bob, "waiting")).to_have_text(exact("2"))

    # the remove button takes one off, for bob too
    alice.locator(f'{view_chips}[data-label="vip"] {tid("label-remove")}').click()
    expect(alice.locator(view_chips)).to_have_count(1)
    expect(bob.locator(ann_chips)).to_have_count(1)
    assert chips(bob, ann_chips) == ["退款"]
    # and the filter by a Chinese label finds it
    box.fill("退款")
    box.press("Enter")
    expect(conversation_item(bob, ben)).to_be_hidden()
    expect(conversation_item(bob, ann)).to_be_visible()
