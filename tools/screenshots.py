#!/usr/bin/env python3
"""Take the documentation screenshots of the widget and the agent dashboard.

    .venv/bin/python tools/screenshots.py [--out docs/screenshots]

Starts a throwaway server (AI off, agents alice and bob, in a temporary folder), plays a short
conversation in headless Chromium (/usr/bin/chromium, driven by Playwright) and writes:

- ``widget.png``        the standalone page with the chat open, 1280x800;
- ``widget-phone.png``  the same visitor on a phone, 390x844;
- ``dashboard.png``     alice's dashboard with a few conversations, one of them open, 1280x800.

It reuses the browser tests' harness (``tests/browser/``). Running it again overwrites the
files; the whole run is bounded (``--timeout``, 120 s by default).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.browser.harness import (  # noqa: E402
    AGENTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    SeededConversation,
    ServerProcess,
    make_agents_db,
    missing_requirements,
    running_server,
    seed_conversation,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, ViewportSize

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

# Conversations already in the queue when alice logs in: (name, page, what they wrote).
OTHER_VISITORS = [
    ("Priya Patel", "https://shop.example.com/pricing",
     ["Hello! Do you offer a discount on the annual plan for non-profits?"]),
    ("Lucas Martin", "https://shop.example.com/account/settings",
     ["How can I change the email address on my account?"]),
]
JAMIE = ("Jamie Doe", "https://shop.example.com/orders/1042")


def _on_timeout(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError("tools/screenshots.py ran out of time")


def take(out: Path, server: ServerProcess) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright  # noqa: PLC0415

    from tests.browser.ui import (  # noqa: PLC0415
        agent_reply,
        conversation_item,
        conversation_view,
        login,
        open_conversation,
        open_widget_page,
        show_tab,
        tid,
        widget_message,
        widget_send_acked,
    )

    def accept(page: Page, conversation_id: int | str) -> None:
        open_conversation(page, conversation_id)
        page.locator(tid("accept")).click()
        expect(conversation_view(page)).to_have_attribute("data-status", "assigned")

    for name, page_url, texts in OTHER_VISITORS:
        seed_conversation(server.url, texts, name=name, page=page_url)
        time.sleep(0.3)  # distinct activity times: a stable order in the list
    jamie: SeededConversation = seed_conversation(
        server.url, ["Hi, my parcel was due on Monday and it still hasn't arrived."],
        name=JAMIE[0], page=JAMIE[1])

    written: list[Path] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            agent_context = browser.new_context(viewport=DESKTOP, device_scale_factor=1)
            visitor_context = browser.new_context(viewport=DESKTOP, device_scale_factor=1)
            for context in (agent_context, visitor_context):
                context.set_default_timeout(10_000)
            agent = agent_context.new_page()
            visitor = visitor_context.new_page()
            login(agent, server.url, AGENTS["alice"])

            # Jamie (a raw visitor socket, with a name and a page) and alice.
            accept(agent, jamie.conversation_id)
            agent_reply(agent, "Hi Jamie, I'm Alice. Sorry about that! Let me check with the carrier.")
            jamie = seed_conversation(server.url, ["Thanks! It's order #1042."], name=JAMIE[0],
                                      page=JAMIE[1], visitor_token=jamie.visitor_token)
            agent_reply(agent, "It is at the local depot and goes out for delivery tomorrow morning.")

            # A visitor on the standalone page.
            open_widget_page(visitor, f"{server.url}/")
            widget_send_acked(visitor, "Hi! Can I still change the delivery address of my order?")
            show_tab(agent, "waiting")
            item = agent.locator(tid("conversation-item")).filter(
                has_text="change the delivery address")
            expect(item).to_have_count(1)
            widget_conversation = item.get_attribute("data-conversation-id")
            assert widget_conversation is not None
            accept(agent, widget_conversation)
            agent_reply(agent, "Hi! Yes, as long as it has not shipped. What is the new address?")
            widget_send_acked(visitor, "12 Rue des Lilas, 75011 Paris.")
            agent_reply(agent, "Done: your order will go to 12 Rue des Lilas. Anything else?")
            expect(widget_message(visitor, "Done: your order will go to 12 Rue des Lilas. Anything else?",
                                  "agent")).to_have_count(1)
            widget_send_acked(visitor, "That's all, thank you!")
            visitor.locator(tid("cs-input")).fill("")
            visitor.wait_for_timeout(300)
            written.append(_shot(visitor, out / "widget.png"))

            # The same visitor on a phone (same storage: the conversation resumes).
            phone_context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                                has_touch=True, storage_state=visitor_context.storage_state())
            phone_context.set_default_timeout(10_000)
            phone = phone_context.new_page()
            open_widget_page(phone, f"{server.url}/")
            expect(widget_message(phone, "That's all, thank you!")).to_have_count(1)
            phone.wait_for_timeout(300)
            written.append(_shot(phone, out / "widget-phone.png"))

            # alice's dashboard: her conversations in Mine, Jamie's open, one still waiting.
            agent_reply(agent, "You're welcome, have a nice day!")
            accept(agent, _conversation_of(agent, "Priya Patel"))
            agent_reply(agent, "Hi Priya, yes: non-profits get 30% off. I'll send you the details.")
            show_tab(agent, "mine")
            open_conversation(agent, jamie.conversation_id)
            expect(conversation_item(agent, jamie.conversation_id)).to_be_visible()
            agent.locator(tid("reply-input")).fill("")
            agent.mouse.move(0, 0)
            agent.wait_for_timeout(300)
            written.append(_shot(agent, out / "dashboard.png"))

            for context in (agent_context, visitor_context, phone_context):
                context.close()
        finally:
            browser.close()
    return written


def _conversation_of(page: Page, visitor_name: str) -> str:
    """The id of the waiting conversation of ``visitor_name`` in the dashboard."""
    from playwright.sync_api import expect  # noqa: PLC0415

    from tests.browser.ui import show_tab, tid  # noqa: PLC0415

    show_tab(page, "waiting")
    item = page.locator(tid("conversation-item")).filter(
        has=page.locator(tid("visitor-name"), has_text=visitor_name))
    expect(item).to_have_count(1)
    conversation_id = item.get_attribute("data-conversation-id")
    assert conversation_id is not None
    return conversation_id


def _shot(page: Page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots",
                        help="folder for the PNG files (default: docs/screenshots)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason is not None:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGALRM, _on_timeout)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    try:
        with tempfile.TemporaryDirectory(prefix="cs-screenshots-") as folder:
            workdir = Path(folder)
            agents_db = make_agents_db(workdir / "template")
            with running_server(workdir / "server", agents_db=agents_db) as server:
                for path in take(args.out, server):
                    print(f"wrote {path}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
