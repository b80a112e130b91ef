"""Pages opened for a test, each in its own browser context, and what went wrong in them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page

__all__ = ["Pages"]


class Pages:
    """Opens pages, each in its own browser context, and records what goes wrong in them."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.problems: list[tuple[Page | None, str]] = []
        self.named: list[tuple[str, Page]] = []
        self._allowed: dict[Page, list[re.Pattern[str]]] = {}

    def new(self, name: str, **context_options: Any) -> Page:
        """A page in a new context (separate storage: one person). ``name`` labels its errors."""
        context_options.setdefault("viewport", {"width": 1280, "height": 800})
        context = self.browser.new_context(**context_options)
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = context.new_page()
        self._allowed[page] = []
        self.named.append((name, page))

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                location = message.location
                self.problems.append((page, f"{name}: console error: {message.text} "
                                            f"({location.get('url')}:{location.get('lineNumber')})"))

        def on_dialog(dialog: Dialog) -> None:
            self.problems.append((page, f"{name}: unexpected {dialog.type} dialog: {dialog.message!r}"))
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append((page, f"{name}: page error: {error}")))
        page.on("dialog", on_dialog)
        page.on("crash", lambda _: self.problems.append((page, f"{name}: the page crashed")))
        return page

    def allow(self, page: Page, pattern: str) -> None:
        """Expected console errors on ``page`` (a regular expression searched in the message)."""
        self._allowed[page].append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        """The problems not allowed by :meth:`allow`."""
        found: list[str] = []
        for page, problem in self.problems:
            allowed = self._allowed.get(page, []) if page is not None else []
            if not any(pattern.search(problem) for pattern in allowed):
                found.append(problem)
        return found

    def snapshot(self, folder: Path) -> list[str]:
        """Save a screenshot and the text of every open page (after a failure); what was saved."""
        saved: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)
        for index, (name, page) in enumerate(self.named):
            if page.is_closed():
                continue
            base = folder / f"{index}-{name}"
            try:
                page.screenshot(path=str(base.with_suffix(".png")), timeout=5_000)
                base.with_suffix(".txt").write_text(page.locator("body").aria_snapshot(timeout=5_000))
            except Exception as exc:  # a crashed or hung page: note it, save the others
                saved.append(f"{name}: no snapshot ({exc.__class__.__name__}: {exc})")
                continue
            saved.append(f"{name}: {base}.png, {base}.txt ({page.url})")
        return saved

    def close(self) -> None:
        for context in self.contexts:
            try:
                context.close()
            except Exception as exc:  # the browser may already be gone after a crash
                self.problems.append((None, f"closing a context failed: {exc}"))
