"""Business hours in the widget and the dashboard: the header says away when no agent is
online and offers the email form (a bad address refused, a good one confirmed and shown to
the agent); outside business hours the header says when the team is back, in the visitor's
local time; the pre-chat form comes before the first message and its question becomes it.

"Outside hours" needs no fake clock: the schedule's holidays are today and the next days in
the team's time zone, so now is closed and the next opening is known."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, ServerProcess, api_messages, login_token, running_server
from tests.browser.pages import Pages
from tests.browser.ui import (
    conversation_item,
    first_conversation_id,
    login,
    open_conversation,
    open_widget_page,
    tid,
    widget_message,
    widget_messages,
    widget_send_acked,
    widget_wait_acked,
)

pytestmark = pytest.mark.browser

WELCOME = "Hi! How can we help you today?"
AWAY = "Nobody is online right now. Leave your email and we will write back."


@pytest.fixture
def replies_server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    """Auto-replies on (the tests of other features turn them off)."""
    with running_server(tmp_path / "server", agents_db=agents_db, extra={
            "auto_replies": {"welcome": {"en": WELCOME}, "away": {"en": AWAY}}}) as process:
        yield process


def test_away_the_widget_offers_the_email_form_and_the_agent_sees_the_address(
        replies_server: ServerProcess, pages: Pages) -> None:
    server = replies_server
    visitor = pages.new("visitor")
    open_widget_page(visitor, f"{server.url}/")
    team = visitor.locator(tid("cs-availability"))
    expect(team).to_have_attribute("data-status", "away")
    expect(team).to_have_text("Away: nobody is online right now")
    # the greeting shows before anything is stored, then the stored one takes its place
    expect(visitor.locator(tid("cs-welcome"))).to_have_text(WELCOME)
    expect(visitor.locator(tid("cs-leave"))).to_be_visible()
    widget_send_acked(visitor, "Is anyone there?")
    # connected: the socket's own "online" line would contradict "Away", so only the team's shows
    expect(visitor.locator(tid("cs-status"))).to_be_hidden()
    expect(team).to_be_visible()
    expect(widget_message(visitor, WELCOME, "system")).to_have_count(1)
    expect(widget_message(visitor, AWAY, "system")).to_have_count(1)
    expect(visitor.locator(tid("cs-welcome"))).to_have_count(0)
    expect(widget_messages(visitor)).to_have_count(3)
    assert widget_messages(visitor).evaluate_all("els => els.map(e => e.dataset.role)") == [
        "system", "visitor", "system"]

    email = visitor.locator(tid("cs-leave-email"))
    email.fill("vera at example")
    visitor.locator(tid("cs-leave-submit")).click()
    expect(visitor.locator(tid("cs-leave-error"))).to_contain_text("valid email address")
    email.fill("vera@example.com")
    visitor.locator(tid("cs-leave-submit")).click()
    expect(visitor.locator(tid("cs-leave-done"))).to_have_text(
        "Thank you! We will write to vera@example.com.")
    expect(visitor.locator(tid("cs-leave-error"))).to_be_hidden()

    agent = pages.new("agent")
    login(agent, server.url, AGENTS["alice"])
    cid = first_conversation_id(agent)
    expect(conversation_item(agent, cid).locator(tid("item-left-email"))).to_have_text(
        "✉ vera@example.com")
    view = open_conversation(agent, cid)
    bar = view.locator(tid("left-email"))
    expect(bar).to_be_visible()
    expect(bar.locator(tid("left-email-link"))).to_have_text("vera@example.com")
    expect(bar.locator(tid("left-email-link"))).to_have_attribute(
        "href", "mailto:vera%40example.com")
    # an agent is online now: the open widget hears it from its socket (within ~10 s)
    expect(team).to_have_attribute("data-status", "online", timeout=20_000)
    expect(team).to_have_text("Online")
    expect(visitor.locator(tid("cs-status"))).to_be_hidden()


def test_outside_hours_the_widget_says_when_the_team_is_back_in_local_time(
        tmp_path: Path, agents_db: Path, pages: Pages) -> None:
    team_zone, visitor_zone = ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York")
    today = datetime.now(team_zone).date()
    holidays = [(today + timedelta(days=n)).isoformat() for n in range(4)]
    with running_server(tmp_path / "server", agents_db=agents_db, extra={
            "hours": {"enabled": True, "timezone": "Asia/Shanghai",
                      "open": ["mon-sun 09:00-10:00"], "holidays": holidays}}) as server:
        settings = httpx.get(f"{server.url}/api/v1/widget", timeout=5.0).json()
        back = datetime.fromisoformat(settings["back_at"])
        assert settings["status"] == "closed"
        assert back == datetime.combine(today + timedelta(days=4), datetime.min.time(),
                                        tzinfo=team_zone).replace(hour=9)
        visitor = pages.new("visitor", timezone_id="America/New_York", locale="en-US")
        open_widget_page(visitor, f"{server.url}/")
        team = visitor.locator(tid("cs-availability"))
        expect(team).to_have_attribute("data-status", "closed")
        # 09:00 in Shanghai is the evening before in New York: shown as the visitor's time
        local = back.astimezone(visitor_zone)
        days = (local.date() - datetime.now(visitor_zone).date()).days
        assert 2 <= days < 7
        expect(team).to_have_text(re.compile(
            rf"^Closed: back {local:%A} at 0?{local.hour % 12 or 12}:{local:%M}\s?PM$"))
        expect(visitor.locator(tid("cs-leave"))).to_be_visible()
        assert back.astimezone(UTC).hour == 1


def test_the_pre_chat_form_comes_first_and_its_question_is_the_first_message(
        tmp_path: Path, agents_db: Path, pages: Pages) -> None:
    with running_server(tmp_path / "server", agents_db=agents_db, extra={
            "web": {"prechat_fields": ["name", "email", "question"]}}) as server:
        visitor = pages.new("visitor")
        visitor.goto(f"{server.url}/")
        form = visitor.locator(tid("cs-prechat"))
        expect(form).to_be_visible()
        expect(visitor.locator(tid("cs-input"))).to_be_hidden()
        visitor.locator(tid("cs-prechat-start")).click()
        expect(visitor.locator(tid("cs-prechat-error"))).to_have_text("Please fill in: Name")
        visitor.locator(tid("cs-prechat-name")).fill("Vera Lynn")
        visitor.locator(tid("cs-prechat-email")).fill("vera@")
        visitor.locator(tid("cs-prechat-question")).fill("Where is my parcel?")
        visitor.locator(tid("cs-prechat-start")).click()
        expect(visitor.locator(tid("cs-prechat-error"))).to_contain_text("valid email address")
        expect(visitor.locator(tid("cs-panel"))).not_to_have_attribute("data-state", "open")
        visitor.locator(tid("cs-prechat-email")).fill("vera@example.com")
        visitor.locator(tid("cs-prechat-start")).click()
        expect(form).to_be_hidden()
        expect(visitor.locator(tid("cs-input"))).to_be_visible()
        widget_wait_acked(visitor, "Where is my parcel?")

        token = login_token(server.url, AGENTS["alice"])
        conversations = httpx.get(f"{server.url}/api/v1/conversations", timeout=5.0,
                                  headers={"Authorization": f"Bearer {token}"}).json()
        (conversation,) = conversations["conversations"]
        assert conversation["visitor"]["name"] == "Vera Lynn"
        assert conversation["visitor"]["email"] == "vera@example.com"
        messages = api_messages(server.url, token, conversation["conversation_id"])
        assert [(m["sender"]["role"], m["content"]) for m in messages] == [
            ("visitor", "Where is my parcel?")]
        # a reload: the visitor is known, no form again
        visitor.reload()
        expect(visitor.locator(tid("cs-panel"))).to_have_attribute("data-state", "open")
        expect(form).to_be_hidden()
        expect(widget_message(visitor, "Where is my parcel?")).to_have_count(1)
