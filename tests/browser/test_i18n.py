"""Two languages: the widget in Simplified Chinese by data-lang="zh-CN" and by the browser's
language, and the dashboard's language switch (中文 and back, remembered across reloads).
English stays the default: the other browser tests read English texts."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect

from tests.browser.harness import AGENTS, EmbeddingSite, ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import (
    exact,
    login,
    open_widget_page,
    tab,
    tid,
    widget_panel,
    widget_send_acked,
)

pytestmark = pytest.mark.browser


def meta_matches_the_language(page: Page, message_text: str, language: str) -> str:
    """The sent message's time as shown, checked against Intl's time in ``language``."""
    message = widget_send_acked(page, message_text)
    expect(message).to_have_attribute("data-ts", re.compile(r"\d"))
    shown: str = message.locator(".cs-meta").inner_text()
    expected: str = message.evaluate(
        "(el, lang) => new Date(el.getAttribute('data-ts')).toLocaleTimeString(lang, "
        "{hour: '2-digit', minute: '2-digit'})", language)
    assert shown.split(" · ", maxsplit=1)[0] == expected, (shown, expected)
    return shown


def test_the_widget_in_chinese_with_data_lang(server: ServerProcess, pages: Pages) -> None:
    site = EmbeddingSite(server.url, 'data-lang="zh-CN"')
    try:
        visitor = pages.new("visitor", locale="en-US")  # data-lang wins over the browser
        visitor.goto(f"{site.url}/")
        bubble = visitor.locator(tid("cs-bubble"))
        expect(bubble).to_have_attribute("aria-label", "打开聊天")
        bubble.click()
        panel = widget_panel(visitor)
        expect(panel).to_be_visible()
        expect(visitor.locator(tid("cs-status"))).to_have_text("有问题尽管问我们")
        expect(visitor.locator(tid("cs-input"))).to_have_attribute("placeholder", "输入消息…")
        expect(visitor.locator(tid("cs-send"))).to_have_text(exact("发送"))
        expect(visitor.locator(".cs-close")).to_have_attribute("aria-label", "关闭聊天")
        expect(visitor.locator(tid("cs-messages"))).to_have_attribute("data-empty", re.compile("您好"))
        expect(visitor.locator(".cs-root")).to_have_attribute("lang", "zh-CN")

        shown = meta_matches_the_language(visitor, "你好，我的订单在哪里？", "zh-CN")
        assert re.fullmatch(r"\d{2}:\d{2}", shown), shown  # 24-hour, no AM/PM
        expect(visitor.locator(tid("cs-status"))).to_have_text("在线")  # connected with the message
    finally:
        site.close()


def test_the_widget_follows_the_browser_language(server: ServerProcess, pages: Pages) -> None:
    chinese = pages.new("visitor-zh", locale="zh-CN")
    open_widget_page(chinese, f"{server.url}/")
    expect(chinese.locator(tid("cs-send"))).to_have_text(exact("发送"))
    expect(chinese.locator(tid("cs-input"))).to_have_attribute("aria-label", "消息")
    # the chat page around it too
    expect(chinese.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(chinese.locator(".page-header p")).to_contain_text("客服人员")
    meta_matches_the_language(chinese, "请问有人在吗？", "zh-CN")

    english = pages.new("visitor-en", locale="en-US")
    open_widget_page(english, f"{server.url}/")
    expect(english.locator(tid("cs-send"))).to_have_text(exact("Send"))
    expect(english.locator(tid("cs-input"))).to_have_attribute("placeholder", "Write a message…")
    shown = meta_matches_the_language(english, "Is anyone there?", "en-US")
    assert re.search(r"(AM|PM)$", shown), shown


def test_the_dashboard_language_switch(server: ServerProcess, pages: Pages) -> None:
    agent = pages.new("agent", locale="en-US")
    login(agent, server.url, AGENTS["alice"])
    logout = agent.locator(tid("logout"))
    expect(logout).to_have_text("Log out")
    expect(tab(agent, "waiting")).to_contain_text("Waiting")
    switch = agent.locator(tid("language-select"))
    expect(switch).to_have_value("en")
    expect(switch.locator("option")).to_have_text(["English", "中文"])

    switch.select_option("zh-CN")  # reloads, still signed in (the token is in sessionStorage)
    expect(logout).to_have_text("退出登录")
    expect(agent.locator(tid("connection-status"))).to_have_attribute("data-state", "open")
    expect(agent.locator(tid("connection-status"))).to_have_text("在线")
    expect(tab(agent, "waiting")).to_contain_text("等待中")
    expect(tab(agent, "mine")).to_contain_text("我的")
    expect(agent.locator("#placeholder")).to_have_text("请选择一个会话。")
    expect(agent.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(agent).to_have_title(re.compile("^客服工作台 — "))
    expect(switch).to_have_value("zh-CN")

    agent.reload()  # remembered
    expect(logout).to_have_text("退出登录")
    expect(agent.locator(tid("label-filter"))).to_have_attribute("placeholder", "按标签筛选")

    agent.locator(tid("language-select")).select_option("en")
    expect(logout).to_have_text("Log out")
    expect(tab(agent, "waiting")).to_contain_text("Waiting")
    agent.reload()
    expect(logout).to_have_text("Log out")
    expect(agent.locator(tid("label-filter"))).to_have_attribute("placeholder", "Filter by label")
