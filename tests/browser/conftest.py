"""Fixtures for the end-to-end browser tests.

The server runs as a real subprocess (``python -m customer_service --config=…``) with a fresh
copy of a database holding the agents alice and bob (added once per session through the CLI),
so every test starts from an empty queue. Pages run in Debian's Chromium (never downloaded),
one browser per session and one context per person; any page error, console error (CSP
violations included) or dialog fails the test at teardown.

A failed test's report carries the server log (``CS_BROWSER_LOG_LEVEL=info`` for more than
warnings), the pages' console problems, and a screenshot and accessibility snapshot of every
page (under the test's ``tmp_path``/failure).

Everything here skips, with the reason, when Playwright or /usr/bin/chromium is missing.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EmbeddingSite,
    FakeUpstream,
    ServerProcess,
    make_agents_db,
    missing_requirements,
    running_fake_upstream,
    running_server,
)
from tests.browser.pages import Pages
from tests.browser.proxy import TcpProxy

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

SKIP_REASON = missing_requirements()
HERE = Path(__file__).resolve().parent

# The fake AI streams 30 tokens 0.15 s apart: 4.5 s, long enough to watch a reply grow.
AI_TOKENS = 30
AI_CHUNK_DELAY = 0.15


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(skip)


# ---- processes ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def agents_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with alice and bob, copied into each test's server."""
    return make_agents_db(tmp_path_factory.mktemp("agents-template"))


def _log_tail(process: ServerProcess | FakeUpstream, lines: int = 80) -> str:
    """The end of a process log, without the server's banner."""
    kept = [line for line in process.log_text().splitlines() if not line.startswith(("╭", "│", "╰"))]
    return "\n".join(kept[-lines:]).strip() or "(empty)"


_ReportHook = Generator[None, pytest.TestReport, pytest.TestReport]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> _ReportHook:
    """A failed browser test's report gets the server logs, the pages' console problems and
    a screenshot plus an accessibility snapshot of every page (paths in the report)."""
    report: pytest.TestReport = yield
    if report.when != "call" or not report.failed:
        return report
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    for name, value in funcargs.items():
        if isinstance(value, ServerProcess | FakeUpstream):
            report.sections.append((f"{name}: {value.log_path}", _log_tail(value)))
    opened = funcargs.get("pages")
    tmp_path = funcargs.get("tmp_path")
    if isinstance(opened, Pages):
        if opened.problems:
            report.sections.append(("page problems (allowed ones too)",
                                    "\n".join(problem for _, problem in opened.problems)))
        if isinstance(tmp_path, Path):
            report.sections.append(("page snapshots", "\n".join(opened.snapshot(tmp_path / "failure"))))
    return report


@pytest.fixture
def server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    """The server, AI off, agents alice and bob."""
    with running_server(tmp_path / "server", agents_db=agents_db) as process:
        yield process


@pytest.fixture
def busy_server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    """A server whose texts may wait for a lock several seconds (``overload.py``)."""
    with running_server(tmp_path / "server", agents_db=agents_db, extra={"server": {
            "message_timeout": 8.0, "rate_limit_burst": 1000,
            "rate_limit_per_second": 1000.0}}) as process:
        yield process


@pytest.fixture
def fake_upstream(tmp_path: Path) -> Iterator[FakeUpstream]:
    with running_fake_upstream(tmp_path / "fake-openai", tokens=AI_TOKENS,
                               chunk_delay=AI_CHUNK_DELAY) as process:
        yield process


@pytest.fixture
def ai_server(tmp_path: Path, agents_db: Path, fake_upstream: FakeUpstream) -> Iterator[ServerProcess]:
    """A separate server whose AI answers from the fake upstream while no agent has accepted."""
    with running_server(tmp_path / "ai-server", agents_db=agents_db,
                        ai_base_url=fake_upstream.base_url) as process:
        yield process


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[TcpProxy]:
    """A cuttable TCP proxy in front of ``server``."""
    with TcpProxy(("127.0.0.1", server.port)) as tcp_proxy:
        yield tcp_proxy


@pytest.fixture
def embedding_site(server: ServerProcess) -> Iterator[EmbeddingSite]:
    """Another origin whose pages embed the widget from ``server`` as a visitor named Jamie Doe."""
    site = EmbeddingSite(server.url, 'data-name="Jamie Doe" data-email="jamie@example.com" '
                                     'data-title="Example shop support"')
    try:
        yield site
    finally:
        site.close()


# ---- browser --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    from playwright.sync_api import expect  # noqa: PLC0415

    expect.set_options(timeout=10_000)
    chromium = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    """``pages.new("visitor")``; at teardown no page may have had a JS or console error."""
    opened = Pages(browser)
    yield opened
    opened.close()
    problems = opened.unexpected()
    assert not problems, "errors in the pages:\n" + "\n".join(problems)
