"""The Reports page of the dashboard: the hand-computed fixture (tests/reports_fixture.py)
shows as cards, per-day bars, a table by agent, the campaign, and a CSV download with the
same figures."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")

from playwright.sync_api import expect

from customer_service.storage.sqlite import open_sqlite_store
from tests.browser.harness import AGENTS, ServerProcess, running_server
from tests.browser.pages import Pages
from tests.browser.ui import login, tid
from tests.reports_fixture import fill

pytestmark = pytest.mark.browser


@pytest.fixture
def report_server(tmp_path: Path, agents_db: Path) -> Iterator[ServerProcess]:
    """A server whose database holds the fixture (written before it starts)."""
    seeded = tmp_path / "seeded"
    seeded.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = agents_db.with_name(agents_db.name + suffix)
        if source.exists():
            shutil.copyfile(source, seeded / ("cs.db" + suffix))

    async def seed() -> None:
        async with open_sqlite_store(seeded / "cs.db") as store:
            await store.migrate()
            await fill(store)

    trio.run(seed)
    with running_server(tmp_path / "server", agents_db=seeded / "cs.db") as process:
        yield process


def test_the_reports_page_shows_the_fixture_s_figures(report_server: ServerProcess,
                                                      pages: Pages) -> None:
    page = pages.new("alice", timezone_id="UTC")
    login(page, report_server.url, AGENTS["alice"])
    page.locator(tid("reports-toggle")).click()
    reports = page.locator(tid("reports"))
    expect(reports).to_be_visible()
    expect(page.locator(".workspace")).to_be_hidden()
    page.locator(tid("reports-since")).fill("2026-11-02")
    page.locator(tid("reports-until")).fill("2026-11-03")

    def value(testid: str) -> object:
        return page.locator(f"{tid(testid)} {tid('report-value')}")

    expect(value("report-opened")).to_have_text("5")
    expect(value("report-closed")).to_have_text("4")
    expect(value("report-ai-resolved")).to_have_text("1")
    expect(value("report-first-agent")).to_have_text("2 min")
    expect(page.locator(tid("report-first-agent"))).to_contain_text("p90 3 min 44 s")
    expect(value("report-first-ai")).to_have_text("6.5 s")
    expect(value("report-resolution")).to_have_text("45 min")
    expect(page.locator(tid("report-resolution"))).to_contain_text("p90 1 h 42 min")
    expect(page.locator(tid("report-messages"))).to_contain_text(
        "visitor 5 · agent 3 · AI 6 · system 5")
    expect(value("report-ai-replies")).to_have_text("5")

    bars = page.locator(tid("report-bar"))
    expect(bars).to_have_count(2)
    expect(bars.nth(0)).to_have_attribute("data-opened", "3")
    expect(bars.nth(1)).to_have_attribute("data-opened", "2")

    page.locator(tid("reports-by")).select_option("agent")
    rows = page.locator(tid("report-row"))
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("th")).to_have_text("Alice Smith")
    expect(rows.nth(0)).to_contain_text("median 1 min 30 s · p90 1 min 54 s")
    expect(rows.nth(2).locator("th")).to_have_text("(unassigned)")
    expect(page.locator(tid("report-total"))).to_contain_text("Total")
    expect(page.locator(tid("report-campaign"))).to_contain_text("November promo")
    expect(bars).to_have_count(2)  # the days still, from their own request

    link = page.locator(tid("reports-csv"))
    expect(link).to_have_attribute("download", "report-2026-11-02-2026-11-03-by-agent.csv")
    with page.expect_download() as download:
        link.click()
    csv_text = Path(download.value.path()).read_bytes().decode("utf-8")
    lines = csv_text.split("\r\n")
    assert lines[0].startswith("group,name,opened,closed,ai_resolved,")
    assert lines[1].startswith("alice,Alice Smith,2,3,0,2,90.000,114.000,")
    assert lines[-2].startswith("total,,5,4,1,3,120.000,224.000,4,6.500,23.400,4,2700.000,")

    page.locator(tid("reports-toggle")).click()
    expect(reports).to_be_hidden()
    expect(page.locator(".workspace")).to_be_visible()


def test_a_year_of_days_keeps_readable_bars(report_server: ServerProcess, pages: Pages) -> None:
    """365 days of bars scroll sideways at their own size; they were shrunk with the chart's
    width to a strip about 15 px high."""
    page = pages.new("alice", timezone_id="UTC")
    login(page, report_server.url, AGENTS["alice"])
    page.locator(tid("reports-toggle")).click()
    page.locator(tid("reports-since")).fill("2025-11-30")
    page.locator(tid("reports-until")).fill("2026-11-29")
    bars = page.locator(tid("report-bar"))
    expect(bars).to_have_count(365)  # (not the count of the since-only range before it)
    chart = page.locator(tid("report-bars")).bounding_box()
    assert chart is not None and chart["height"] >= 120, chart
    busiest = page.locator(f'{tid("report-bar")}[data-day="2026-11-02"]').bounding_box()
    assert busiest is not None and busiest["height"] >= 100 and busiest["width"] >= 10, busiest
    expect(page.locator(f'{tid("report-bar")}[data-day="2026-11-29"]')).to_be_in_viewport()


def test_a_long_agent_name_is_cut_and_the_table_fits(report_server: ServerProcess, pages: Pages,
                                                     tmp_path: Path) -> None:
    """A 60-character display name is cut with an ellipsis (whole in its tooltip) instead of
    widening its column to 400 px and pushing the figures out of sight."""
    long_name = "Bob Jones-Featherstonehaugh of the Night Shift Support Team"
    with sqlite3.connect(tmp_path / "server" / "cs.db") as db:  # the running server's
        db.execute("UPDATE agents SET name = ? WHERE username = 'bob'", (long_name,))
    page = pages.new("alice", timezone_id="UTC")
    login(page, report_server.url, AGENTS["alice"])
    page.locator(tid("reports-toggle")).click()
    page.locator(tid("reports-since")).fill("2026-11-02")
    page.locator(tid("reports-until")).fill("2026-11-03")
    page.locator(tid("reports-by")).select_option("agent")
    bob = page.locator(f'{tid("report-row")}[data-key="bob"]')
    expect(bob.locator("th")).to_have_attribute("title", long_name)
    name = bob.locator("th").bounding_box()
    assert name is not None and name["width"] <= 240, name
