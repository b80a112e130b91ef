"""core/reports.py and core/export.py without an event loop: percentiles against
``statistics``, local days against a naive walk, duration wording, request checks,
export lines and CSV cells."""

from __future__ import annotations

import csv
import io
import json
import statistics
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.export import CSV_HEADER, ExportRow, csv_row, iso, jsonl_line, safe_cell
from customer_service.core.reports import (
    SLOT_MS,
    RawReport,
    build_report,
    days_between,
    durations,
    format_duration,
    local_day,
    parse_group,
    parse_moment,
    parse_range,
    parse_zone,
    percentile,
    report_rows,
    slot_day,
)
from customer_service.errors import BadRequest

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
ZONES = ["UTC", "Asia/Shanghai", "Europe/Paris", "America/New_York", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/St_Johns"]


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=60))
def test_median_and_p90_match_statistics(values: list[int]) -> None:
    ordered = sorted(values)
    assert percentile(ordered, 0.5) == round_half_up(statistics.median(values))
    if len(values) >= 2:
        p90 = statistics.quantiles(values, n=10, method="inclusive")[8]
        assert abs(percentile(ordered, 0.9) - p90) <= 0.5 + 1e-6  # type: ignore[operator]
    else:
        assert percentile(ordered, 0.9) == values[0]


def round_half_up(value: float) -> int:
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def test_percentiles_by_hand() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1, 2, 3, 4], 0.5) == 3  # 2.5 rounds half up
    assert percentile([600, 1800, 3600, 7200], 0.9) == 6120
    assert durations([250, 60, 120]) == durations([60, 120, 250])
    assert durations([60, 120, 250]).median_ms == 120
    assert durations([]).count == 0 and durations([]).p90_ms is None


@given(st.integers(0, 4_000_000_000_000), st.sampled_from(ZONES))
def test_a_slot_lies_in_one_local_day(ms: int, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    slot = ms // SLOT_MS
    assert slot_day(slot, zone) == local_day(ms, zone)
    naive = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).strftime("%Y-%m-%d")
    assert local_day(ms, zone) == naive


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)),
       st.integers(1, 24 * 40), st.sampled_from(ZONES))
def test_days_between_lists_every_touched_local_day(start: datetime, hours: int,
                                                    zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    since = start.replace(tzinfo=UTC)
    until = since + timedelta(hours=hours)
    touched = set()
    moment = since
    while moment < until:  # a naive walk: a minute at a time near the ends (clocks go back
        # at minutes such as 00:01), a quarter hour in between
        touched.add(moment.astimezone(zone).date())
        near_end = moment - since < timedelta(hours=5) or until - moment < timedelta(hours=5)
        moment += timedelta(minutes=1 if near_end else 15)
    touched.add((until - timedelta(microseconds=1)).astimezone(zone).date())
    first, last = min(touched), max(touched)
    expected = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    assert days_between(since, until, zone) == expected


def test_a_range_back_on_the_day_before_after_clocks_go_back_lists_the_next_day() -> None:
    """St. John's went back at 00:01 NDT on 2000-10-29 (02:31 UTC): a range ending at 03:00
    UTC ends on the 28th locally, yet touched the 29th for a minute (hypothesis found it)."""
    zone = ZoneInfo("America/St_Johns")
    since = datetime(2000, 10, 23, 14, 0, tzinfo=UTC)
    days = days_between(since, since + timedelta(hours=133), zone)
    assert days[0] == "2000-10-23" and days[-1] == "2000-10-29" and len(days) == 7


@pytest.mark.parametrize(("ms", "text"), [
    (None, "-"), (800, "0.8 s"), (9_949, "9.9 s"), (10_000, "10 s"), (60_000, "1 min"),
    (250_000, "4 min 10 s"), (2_700_000, "45 min"), (6_120_000, "1 h 42 min"),
    (7_200_000, "2 h"), (90_000_000, "1 d 1 h"), (172_800_000, "2 d")])
def test_durations_read_like_people_write_them(ms: int | None, text: str) -> None:
    assert format_duration(ms) == text


def test_compact_durations_fit_a_table() -> None:
    assert [format_duration(ms, compact=True) for ms in (800, 250_000, 2_700_000, 6_120_000,
                                                          90_000_000, None)] == [
        "0.8s", "4m10s", "45m", "1h42m", "1d1h", "-"]


def test_dates_and_datetimes() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert parse_moment("2026-11-01", "--since", UTC_ZONE, end=False) == datetime(
        2026, 11, 1, tzinfo=UTC)
    assert parse_moment("2026-11-01", "--until", UTC_ZONE, end=True) == datetime(
        2026, 11, 2, tzinfo=UTC)
    assert parse_moment("2026-11-01", "--since", shanghai, end=False) == datetime(
        2026, 10, 31, 16, tzinfo=UTC)
    assert parse_moment("2026-11-01T09:30", "--since", shanghai, end=False) == datetime(
        2026, 11, 1, 1, 30, tzinfo=UTC)
    assert parse_moment("2026-11-01T09:30+00:00", "--since", shanghai, end=True) == datetime(
        2026, 11, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "2026-02-30", "11/01/2026", "",
                                  "2026-11-01T25:00", "2026-11-01 junk", "0001-01-01"])
def test_a_bad_date_names_the_option(text: str) -> None:
    with pytest.raises(BadRequest, match=r"^--since: "):
        parse_moment(text, "--since", UTC_ZONE, end=False)


@pytest.mark.parametrize(("text", "zone", "end"), [
    ("9999-12-31", "UTC", True), ("9999-12-31", "America/New_York", False),
    ("9999-12-31T23:00-05:00", "UTC", False), ("0001-01-01T00:00+01:00", "UTC", False),
    ("0001-01-01", "Pacific/Kiritimati", False), ("1969-12-31", "UTC", False)])
def test_a_real_date_at_the_calendars_ends_is_out_of_range(text: str, zone: str,
                                                            end: bool) -> None:
    """Not "is not a date": the next day of 9999-12-31, or its UTC, overflowed into that
    message (issue 13's attack pass)."""
    with pytest.raises(BadRequest) as raised:
        parse_moment(text, "--until", ZoneInfo(zone), end=end)
    assert raised.value.message == f"--until: '{text}' is out of range (1970 to 9000)"


def test_ranges_are_checked() -> None:
    span = parse_range("2026-11-01", None, zone=UTC_ZONE, by="day", now=NOW)
    assert (span.since, span.until, span.by) == (datetime(2026, 11, 1, tzinfo=UTC), NOW, "day")
    with pytest.raises(BadRequest, match=r"^--until: '2026-11-01' ends the range before"
                                         r" --since '2026-11-05' begins it"):
        parse_range("2026-11-05", "2026-11-01", zone=UTC_ZONE, by=None, now=NOW)
    with pytest.raises(BadRequest, match=r"^--since: '2027-01-01' is in the future"):
        parse_range("2027-01-01", None, zone=UTC_ZONE, by=None, now=NOW)
    with pytest.raises(BadRequest, match=r"^--until: a report covers at most"):
        parse_range("2000-01-01", "2026-11-01", zone=UTC_ZONE, by=None, now=NOW)
    with pytest.raises(BadRequest, match=r"^--by: 'week' is not one of agent, day, label"):
        parse_group("week")
    assert parse_group(None) is None and parse_group("label") == "label"
    with pytest.raises(BadRequest, match=r"^--tz: unknown time zone 'Mars/Olympus'"):
        parse_zone("Mars/Olympus")
    with pytest.raises(BadRequest, match=r"^--tz: unknown time zone"):
        parse_zone("../../etc/passwd")
    assert parse_zone("Asia/Shanghai").key == "Asia/Shanghai"


def test_a_day_report_lists_every_day_and_folds_slots_into_them() -> None:
    span = parse_range("2026-11-02", "2026-11-04", zone=ZoneInfo("Asia/Shanghai"), by="day",
                       now=NOW)
    slot = datetime(2026, 11, 2, 20, tzinfo=UTC).timestamp() * 1000 // SLOT_MS  # 11-03 04:00
    raw = RawReport(opened=[(int(slot), 2), (int(slot) + 1, 1)],
                    messages=[(int(slot), "ai", 3, 2)])
    report = build_report(span, RawReport(opened=[(None, 3)]), raw)
    assert [(row.key, row.opened) for row in report.rows] == [
        ("2026-11-02", 0), ("2026-11-03", 3), ("2026-11-04", 0)]
    assert report.rows[1].messages.ai == 3 and report.rows[1].ai_replies == 2
    assert report.total.opened == 3
    rows = report_rows(report)
    assert rows[-1][:3] == ["total", "", "3"] and rows[1][:3] == ["2026-11-03", "2026-11-03", "3"]


def test_agents_are_named_and_nobody_comes_last() -> None:
    span = parse_range("2026-11-02", "2026-11-04", zone=UTC_ZONE, by="agent", now=NOW)
    raw = RawReport(opened=[(None, 1), (2, 1), (1, 4)],
                    agent_names={1: ("zed", "Zed"), 2: ("amy", "")})
    report = build_report(span, RawReport(), raw)
    assert [(row.key, row.name, row.opened) for row in report.rows] == [
        ("amy", "amy", 1), ("zed", "Zed", 4), ("", "", 1)]


ROW = ExportRow(conversation_id=7, seq=2, created_at=1_793_610_010_123, sender_role="visitor",
                sender_id=None, sender_name="=HYPERLINK(\"x\")", content="a, \"quoted\"\nline",
                campaign_id=None, status="open", visitor_id=3, visitor_name="王芳",
                visitor_email="-x@example.com", contact_external_id="u-1",
                assigned_agent=None, conversation_created_at=1_793_610_000_000,
                labels=("billing", "vip"))


def test_a_jsonl_line_carries_the_message_and_its_conversation() -> None:
    line = jsonl_line(ROW)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    data = json.loads(line)
    assert data["created_at"] == iso(ROW.created_at) == "2026-11-02T09:00:10.123Z"
    assert data["content"] == "a, \"quoted\"\nline"     # JSON keeps text as it is
    assert data["conversation"]["labels"] == ["billing", "vip"]
    assert data["conversation"]["visitor_name"] == "王芳"
    assert data["sender_id"] is None


def test_csv_cells_are_quoted_and_formulas_defused() -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    writer.writerow(csv_row(ROW))
    back = list(csv.reader(io.StringIO(out.getvalue())))
    assert back[0] == list(CSV_HEADER)
    cells = dict(zip(CSV_HEADER, back[1], strict=True))
    assert cells["sender_name"] == "'=HYPERLINK(\"x\")"
    assert cells["content"] == "a, \"quoted\"\nline"
    assert cells["visitor_email"] == "'-x@example.com"
    assert cells["labels"] == "billing vip"
    assert cells["sender_id"] == ""
    assert [safe_cell(x) for x in ("+1", "@a", "\tx", "ok", "")] == ["'+1", "'@a", "'\tx",
                                                                      "ok", ""]
