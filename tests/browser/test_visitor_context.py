"""Visitor context in the dashboard: for a visitor who used the widget in Chromium (its own
User-Agent and time zone, arriving from a search page), the panel beside the conversation
shows the page, the referrer, browser and OS, the time zone and the visitor's local time,
the IP address and an earlier conversation as a link that opens it; when the site (a
single-page app) navigates, the current page changes on the agent's screen."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect

from customer_service.core.identity import expected_hash
from tests.browser.harness import AGENTS, EmbeddingSite, ServerProcess, running_server
from tests.browser.pages import Pages
from tests.browser.ui import conversation_view, login, open_conversation, tid, widget_send_acked

pytestmark = pytest.mark.browser

SECRET = "browser-context-secret-0123456789"
USER = "shopper-7"
CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/120.0.6099.109 Safari/537.36")


@pytest.fixture
def identity_server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "context-server", agents_db=agents_db,
                        extra={"identity": {"secret": SECRET}}) as process:
        yield process


def identified_hello(base_url: str, visitor_token: str | None) -> int:
    """A hello as the shop's signed-in ``USER`` (a raw socket, as another device or the same
    browser after signing in would); returns the conversation it is served."""
    import trio  # noqa: PLC0415
    from trio_websocket import open_websocket_url  # noqa: PLC0415

    async def run() -> int:
        with trio.fail_after(20):
            async with open_websocket_url(base_url.replace("http://", "ws://") + "/ws/visitor") as ws:
                hello = {"type": "hello", "user_id": USER, "user_hash": expected_hash(SECRET, USER),
                         "name": "Sam Shopper"}
                if visitor_token:
                    hello["visitor_token"] = visitor_token
                await ws.send_message(json.dumps(hello))
                while True:
                    frame = json.loads(await ws.get_message())
                    if frame["type"] == "welcome":
                        return int(frame["conversation_id"])

    return trio.run(run)


def field(page: Page, name: str) -> str:
    return f'{tid("visitor-context")} [data-field="{name}"]'


def test_the_context_panel_beside_a_widget_visitor(identity_server: ServerProcess,
                                                   pages: Pages) -> None:
    # The shopper once wrote from their phone, signed in: the contact's conversation.
    earlier = identified_hello(identity_server.url, None)
    site = EmbeddingSite(identity_server.url, 'data-title="Shop support"')
    try:
        visitor = pages.new("visitor", user_agent=CHROME_WINDOWS, timezone_id="Asia/Tokyo")
        visitor.goto(f"{site.url}/products/blue?campaign=secret#reviews",
                     referer="http://search.example/results?q=blue+widget")
        visitor.locator(tid("cs-bubble")).click()
        widget_send_acked(visitor, "Is the blue one in stock?")
        origin = site.url
        key = f"cs-widget:{identity_server.url}"
        current = int(visitor.evaluate(f"localStorage.getItem({json.dumps(key + ':conv')})"))
        token = visitor.evaluate(f"localStorage.getItem({json.dumps(key + ':token')})")
        assert current != earlier
        # Later the same browser's visitor signs in as the shopper: one person, two chats.
        assert identified_hello(identity_server.url, token) == earlier

        agent = pages.new("agent")
        login(agent, identity_server.url, AGENTS["alice"])
        open_conversation(agent, current, "waiting")
        panel = agent.locator(tid("visitor-context"))
        expect(panel).to_be_visible()
        expect(agent.locator(field(agent, "page"))).to_have_text(
            f"Example shop — {origin}/products/blue")
        expect(agent.locator(field(agent, "browser"))).to_have_text("Chrome 120.0")
        expect(agent.locator(field(agent, "os"))).to_have_text("Windows 10")
        expect(agent.locator(field(agent, "timezone"))).to_have_text("Asia/Tokyo")
        expect(agent.locator(field(agent, "ip"))).to_have_text("127.0.0.1")
        referrer = agent.locator(field(agent, "referrer"))
        expect(referrer).to_contain_text("search.example")
        assert "?" not in referrer.inner_text()  # the query is never sent
        # the visitor's local time: what this browser says the time is in Tokyo now
        shown = agent.locator(field(agent, "local-time")).inner_text()
        tokyo = agent.evaluate(
            "[0, 60000].map((back) => new Date(Date.now() - back).toLocaleTimeString("
            "document.documentElement.lang || 'en', {hour: '2-digit', minute: '2-digit', "
            "timeZone: 'Asia/Tokyo'}))")
        assert shown in tokyo, (shown, tokyo)
        # the contact's profile (the visitor signed in) is in the panel too
        expect(panel.locator(tid("contact-profile"))).to_be_visible()
        expect(panel.locator('[data-field="user_id"]')).to_have_text(USER)

        # the site navigates without a reload: the agent sees the new page
        visitor.evaluate("history.pushState({}, '', '/cart?step=2'); document.title = 'Your cart'")
        expect(agent.locator(field(agent, "page"))).to_have_text(f"Your cart — {origin}/cart")
        pages_seen = panel.locator(tid("context-page"))
        expect(pages_seen).to_have_count(2)
        assert pages_seen.evaluate_all("els => els.map(e => e.dataset.url)") == [
            f"{origin}/products/blue", f"{origin}/cart"]

        # the earlier conversation is a link that opens it
        link = panel.locator(tid("earlier-conversation"))
        expect(link).to_have_count(1)
        expect(link).to_have_attribute("data-conversation-id", str(earlier))
        expect(link).to_contain_text(re.compile(rf"#{earlier} · waiting · "))
        link.click()
        expect(conversation_view(agent)).to_have_attribute("data-conversation-id", str(earlier))
        back = panel.locator(tid("earlier-conversation"))
        expect(back).to_have_attribute("data-conversation-id", str(current))
    finally:
        site.close()
