"""The agent dashboard: several agents, login errors, a phone-sized screen, scroll-back."""

from __future__ import annotations

import contextlib

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.harness import (
    AGENTS,
    ServerProcess,
    agent_ids,
    login_token,
    seed_conversation,
)
from tests.browser.pages import Pages
from tests.browser.ui import (
    agent_reply,
    conversation_item,
    conversation_view,
    exact,
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    seqs,
    show_tab,
    tab_count,
    tid,
    view_message,
    view_messages,
    widget_message,
    widget_messages,
    widget_send_acked,
)

pytestmark = pytest.mark.browser


def test_two_agents_accept_transfer_close(server: ServerProcess, pages: Pages) -> None:
    alice = pages.new("alice")
    login(alice, server.url, AGENTS["alice"])
    bob = pages.new("bob")
    login(bob, server.url, AGENTS["bob"])
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Can someone help me with a refund?")

    conversation_id = first_conversation_id(alice)
    assert first_conversation_id(bob) == conversation_id
    for page in (alice, bob):
        expect(conversation_item(page, conversation_id)).to_have_attribute("data-status", "open")
        expect(tab_count(page, "waiting")).to_have_text(exact("1"))

    # alice accepts: hers; for bob it moves from Waiting to Others.
    open_conversation(alice, conversation_id)
    alice.locator(tid("accept")).click()
    expect(conversation_view(alice)).to_have_attribute("data-status", "assigned")
    expect(tab_count(alice, "mine")).to_have_text(exact("1"))
    expect(tab_count(bob, "waiting")).to_have_text(exact("0"))
    expect(tab_count(bob, "others")).to_have_text(exact("1"))
    show_tab(bob, "others")
    expect(conversation_item(bob, conversation_id)).to_be_visible()
    expect(conversation_item(bob, conversation_id)).to_have_attribute("data-status", "assigned")
    show_tab(bob, "waiting")
    expect(conversation_item(bob, conversation_id)).to_be_hidden()

    # alice transfers to bob: his (Mine), no longer hers (Others).
    bob_id = agent_ids(server.url, login_token(server.url, AGENTS["alice"]))["bob"]
    # bob's dashboard is open, so the picker shows him online.
    expect(alice.locator(f'{tid("transfer-select")} option[value="{bob_id}"]')).to_have_text(
        "Bob Jones (online)")
    alice.locator(tid("transfer-select")).select_option(str(bob_id))
    alice.locator(tid("transfer-submit")).click()
    expect(tab_count(bob, "mine")).to_have_text(exact("1"))
    expect(tab_count(alice, "mine")).to_have_text(exact("0"))
    show_tab(alice, "others")
    expect(conversation_item(alice, conversation_id)).to_be_visible()
    expect(view_message(alice, "Alice Smith transferred the conversation to Bob Jones", "system")) \
        .to_have_count(1)

    open_conversation(bob, conversation_id, "mine")
    expect(view_message(bob, "Can someone help me with a refund?", "visitor")).to_have_count(1)
    agent_reply(bob, "Hi, Bob here: I will handle your refund.")
    expect(widget_message(visitor, "Hi, Bob here: I will handle your refund.", "agent")).to_have_count(1)
    expect(widget_messages(visitor, "system").filter(has_text="transferred")).to_have_count(1)

    # bob closes it: Closed for both.
    bob.locator(tid("close")).click()
    expect(conversation_view(bob)).to_have_attribute("data-status", "closed")
    for page in (alice, bob):
        show_tab(page, "closed")
        expect(conversation_item(page, conversation_id)).to_be_visible()
        expect(conversation_item(page, conversation_id)).to_have_attribute("data-status", "closed")
        expect(tab_count(page, "mine")).to_have_text(exact("0"))
    expect(widget_messages(visitor, "system").filter(has_text="closed")).to_have_count(1)


def test_wrong_password_and_phone_layout(server: ServerProcess, pages: Pages) -> None:
    seeded = seed_conversation(server.url, ["Hi, my parcel never arrived."], name="Jamie Doe",
                               page="https://shop.example.com/orders/1042")
    phone = pages.new("agent-phone", viewport={"width": 375, "height": 812}, device_scale_factor=2,
                      is_mobile=True, has_touch=True)
    pages.allow(phone, r"status of 401")  # Chromium logs the refused login request

    phone.goto(f"{server.url}/agent")
    phone.locator(tid("login-username")).fill("alice")
    phone.locator(tid("login-password")).fill("not her password")
    phone.locator(tid("login-submit")).click()
    error = phone.locator(tid("login-error"))
    expect(error).to_be_visible()
    expect(error).not_to_have_text(exact(""))
    expect(phone.locator(tid("login-form"))).to_be_visible()
    expect(phone.locator(tid("agent-name"))).to_be_hidden()

    login(phone, server.url, AGENTS["alice"])
    show_tab(phone, "waiting")
    item = conversation_item(phone, seeded.conversation_id)
    expect(item).to_be_visible()
    expect(item).to_be_in_viewport()
    expect(item.locator(tid("visitor-name"))).to_contain_text("Jamie Doe")
    expect(item.locator(tid("visitor-page"))).to_contain_text("shop.example.com/orders/1042")
    _fits_width(phone, 375)
    # the top bar (status, name, language, notifications, log out) fits too
    for control in ("status-select", "agent-name", "language-select", "notify-toggle", "logout"):
        expect(phone.locator(f".topbar {tid(control)}")).to_be_in_viewport(ratio=1)

    item.tap()
    view = conversation_view(phone)
    expect(view).to_be_visible()
    expect(view).to_have_attribute("data-conversation-id", str(seeded.conversation_id))
    message = view_message(phone, "Hi, my parcel never arrived.", "visitor")
    expect(message).to_be_visible()
    expect(message).to_be_in_viewport()
    expect(phone.locator(tid("accept"))).to_be_in_viewport()
    _fits_width(phone, 375)


def _fits_width(page: Page, width: int) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page is {scroll_width}px wide on a {width}px screen"


def test_scroll_back_loads_older_messages(server: ServerProcess, pages: Pages) -> None:
    texts = [f"message number {n}" for n in range(1, 121)]
    seeded = seed_conversation(server.url, texts, name="Chatty Visitor", page="https://shop.example.com/")
    assert seeded.last_seq == 120
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    open_conversation(agent, seeded.conversation_id, "waiting")

    messages = view_messages(agent)
    expect(messages).to_have_count(50)
    assert seqs(messages) == list(range(71, 121))
    expect(messages.last.locator(tid("message-text"))).to_have_text("message number 120")

    # Click "load older" until seq 1 is there. Scrolling the button into view scrolls the list
    # to the top, which loads the older page by itself and may hide the button (all loaded)
    # before the click lands: that is fine, what counts is that the count goes up.
    load_older = agent.locator(tid("load-older"))
    for _ in range(10):
        if seqs(messages)[0] == 1:
            break
        shown = messages.count()
        if load_older.is_visible():
            with contextlib.suppress(PlaywrightTimeoutError):
                load_older.click(timeout=3_000)
        expect(messages).not_to_have_count(shown)
    expect(messages).to_have_count(120)
    assert seqs(messages) == list(range(1, 121))
    found = messages.locator(tid("message-text")).all_inner_texts()
    assert [text.strip() for text in found] == texts
    expect(load_older).to_be_hidden()


def test_logout_revokes_the_token_on_the_server(server: ServerProcess, pages: Pages) -> None:
    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    token = agent.evaluate("sessionStorage.getItem('cs-agent-token')")
    assert isinstance(token, str) and token
    bearer = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.url}/api/v1/me", headers=bearer, timeout=5).status_code == 200

    with agent.expect_response(lambda r: r.url.endswith("/api/v1/logout")) as logout:
        agent.locator(tid("logout")).click()
    assert logout.value.status == 200
    expect(agent.locator(tid("login-form"))).to_be_visible()
    assert agent.evaluate("sessionStorage.getItem('cs-agent-token')") is None
    refused = httpx.get(f"{server.url}/api/v1/me", headers=bearer, timeout=5)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
