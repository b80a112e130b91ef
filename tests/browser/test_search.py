"""Search in the dashboard: typing a Chinese word in the box above the list shows the hits
with the word marked; clicking one opens its conversation scrolled to the message; a
visitor is found by name; Escape brings the list back."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, ServerProcess, seed_conversation
from tests.browser.pages import Pages
from tests.browser.ui import conversation_item, login, tid

pytestmark = pytest.mark.browser


def test_a_chinese_search_hit_opens_the_conversation_at_the_message(
        server: ServerProcess, pages: Pages) -> None:
    texts = [f"第{n}条消息" for n in range(1, 41)]
    texts[1] = "你好，我想申请退款，订单号 A-1234"
    ann = seed_conversation(server.url, texts, name="王芳").conversation_id
    ben = seed_conversation(server.url, ["Hello, where is my parcel?"], name="Ben").conversation_id
    alice = pages.new("alice")
    login(alice, server.url, AGENTS["alice"])
    expect(conversation_item(alice, ann)).to_be_visible()

    box = alice.locator(tid("search-input"))
    box.fill("退款")
    hits = alice.locator(tid("search-hit"))
    expect(hits).to_have_count(1)
    hit = hits.first
    expect(hit).to_have_attribute("data-conversation-id", str(ann))
    expect(hit).to_have_attribute("data-seq", "2")
    expect(hit.locator(tid("search-hit-snippet"))).to_have_text("你好，我想申请退款，订单号 A-1234")
    expect(hit.locator("mark")).to_have_text("退款")
    expect(hit).to_contain_text("王芳")
    expect(conversation_item(alice, ben)).to_be_hidden()   # the hits stand in for the list

    hit.click()
    view = alice.locator(tid("conversation-view"))
    expect(view).to_have_attribute("data-conversation-id", str(ann))
    message = alice.locator(f'#message-list {tid("message")}[data-seq="2"]')
    expect(message).to_contain_text("我想申请退款")
    expect(message).to_be_in_viewport()                   # scrolled up to it, not the newest
    expect(alice.locator(f'#message-list {tid("message")}[data-seq="40"]')).not_to_be_in_viewport()

    # a longer phrase, and a visitor found by name
    box.fill("申请退款 A-1234")
    expect(hits).to_have_count(1)
    expect(hits.first.locator("mark")).to_have_text(["申请退款", "A-1234"])
    box.fill("ben")
    expect(hits).to_have_count(1)
    expect(hits.first).to_have_attribute("data-kind", "visitor")
    hits.first.click()
    expect(view).to_have_attribute("data-conversation-id", str(ben))

    box.fill("没有这个词")
    expect(alice.locator(tid("search-status"))).to_contain_text("没有这个词")
    expect(hits).to_have_count(0)
    box.press("Escape")
    expect(box).to_have_value("")
    expect(alice.locator(tid("search-results"))).to_be_hidden()
    expect(conversation_item(alice, ann)).to_be_visible()
    expect(conversation_item(alice, ben)).to_be_visible()
