"""Texts answered ``busy`` are resent in the order they were typed: the widget holds the
ones typed while it waits and sends them all, in order, when ``retry_after`` has passed
(one timer per text, each with its own jitter, used to reorder them)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from tests.browser.harness import AGENTS, ServerProcess, api_messages, login_token
from tests.browser.overload import overloaded
from tests.browser.pages import Pages
from tests.browser.ui import (
    FrameLog,
    open_widget_page,
    wait_until,
    widget_send,
    widget_send_acked,
    widget_wait_acked,
)

pytestmark = pytest.mark.browser

TEXTS = [f"in order {n}" for n in range(1, 6)]


def test_texts_refused_busy_are_stored_in_the_order_they_were_typed(
        busy_server: ServerProcess, pages: Pages, tmp_path: Path) -> None:
    server = busy_server
    visitor = pages.new("visitor")
    frames = FrameLog(visitor)
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Hello")

    with overloaded(server, pages, tmp_path / "server" / "cs.db"):
        for text in TEXTS:
            widget_send(visitor, text)
        wait_until(visitor, lambda: [f for f in frames.received if f.get("error") == "busy"],
                   message="a busy answer to the visitor")

    for text in TEXTS:
        widget_wait_acked(visitor, text)
    token = login_token(server.url, AGENTS["alice"])
    conversation_id = [f for f in frames.received if f.get("type") == "welcome"][-1]["conversation_id"]
    stored = [m["content"] for m in api_messages(server.url, token, conversation_id)]
    assert [c for c in stored if c.startswith("in order")] == TEXTS
