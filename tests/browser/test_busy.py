"""An overloaded server answers a visitor's text ``busy``: the widget says so gently,
keeps the message pending and resends it (same id) after ``retry_after``; it is stored
once. The overload is real: another process holds SQLite's write lock while a flood of
texts from another socket fills admission control's limit (``overload.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, ServerProcess, api_messages, login_token
from tests.browser.overload import FLOOD, overloaded
from tests.browser.pages import Pages
from tests.browser.ui import (
    FrameLog,
    open_widget_page,
    tid,
    widget_send,
    widget_send_acked,
    widget_wait_acked,
)

pytestmark = pytest.mark.browser


def test_a_busy_text_is_kept_pending_and_resent_after_retry_after(
        busy_server: ServerProcess, pages: Pages, tmp_path: Path) -> None:
    server = busy_server
    visitor = pages.new("visitor")
    frames = FrameLog(visitor)
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Hello, is anyone there?")  # connected: a visitor exists

    with overloaded(server, pages, tmp_path / "server" / "cs.db") as flood:
        pending = widget_send(visitor, "Are you still there?")
        error = visitor.locator(tid("cs-error"))
        expect(error).to_be_visible()
        expect(error).to_contain_text("Many people are chatting right now")
        expect(pending).to_have_attribute("data-pending", "true")
        assert pending.get_attribute("data-failed") is None  # not given up: pending

    widget_wait_acked(visitor, "Are you still there?")
    sent = [f for f in frames.sent if f.get("type") == "text" and f.get("content") == "Are you still there?"]
    assert len(sent) >= 2 and len({f["id"] for f in sent}) == 1, sent  # resent, same id
    busy = [f for f in frames.received if f.get("type") == "error" and f.get("error") == "busy"]
    assert busy and all(1 <= f["retry_after"] <= 60 for f in busy), busy

    token = login_token(server.url, AGENTS["alice"])
    conversation_id = [f for f in frames.received if f.get("type") == "welcome"][-1]["conversation_id"]
    stored = [m["content"] for m in api_messages(server.url, token, conversation_id)]
    assert stored.count("Are you still there?") == 1
    answers = flood.evaluate("window.floodAnswers")
    assert answers["busy"] >= FLOOD - 256 and answers["other"] == 0, answers
