"""Branding from [web] (title, logo_url, accent_color) in the widget, the chat page and the
dashboard; the chat page's embed help only with show_embed_help; and opening the chat page
creates no visitor and no conversation until the visitor writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect

from tests.browser.harness import AGENTS, EmbeddingSite, ServerProcess, running_server
from tests.browser.pages import Pages
from tests.browser.ui import login, open_widget_page, tid, widget_panel, widget_send_acked

pytestmark = pytest.mark.browser

BRAND = {"title": "Acme Help", "accent_color": "#c0ffee", "logo_url": "/static/favicon.svg",
         "show_embed_help": True, "default_language": "zh-CN"}


@pytest.fixture
def branded(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "branded", agents_db=agents_db, extra={"web": BRAND}) as process:
        yield process


def css_variable(page: Page, selector: str, name: str) -> str:
    value: str = page.locator(selector).first.evaluate(
        "(el, name) => getComputedStyle(el).getPropertyValue(name).trim()", name)
    return value


def count(server: ServerProcess, table: str) -> int:
    with sqlite3.connect(f"file:{server.folder / 'cs.db'}?mode=ro", uri=True) as db:
        found: int = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return found


def test_branding_on_the_chat_page_the_widget_and_the_dashboard(branded: ServerProcess,
                                                                pages: Pages) -> None:
    visitor = pages.new("visitor", locale="en-US")  # the browser's language wins over the default
    open_widget_page(visitor, f"{branded.url}/")
    expect(visitor).to_have_title("Acme Help")
    expect(visitor.locator(tid("cs-send"))).to_have_text("Send")
    expect(visitor.locator(tid("page-title"))).to_have_text("Acme Help")
    page_logo = visitor.locator(f'{tid("page-title")} {tid("brand-logo")}')
    expect(page_logo).to_be_visible()
    expect(page_logo).to_have_attribute("src", "/static/favicon.svg")
    assert css_variable(visitor, "html", "--accent") == "#c0ffee"
    # the widget on it: the title, the accent and the logo
    expect(visitor.locator(tid("cs-title"))).to_have_text("Acme Help")
    assert css_variable(visitor, ".cs-root", "--cs-accent") == "#c0ffee"
    header = visitor.locator(".cs-header").first
    assert header.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(192, 255, 238)"
    widget_logo = visitor.locator(tid("cs-logo"))
    expect(widget_logo).to_be_visible()
    expect(widget_logo).to_have_attribute("src", f"{branded.url}/static/favicon.svg")
    assert widget_logo.evaluate("img => img.naturalWidth") > 0  # loaded: the CSP allows it
    # show_embed_help = true: the snippet and the dashboard link
    expect(visitor.locator(tid("embed-help"))).to_be_visible()
    snippet = visitor.locator(tid("embed-snippet"))
    expect(snippet).to_have_text(f'<script src="{branded.url}/widget.js" async></script>')
    expect(visitor.locator(tid("dashboard-link"))).to_be_visible()

    agent = pages.new("agent", locale="en-US")
    login(agent, branded.url, AGENTS["alice"])
    expect(agent.locator(tid("brand-title"))).to_have_text("Acme Help")
    expect(agent.locator(f'{tid("brand")} {tid("brand-logo")}')).to_be_visible()
    # no language chosen yet: [web] default_language, whatever the browser's
    expect(agent).to_have_title("客服工作台 — Acme Help")
    expect(agent.locator(tid("language-select"))).to_have_value("zh-CN")
    assert css_variable(agent, "html", "--accent") == "#c0ffee"


def test_data_title_and_data_color_win_over_the_config(branded: ServerProcess, pages: Pages) -> None:
    site = EmbeddingSite(branded.url, 'data-title="Shop support" data-color="#ff0000"')
    try:
        visitor = pages.new("visitor", locale="fr-FR")  # a language the widget lacks: the default
        visitor.goto(f"{site.url}/")
        visitor.locator(tid("cs-bubble")).click()
        expect(widget_panel(visitor)).to_be_visible()
        expect(visitor.locator(tid("cs-title"))).to_have_text("Shop support")
        assert css_variable(visitor, ".cs-root", "--cs-accent") == "#ff0000"
        expect(visitor.locator(tid("cs-logo"))).to_be_visible()  # the logo still comes from [web]
        expect(visitor.locator(tid("cs-send"))).to_have_text("发送")
    finally:
        site.close()


def test_the_chat_page_hides_the_embed_help_and_creates_nothing_until_the_visitor_writes(
        server: ServerProcess, pages: Pages) -> None:
    visitor = pages.new("visitor")
    sockets: list[str] = []
    visitor.on("websocket", lambda ws: sockets.append(ws.url))
    open_widget_page(visitor, f"{server.url}/")
    expect(widget_panel(visitor)).to_have_attribute("data-state", "idle")
    expect(visitor.locator(tid("page-title"))).to_have_text("Customer service")  # [web] title default
    expect(visitor.locator(tid("embed-help"))).to_be_hidden()
    expect(visitor.locator(tid("dashboard-link"))).to_be_hidden()
    expect(visitor.locator(tid("brand-logo"))).to_have_count(0)
    expect(visitor.locator(tid("cs-logo"))).to_have_count(0)

    # looking around (another page view, typing without sending) creates nothing
    visitor.reload()
    expect(widget_panel(visitor)).to_have_attribute("data-state", "idle")
    visitor.locator(tid("cs-input")).fill("Hel")
    visitor.wait_for_timeout(1500)  # a grace period for a socket that should not come
    assert sockets == []
    assert count(server, "conversations") == 0
    assert count(server, "visitors") == 0

    visitor.locator(tid("cs-input")).fill("")
    widget_send_acked(visitor, "Hello, I have a question.")
    expect(widget_panel(visitor)).to_have_attribute("data-state", "open")
    assert len(sockets) == 1
    assert count(server, "conversations") == 1
