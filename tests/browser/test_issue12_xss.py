"""Stored XSS through issue 12's inputs: a visitor's name, page, title and referrer, its
message (and so a search snippet), a page frame, a note and a canned reply, each holding
``<img src=x onerror=...>``, are shown as text in the dashboard: no element is created
from them and no dialog opens (``pages`` fails the test on any dialog, page error or CSP
violation)."""

from __future__ import annotations

import json

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect

from tests.browser.harness import AGENTS, ServerProcess, login_token
from tests.browser.pages import Pages
from tests.browser.ui import conversation_view, login, open_conversation, tid

pytestmark = pytest.mark.browser

XSS = '<img src=x onerror="window.__xss=1;alert(1)">'


def hostile_visitor(base_url: str) -> int:
    """A raw socket whose every issue-12 field is hostile; returns its conversation."""
    import trio  # noqa: PLC0415
    from trio_websocket import open_websocket_url  # noqa: PLC0415

    async def run() -> int:
        with trio.fail_after(20):
            async with open_websocket_url(base_url.replace("http://", "ws://") + "/ws/visitor") as ws:
                await ws.send_message(json.dumps({
                    "type": "hello", "name": f"Eve {XSS}", "lang": "<img src=x onerror=alert(1)>",
                    "timezone": XSS,
                    "title": f"Shop {XSS}", "referrer": f"https://ref.example/{XSS}",
                    "page": f"https://shop.example/{XSS}"}))
                while (frame := json.loads(await ws.get_message()))["type"] != "welcome":
                    pass
                conversation_id = int(frame["conversation_id"])
                for message in ({"type": "text", "id": "t1", "content": f"refund {XSS}"},
                                {"type": "page", "id": "p1", "url": f"https://shop.example/2/{XSS}",
                                 "title": f"Cart {XSS}"}):
                    await ws.send_message(json.dumps(message))
                    while (json.loads(await ws.get_message())).get("id") != message["id"]:
                        pass
                return conversation_id

    return trio.run(run)


def no_injected_image(page: Page) -> None:
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert page.evaluate("window.__xss") is None


def test_hostile_issue12_fields_render_as_text(server: ServerProcess, pages: Pages) -> None:
    conversation_id = hostile_visitor(server.url)
    token = login_token(server.url, AGENTS["alice"])
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{server.url}/api/v1/canned", json={"shortcut": "evil", "text": XSS},
                      headers=auth).status_code == 201

    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    open_conversation(agent, conversation_id, "waiting")
    panel = agent.locator(tid("visitor-context"))
    expect(panel).to_contain_text("Cart <img")
    expect(panel.locator('[data-field="referrer"]')).to_contain_text("ref.example")
    expect(conversation_view(agent)).to_contain_text(f"refund {XSS}")
    no_injected_image(agent)

    agent.locator(tid("accept")).click()
    expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
    agent.locator(tid("compose-note")).click()
    agent.locator(tid("note-input")).fill(f"note {XSS}")
    agent.locator(tid("note-input")).press("Enter")
    expect(conversation_view(agent).locator(tid("note"))).to_contain_text(f"note {XSS}")
    agent.locator(tid("compose-reply")).click()
    box = agent.locator(tid("reply-input"))
    box.fill("/evi")
    expect(agent.locator(tid("canned-item"))).to_have_count(1)
    expect(agent.locator(tid("canned-item"))).to_contain_text(XSS)
    no_injected_image(agent)
    box.fill("")

    search = agent.locator(tid("search-input"))
    search.fill("onerror")
    expect(agent.locator(tid("search-hit")).first).to_contain_text("<img")
    no_injected_image(agent)
