"""A real overload for the widget's ``busy`` tests: another process holds SQLite's write
lock while a flood of texts from another page's socket fills admission control's limit."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Page

from tests.browser.harness import ServerProcess
from tests.browser.pages import Pages
from tests.browser.ui import wait_until

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

SEND_JS = """(count) => { for (let n = 0; n < count; n++)
  window.floodSocket.send(JSON.stringify({type: "text", id: "f" + n, content: "flood " + n})); }"""


@contextlib.contextmanager
def overloaded(server: ServerProcess, pages: Pages, database: Path) -> Iterator[Page]:
    """Hold ``database``'s write lock and flood ``FLOOD`` texts from a page of their own
    until the server answers ``busy``; yields that page (``window.floodAnswers`` counts
    its answers). The lock goes at exit, and the texts taken on are then stored."""
    flood = pages.new("flood")
    flood.goto(f"{server.url}/")
    ws_url = server.url.replace("http://", "ws://") + "/ws/visitor"
    assert flood.evaluate(FLOOD_JS, [ws_url, FLOOD])
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # another process's write lock: nothing commits
    try:
        flood.evaluate(SEND_JS, FLOOD)
        wait_until(flood, lambda: flood.evaluate("window.floodAnswers.busy") or None,
                   message="busy answers to the flood")
        yield flood
    finally:
        lock.execute("ROLLBACK")
        lock.close()
