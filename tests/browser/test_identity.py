"""Identified visitors in the browser: the widget on a site that signs its user in
(data-user-id / data-user-hash) is identified, shares its conversation across two devices,
counts on its bubble what arrived while the visitor was away, and agents see the profile;
a wrong hash is refused without a reconnect loop."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from customer_service.core.identity import expected_hash
from tests.browser.harness import (
    AGENTS,
    EmbeddingSite,
    ServerProcess,
    _environment,
    running_server,
)
from tests.browser.pages import Pages
from tests.browser.ui import (
    agent_reply,
    conversation_view,
    first_conversation_id,
    login,
    open_conversation,
    tid,
    widget_message,
    widget_panel,
    widget_send_acked,
)

pytestmark = pytest.mark.browser

SECRET = "browser-identity-secret-0123456789"
USER = "shopper-1"


@pytest.fixture
def identity_server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "identity-server", agents_db=agents_db,
                        extra={"identity": {"secret": SECRET}}) as process:
        yield process


def shop(server: ServerProcess, user_hash: str) -> EmbeddingSite:
    """A shop whose server signed ``USER`` in and rendered the widget's tag for them."""
    return EmbeddingSite(server.url, f'data-user-id="{USER}" data-user-hash="{user_hash}" '
                                     'data-name="Sam Shopper" data-email="sam@example.com" '
                                     'data-title="Shop support"')


def test_an_identified_visitor_on_two_devices_and_the_unread_badge(
        identity_server: ServerProcess, pages: Pages) -> None:
    site = shop(identity_server, expected_hash(SECRET, USER))
    try:
        phone = pages.new("phone")
        phone.goto(f"{site.url}/account")
        root = phone.locator(".cs-root")
        expect(root).to_have_attribute("data-user-id", USER)  # connected and identified, closed
        expect(widget_panel(phone)).to_be_hidden()
        phone.locator(tid("cs-bubble")).click()
        widget_send_acked(phone, "Where is my order?")

        agent = pages.new("agent")
        login(agent, identity_server.url, AGENTS["alice"])
        conversation_id = first_conversation_id(agent)
        open_conversation(agent, conversation_id)
        profile = agent.locator(tid("contact-profile"))
        expect(profile).to_be_visible()
        expect(profile.locator('[data-field="user_id"]')).to_have_text(USER)
        expect(profile.locator('[data-field="name"]')).to_have_text("Sam Shopper")
        expect(profile.locator('[data-field="email"]')).to_have_text("sam@example.com")
        expect(agent.locator("#view-name")).to_have_text("Sam Shopper")
        agent.locator(tid("accept")).click()
        expect(conversation_view(agent)).to_have_attribute("data-status", "assigned")
        agent_reply(agent, "It left the warehouse.")
        expect(widget_message(phone, "It left the warehouse.", "agent")).to_have_count(1)

        # The visitor leaves; a message arrives while they are away (as a campaign's would).
        phone.close()
        agent_reply(agent, "It arrives tomorrow.")

        # Next visit, on another device: the same conversation, one unread on the bubble.
        laptop = pages.new("laptop")
        laptop.goto(f"{site.url}/")
        expect(laptop.locator(".cs-root")).to_have_attribute("data-user-id", USER)
        badge = laptop.locator(".cs-bubble-badge")
        expect(badge).to_be_visible()
        expect(badge).to_have_text("1")  # the first answer was read on the phone
        laptop.locator(tid("cs-bubble")).click()
        expect(badge).to_be_hidden()
        for text, role in [("Where is my order?", "visitor"), ("It left the warehouse.", "agent"),
                           ("It arrives tomorrow.", "agent")]:
            expect(widget_message(laptop, text, role)).to_have_count(1)
        widget_send_acked(laptop, "Thanks!")
        expect(agent.locator(tid("message-text")).filter(has_text="Thanks!")).to_have_count(1)
    finally:
        site.close()


def test_a_wrong_hash_is_refused_and_not_retried(identity_server: ServerProcess,
                                                 pages: Pages) -> None:
    site = shop(identity_server, expected_hash("not-the-secret-at-all-0123", USER))
    try:
        visitor = pages.new("visitor")
        sockets: list[str] = []
        visitor.on("websocket", lambda ws: sockets.append(ws.url))
        visitor.goto(f"{site.url}/")
        root = visitor.locator(".cs-root")
        expect(root).to_have_attribute("data-refused", "identity_invalid")
        visitor.locator(tid("cs-bubble")).click()
        expect(visitor.locator(tid("cs-error"))).to_contain_text("could not confirm who you are")
        expect(widget_panel(visitor)).to_have_attribute("data-state", "closed")
        visitor.wait_for_timeout(1500)  # a reconnect would have come within 0.5-1 s
        expect(widget_panel(visitor)).to_have_attribute("data-state", "closed")
        expect(root).not_to_have_attribute("data-user-id", USER)
        assert sockets == [f"{identity_server.url.replace('http', 'ws', 1)}/ws/visitor"]
    finally:
        site.close()


def test_a_campaign_reaches_the_open_widget_and_agents_see_where_it_came_from(
        identity_server: ServerProcess, pages: Pages) -> None:
    """``campaigns create`` + ``campaigns run`` in a shell (another process, no bus): the
    identified visitor's open widget shows the message live, the agent's view marks it as
    a campaign's, and the visitor's reply reopens the conversation for agents."""
    site = shop(identity_server, expected_hash(SECRET, USER))
    try:
        phone = pages.new("phone")
        phone.goto(f"{site.url}/account")
        phone.locator(tid("cs-bubble")).click()
        widget_send_acked(phone, "Hello?")
        agent = pages.new("agent")
        login(agent, identity_server.url, AGENTS["alice"])
        open_conversation(agent, first_conversation_id(agent))

        folder = identity_server.folder
        (folder / "audience.txt").write_text(f"{USER}\n")
        command = [sys.executable, "-m", "customer_service",
                   f"--config={folder / 'customer-service.toml'}", "campaigns"]
        created = subprocess.run(
            [*command, "create", "spring", "--audience-file", str(folder / "audience.txt"),
             "--template", "Hi {name}, our spring sale starts today."],
            capture_output=True, text=True, timeout=60, check=False, env=_environment())
        assert created.returncode == 0, created.stderr
        campaign_id = int(re.search(r"campaign (\d+)", created.stdout).group(1))  # type: ignore[union-attr]
        ran = subprocess.run([*command, "run", str(campaign_id)], capture_output=True,
                             text=True, timeout=60, check=False, env=_environment())
        assert ran.returncode == 0, ran.stderr

        text = "Hi Sam Shopper, our spring sale starts today."
        expect(widget_message(phone, text, "ai")).to_have_count(1)
        sent = agent.locator(tid("message")).filter(has_text=text)
        expect(sent.locator(tid("message-campaign"))).to_have_text(f"campaign {campaign_id}")
        widget_send_acked(phone, "Nice, what is on sale?")
        expect(agent.locator(tid("message-text")).filter(
            has_text="Nice, what is on sale?")).to_have_count(1)
    finally:
        site.close()
