"""The ``Store`` contract for reports and exports, on SQLite and MariaDB (see conftest.py).

The fixture (tests/reports_fixture.py) is a handful of conversations with exact
timestamps; every figure below was worked out by hand from its timeline:

- opened (created in range, the visitor wrote): C1 C2 C3 C4 C7 = 5
- closed in range: C1 (30 min), C3 (10 min), C4 (1 h), C5 (2 h) = 4; the AI alone: C3
  resolution sorted 600, 1800, 3600, 7200 s: median (1800+3600)/2 = 2700 s,
  p90 at rank 0.9*3 = 2.7: 3600 + 0.7*(7200-3600) = 6120 s
- first agent reply after the visitor's first message: C1 60 s, C2 250 s, C4 120 s:
  median 120 s, p90 at rank 1.8: 120 + 0.8*130 = 224 s
- first AI reply: C1 5 s, C3 2 s, C4 30 s, C7 8 s (the campaign's message comes before the
  visitor's and is not a reply): median 6.5 s, p90 at rank 2.7: 8 + 0.7*22 = 23.4 s
- messages written in range: visitor 5, agent 3, ai 6 (5 not from a campaign), system 5
- campaign "November promo": sent 1 (replied 1), failed 1, skipped 1
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from customer_service.core.models import ConversationStatus, NewMessage, Role
from customer_service.core.reports import (
    CampaignFigures,
    Durations,
    Figures,
    GroupBy,
    Report,
    RoleCounts,
    build_report,
    parse_range,
)
from customer_service.storage import _sql_schema
from customer_service.storage._sql import Tx
from customer_service.storage.base import Store
from tests.reports_fixture import Fixture, fill, ms

NOW = datetime(2026, 11, 30, tzinfo=UTC)


async def report(store: Store, by: GroupBy | None = None, zone: str = "UTC",
                 since: str = "2026-11-02", until: str = "2026-11-03") -> Report:
    span = parse_range(since, until, zone=ZoneInfo(zone), by=by, now=NOW)
    total, grouped = await store.report(span.since, span.until, span.by)
    return build_report(span, total, grouped)


def d(count: int, median_s: float | None = None, p90_s: float | None = None) -> Durations:
    return Durations(count, None if median_s is None else round(median_s * 1000),
                     None if p90_s is None else round(p90_s * 1000))


def fig(key: str, name: str, opened: int, closed: int, ai_resolved: int, agent: Durations,
        ai: Durations, resolution: Durations, roles: tuple[int, int, int, int],
        ai_replies: int) -> Figures:
    return Figures(key=key, name=name, opened=opened, closed=closed, ai_resolved=ai_resolved,
                   first_response_agent=agent, first_response_ai=ai, resolution=resolution,
                   messages=RoleCounts(*roles), ai_replies=ai_replies)


TOTAL = fig("", "", 5, 4, 1, d(3, 120, 224), d(4, 6.5, 23.4), d(4, 2700, 6120),
            (5, 3, 6, 5), 5)


async def test_the_whole_range_adds_up_to_the_hand_computed_figures(store: Store) -> None:
    fixture: Fixture = await fill(store)
    got = await report(store)
    assert got.total == TOTAL
    assert got.rows == []
    assert got.campaigns == [CampaignFigures(id=fixture.campaign_id, name="November promo",
                                             status="finished", sent=1, failed=1, skipped=1,
                                             pending=0, replied=1)]
    assert (got.since, got.until, got.timezone, got.by) == (
        "2026-11-02T00:00:00+00:00", "2026-11-04T00:00:00+00:00", "UTC", None)


async def test_by_day_each_figure_falls_on_its_own_event_s_day(store: Store) -> None:
    await fill(store)
    got = await report(store, "day")
    assert got.total == TOTAL
    assert got.rows == [
        # opened C1 C2 C3; closed C1 C3 C5 (600, 1800, 7200 s); agent 60, 250 s; AI 5, 2 s
        fig("2026-11-02", "2026-11-02", 3, 3, 1, d(2, 155, 231), d(2, 3.5, 4.7),
            d(3, 1800, 6120), (3, 2, 3, 4), 3),
        # opened C4 C7; closed C4 (3600 s); agent 120 s; AI 30, 8 s
        fig("2026-11-03", "2026-11-03", 2, 1, 0, d(1, 120, 120), d(2, 19, 27.8),
            d(1, 3600, 3600), (2, 1, 3, 1), 2)]


async def test_by_day_in_a_zone_counts_local_days(store: Store) -> None:
    """In Shanghai (UTC+8) the same UTC range touches 3 local days; every event of the
    fixture falls on the local 11-02 or 11-03 (09:00 UTC is 17:00 there)."""
    await fill(store)
    got = await report(store, "day", "Asia/Shanghai", "2026-11-02T00:00:00+00:00",
                       "2026-11-04T00:00:00+00:00")
    assert [row.key for row in got.rows] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert [row.opened for row in got.rows] == [3, 2, 0]
    assert [row.closed for row in got.rows] == [3, 1, 0]
    assert got.timezone == "Asia/Shanghai"
    # 2026-11-02 local in Shanghai starts at 11-01 16:00 UTC: C5 (11-01 23:00 UTC) is in.
    local = await report(store, None, "Asia/Shanghai")
    assert local.total.opened == 6


async def test_by_agent_groups_by_the_conversation_s_assignee(store: Store) -> None:
    await fill(store)
    got = await report(store, "agent")
    assert got.total == TOTAL
    assert got.rows == [
        # C1 C4 opened, C1 C4 C5 closed (1800, 3600, 7200 s); agent 60, 120 s; AI 5, 30 s
        fig("alice", "Alice", 2, 3, 0, d(2, 90, 114), d(2, 17.5, 27.5), d(3, 3600, 6480),
            (2, 2, 2, 3), 2),
        fig("bob", "Bob", 1, 0, 0, d(1, 250, 250), d(0), d(0), (1, 1, 0, 0), 0),
        # nobody: C3 C7 opened, C3 closed by the AI alone; AI 2, 8 s
        fig("", "", 2, 1, 1, d(0), d(2, 5, 7.4), d(1, 600, 600), (2, 0, 4, 2), 3)]


async def test_by_label_counts_a_conversation_under_each_of_its_labels(store: Store) -> None:
    await fill(store)
    got = await report(store, "label")
    assert got.rows == [
        fig("billing", "billing", 2, 1, 0, d(2, 155, 231), d(1, 5, 5), d(1, 1800, 1800),
            (2, 2, 1, 1), 1),
        fig("vip", "vip", 2, 1, 0, d(2, 185, 237), d(1, 30, 30), d(1, 3600, 3600),
            (2, 2, 1, 1), 1),
        fig("", "", 2, 2, 1, d(0), d(2, 5, 7.4), d(2, 3900, 6540), (2, 0, 4, 3), 3)]


async def test_an_empty_range_has_zeros_and_no_campaign(store: Store) -> None:
    await fill(store)
    got = await report(store, "day", since="2025-01-01", until="2025-01-02")
    assert got.total == fig("", "", 0, 0, 0, d(0), d(0), d(0), (0, 0, 0, 0), 0)
    assert [row.opened for row in got.rows] == [0, 0]
    assert got.campaigns == []


async def test_closing_stamps_closed_at_and_reopening_clears_it(store: Store) -> None:
    agent = await store.create_agent("carol", "Carol", "x")
    visitor = await store.create_visitor("reports-close", "Vera", "", "/")
    cid = (await store.current_conversation(visitor.id)).id
    await store.append_messages([NewMessage(cid, Role.VISITOR, None, "Vera", "hello")])
    start = datetime.now(UTC)
    await store.set_conversation_state(cid, ConversationStatus.CLOSED, agent.id)
    after_close = await report(store, since=start.isoformat(), until=(start + timedelta(days=1)).isoformat())
    assert after_close.total.closed == 1
    await store.set_conversation_state(cid, ConversationStatus.OPEN, None)
    reopened = await report(store, since=start.isoformat(), until=(start + timedelta(days=1)).isoformat())
    assert reopened.total.closed == 0


async def test_export_pages_by_conversation_and_seq_with_conversation_fields(
        store: Store) -> None:
    fixture = await fill(store)
    since, until = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC)
    bounds = await store.export_bounds(since, until)
    assert bounds == (fixture.ids["C1"], fixture.ids["C7"])
    assert bounds is not None
    rows = []
    after = (0, 0)
    pages = 0
    while True:
        page = await store.export_page(since, until, last_id=bounds[1], after=after, limit=3)
        if not page:
            break
        pages += 1
        rows += page
        after = (page[-1].conversation_id, page[-1].seq)
    # C1 4 + C2 2 + C3 5 + C4 4 + C7 3 messages (C5 and C8 are outside, C6 has none)
    assert len(rows) == 18 and pages == 6
    assert [(r.conversation_id, r.seq) for r in rows] == sorted(
        (r.conversation_id, r.seq) for r in rows)
    first = rows[0]
    assert (first.conversation_id, first.seq, first.sender_role, first.created_at) == (
        fixture.ids["C1"], 1, "visitor", ms(2, 9, 0, 10))
    assert (first.status, first.assigned_agent, first.labels, first.visitor_name) == (
        "closed", "alice", ("billing",), "Visitor C1")
    c2 = [r for r in rows if r.conversation_id == fixture.ids["C2"]]
    assert c2[0].labels == ("billing", "vip")
    c7 = [r for r in rows if r.conversation_id == fixture.ids["C7"]]
    assert c7[0].campaign_id == fixture.campaign_id
    assert c7[0].contact_external_id == "user-0"
    assert {r.contact_external_id for r in rows if r.conversation_id != fixture.ids["C7"]} == {
        None}
    assert await store.export_bounds(datetime(2025, 1, 1, tzinfo=UTC),
                                     datetime(2025, 1, 2, tzinfo=UTC)) is None


async def test_conversations_closed_before_the_migration_get_their_close_line_s_time(
        fresh_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migrated up to the version before reports, with a conversation closed twice (its
    last "… closed the conversation" line counts), one open, and one a campaign stored
    closed (no close line): the migration stamps only the first."""
    shipped = _sql_schema.load_migrations
    monkeypatch.setattr(_sql_schema, "load_migrations",
                        lambda dialect: [m for m in shipped(dialect) if m.version < 16])
    await fresh_store.migrate()

    def old_rows(tx: Tx) -> list[int]:
        ids = []
        for n, status in enumerate(("closed", "open", "closed")):
            visitor = tx.insert("INSERT INTO visitors (token_hash, name, email, page,"
                                " created_at) VALUES (?, 'V', '', '/', 1000)", (f"t{n}",))
            ids.append(tx.insert("INSERT INTO conversations (visitor_id, status, last_seq,"
                                 " created_at, updated_at) VALUES (?, ?, 3, 1000, 9000)",
                                 (visitor, status)))
        tx.executemany("INSERT INTO messages (conversation_id, seq, sender_role, sender_name,"
                       " content, created_at) VALUES (?, ?, ?, 'x', ?, ?)", [
                           (ids[0], 1, "system", "Alice closed the conversation", 2000),
                           (ids[0], 2, "visitor", "again", 3000),
                           (ids[0], 3, "system", "Alice closed the conversation", 4000),
                           (ids[1], 1, "visitor", "hello", 2000),
                           (ids[2], 1, "ai", "Hi from the campaign", 2000)])
        return ids

    ids = await fresh_store._run(old_rows, write=True)  # type: ignore[attr-defined]
    monkeypatch.setattr(_sql_schema, "load_migrations", shipped)
    await fresh_store.migrate()

    def closed_at(tx: Tx) -> list[object]:
        return [tx.one("SELECT closed_at FROM conversations WHERE id = ?", (cid,))[0]  # type: ignore[index]
                for cid in ids]

    assert await fresh_store._run(closed_at, write=False) == [4000, None, None]  # type: ignore[attr-defined]


async def test_a_bot_agent_s_message_is_not_the_first_agent_reply(store: Store) -> None:
    """The first agent reply is a human's: an API token's bot agent writing first (a CRM's
    "your order shipped") is skipped, as docs/reports.md says ("by a human agent")."""
    carol = await store.create_agent("carol", "Carol", "x")
    bot = await store.create_api_token("crm-bot", "write", "0" * 64)
    visitor = await store.create_visitor("reports-bot", "Vera", "", "/")
    cid = (await store.current_conversation(visitor.id)).id
    await store.append_messages([
        NewMessage(cid, Role.VISITOR, None, "Vera", "where is my order?"),
        NewMessage(cid, Role.AGENT, bot.agent_id, "crm-bot", "Your order shipped today."),
        NewMessage(cid, Role.AGENT, carol.id, "Carol", "Hi Vera, it arrives tomorrow.")])

    def stamp(tx: Tx) -> None:
        tx.execute("UPDATE conversations SET created_at = ? WHERE id = ?",
                   (ms(2, 9, 0), cid))
        for seq, at in ((1, ms(2, 9, 0, 10)), (2, ms(2, 9, 0, 11)), (3, ms(2, 9, 1, 40))):
            tx.execute("UPDATE messages SET created_at = ? WHERE conversation_id = ?"
                       " AND seq = ?", (at, cid, seq))

    await store._run(stamp, write=True)  # type: ignore[attr-defined]
    got = await report(store)
    assert got.total.first_response_agent == d(1, 90, 90)
    assert got.total.messages == RoleCounts(1, 2, 0, 0)
