"""An overloaded server answers a visitor's text ``busy``: the widget says so gently,
keeps the message pending and resends it (same id) after ``retry_after``; it is stored
once. The overload is real: another process holds SQLite's write lock while a flood of
texts from another socket fills admission control's limit."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from tests.browser.harness import AGENTS, ServerProcess, api_messages, login_token, running_server
from tests.browser.pages import Pages
from tests.browser.ui import (
    FrameLog,
    open_widget_page,
    tid,
    wait_until,
    widget_send,
    widget_send_acked,
    widget_wait_acked,
)

pytestmark = pytest.mark.browser

FLOOD = 300  # more than admission control's first limit (256)

FLOOD_JS = """async ([url, count]) => {
  const ws = new WebSocket(url);
  const answers = {ack: 0, busy: 0, other: 0};
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const welcomed = new Promise((resolve) => {
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "welcome") { resolve(); return; }
      if (frame.type === "ack") answers.ack += 1;
      else if (frame.type === "error" && frame.error === "busy") answers.busy += 1;
      else if (frame.type === "error") answers.other += 1;
    };
  });
  ws.send(JSON.stringify({type: "hello", name: "flood"}));
  await welcomed;
  window.floodAnswers = answers;
  window.floodSocket = ws;
  return true;
}"""


@pytest.fixture
def busy_server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "server", agents_db=agents_db, extra={"server": {
            "message_timeout": 8.0, "rate_limit_burst": 1000,
            "rate_limit_per_second": 1000.0}}) as process:
        yield process


def test_a_busy_text_is_kept_pending_and_resent_after_retry_after(
        busy_server: ServerProcess, pages: Pages, tmp_path: Path) -> None:
    server = busy_server
    visitor = pages.new("visitor")
    frames = FrameLog(visitor)
    open_widget_page(visitor, f"{server.url}/")
    widget_send_acked(visitor, "Hello, is anyone there?")  # connected: a visitor exists

    flood = pages.new("flood")
    flood.goto(f"{server.url}/")
    ws_url = server.url.replace("http://", "ws://") + "/ws/visitor"
    assert flood.evaluate(FLOOD_JS, [ws_url, FLOOD])

    lock = sqlite3.connect(tmp_path / "server" / "cs.db", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process's write lock: nothing commits
    try:
        flood.evaluate("""(count) => { for (let n = 0; n < count; n++)
            window.floodSocket.send(JSON.stringify({type: "text", id: "f" + n,
                                                     content: "flood " + n})); }""", FLOOD)
        wait_until(flood, lambda: flood.evaluate("window.floodAnswers.busy") or None,
                   message="busy answers to the flood")
        pending = widget_send(visitor, "Are you still there?")
        error = visitor.locator(tid("cs-error"))
        expect(error).to_be_visible()
        expect(error).to_contain_text("Many people are chatting right now")
        expect(pending).to_have_attribute("data-pending", "true")
        assert pending.get_attribute("data-failed") is None  # not given up: pending
    finally:
        lock.execute("ROLLBACK")
        lock.close()

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
