"""Reports: what the figures mean, and the maths on what the store aggregated.

The store (``storage/_sql_reports.py``) counts and groups in SQL and hands back a
``RawReport``: counts per group key, and one duration per conversation for the
figures that need percentiles. This module checks the request (dates, range, time
zone, grouping), takes medians and 90th percentiles, folds 15-minute slots into local
days, and builds the ``Report`` the CLI prints and ``GET /api/v1/reports`` answers.
Definitions of every figure: docs/reports.md.

Percentiles interpolate linearly between the closest ranks (NumPy's default, the
"inclusive" method of ``statistics.quantiles``): the median of 1, 2, 3, 4 is 2.5. They
are taken over conversations (one duration each), never over messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from customer_service.core.export import safe_cell
from customer_service.errors import BadRequest

GroupBy = Literal["agent", "day", "label"]
GROUPS: tuple[GroupBy, ...] = ("agent", "day", "label")
ROLES = ("visitor", "agent", "ai", "system")

SLOT_MS = 15 * 60 * 1000
"""The store groups timestamps by 15-minute slot (UTC epoch based); every time zone's
offset from UTC is a whole number of quarter hours, so a slot lies in one local day."""

MAX_DAYS = 3660
"""The longest range a report covers (about ten years): bounds the rows of ``--by day``."""

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Key = int | str | None
"""A group key as the store gives it: an agent id, a label, a slot number (day), or None
(no agent, no label; the whole range when there is no grouping)."""


# --- what the store hands back ----------------------------------------------------------

class CampaignFigures(msgspec.Struct, frozen=True):
    """A campaign's results, as the store reads them and as the report shows them."""

    id: int
    name: str
    status: str
    sent: int
    failed: int
    skipped: int
    pending: int
    replied: int


@dataclass(slots=True)
class RawReport:
    """One grouping's aggregates from the store (see ``storage/_sql_reports.py``)."""

    opened: list[tuple[Key, int]] = field(default_factory=list)
    closed: list[tuple[Key, int, int]] = field(default_factory=list)
    """(key, conversations closed, of which resolved by the AI alone)."""
    messages: list[tuple[Key, str, int, int]] = field(default_factory=list)
    """(key, sender role, messages, of which not sent by a campaign)."""
    resolution_ms: list[tuple[Key, int]] = field(default_factory=list)
    """(key, closed_at - created_at) per conversation closed in the range."""
    first_response_ms: list[tuple[Key, int | None, int | None]] = field(default_factory=list)
    """(key, first agent reply - first visitor message, the same for the AI) per
    conversation opened in the range with a visitor message; None: no such reply."""
    campaigns: list[CampaignFigures] = field(default_factory=list)
    agent_names: dict[int, tuple[str, str]] = field(default_factory=dict)
    """agent id → (username, display name)."""


# --- what the report says ---------------------------------------------------------------

class Durations(msgspec.Struct, frozen=True):
    count: int
    """Conversations measured."""
    median_ms: int | None
    p90_ms: int | None


class RoleCounts(msgspec.Struct, frozen=True):
    visitor: int = 0
    agent: int = 0
    ai: int = 0
    system: int = 0


class Figures(msgspec.Struct, frozen=True):
    key: str
    """The group: an agent's username, a label, a local day (YYYY-MM-DD); "" for no agent,
    no label, or the whole range."""
    name: str
    """The group for people: an agent's display name; otherwise the key."""
    opened: int
    closed: int
    ai_resolved: int
    first_response_agent: Durations
    first_response_ai: Durations
    resolution: Durations
    messages: RoleCounts
    ai_replies: int


class Report(msgspec.Struct, frozen=True):
    since: str
    until: str
    timezone: str
    by: GroupBy | None
    total: Figures
    rows: list[Figures]
    campaigns: list[CampaignFigures]


class ReportQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``GET /api/v1/reports``' query parameters (all strings on the wire)."""

    since: str
    """First day (YYYY-MM-DD, in ``tz``) or an ISO 8601 datetime."""
    until: str | None = None
    """Last day, included, or an ISO 8601 datetime, excluded; default: now."""
    by: GroupBy | None = None
    """Rows by assigned agent, local day or label."""
    tz: str | None = None
    """IANA time zone; default: ``[hours] timezone``."""


# --- checking a request -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ReportRange:
    since: datetime
    until: datetime
    zone: ZoneInfo
    by: GroupBy | None


def parse_zone(name: str, option: str = "--tz") -> ZoneInfo:
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadRequest(f"{option}: unknown time zone {name[:64]!r} (an IANA name such as"
                         " 'Europe/Paris', or 'UTC')") from None


def parse_moment(text: str, option: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """YYYY-MM-DD (a local day in ``zone``: its start, or with ``end`` the start of the
    next day, so ``--until 2026-11-30`` includes that day) or an ISO 8601 datetime (local
    to ``zone`` when it carries no offset)."""
    text = text.strip()
    out_of_range = BadRequest(f"{option}: {text[:40]!r} is out of range (1970 to 9000)")
    try:
        if _DATE.fullmatch(text):
            day: date | None = date.fromisoformat(text)
            moment = None
        else:
            if len(text) > 40 or not _DATE.match(text):
                raise ValueError(text)
            day, moment = None, datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{option}: {text[:40]!r} is not a date (YYYY-MM-DD) or an ISO"
                         " datetime (2026-11-01T09:30, 2026-11-01T09:30+08:00)") from None
    try:  # a real date at the calendar's ends (9999-12-31's next day): out of range
        if day is not None:
            moment = datetime.combine(day + timedelta(days=1) if end else day, time(),
                                      tzinfo=zone)
        assert moment is not None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        result = moment.astimezone(UTC)
    except OverflowError:
        raise out_of_range from None
    if not 1970 <= result.year <= 9000:
        raise out_of_range
    return result


def parse_group(value: str | None, option: str = "--by") -> GroupBy | None:
    if value is None or value == "":
        return None
    for group in GROUPS:
        if value == group:
            return group
    raise BadRequest(f"{option}: {value[:32]!r} is not one of agent, day, label")


def parse_range(since: str, until: str | None, *, zone: ZoneInfo, by: GroupBy | None,
                now: datetime, names: tuple[str, str] = ("--since", "--until")) -> ReportRange:
    """The checked range [since, until); ``until`` defaults to ``now``."""
    start = parse_moment(since, names[0], zone, end=False)
    stop = now.astimezone(UTC) if until is None else parse_moment(until, names[1], zone,
                                                                   end=True)
    if stop <= start:
        if until is None:
            raise BadRequest(f"{names[0]}: {since.strip()[:40]!r} is in the future")
        raise BadRequest(f"{names[1]}: {until.strip()[:40]!r} ends the range before"
                         f" {names[0]} {since.strip()[:40]!r} begins it")
    if stop - start > timedelta(days=MAX_DAYS):
        raise BadRequest(f"{names[1]}: a report covers at most {MAX_DAYS} days")
    return ReportRange(start, stop, zone, by)


# --- maths ------------------------------------------------------------------------------

def percentile(ordered: Sequence[int], q: float) -> int | None:
    """The ``q``-quantile (0..1) of ascending ``ordered`` by linear interpolation between
    the closest ranks, rounded to the millisecond (half up); None for no values."""
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return math.floor(value + 0.5)


def durations(values: Iterable[int]) -> Durations:
    ordered = sorted(values)
    return Durations(len(ordered), percentile(ordered, 0.5), percentile(ordered, 0.9))


def local_day(ms: int, zone: ZoneInfo) -> str:
    """The local date (YYYY-MM-DD) in ``zone`` of an epoch-milliseconds instant."""
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).date().isoformat()


def slot_day(slot: int, zone: ZoneInfo) -> str:
    return local_day(slot * SLOT_MS, zone)


_NEAR_END = timedelta(hours=4)
"""Clocks go back by at most a few hours: only that close to an end of a range can a
local day lie outside the days of its two ends."""
_INSTANT = timedelta(microseconds=1)


def _local_dates_near(start: datetime, end: datetime, zone: ZoneInfo) -> list[date]:
    """The local dates at ``start`` and ``end`` and on both sides of each change of UTC
    offset between them (found by bisection: zoneinfo lists no transitions)."""
    found = [start.astimezone(zone).date(), end.astimezone(zone).date()]
    low, high = start, end
    while low < high and low.astimezone(zone).utcoffset() != high.astimezone(zone).utcoffset():
        a, b = low, high  # the offset changes in (a, b]: find the last change
        after = b.astimezone(zone).utcoffset()
        while b - a > _INSTANT:
            middle = a + (b - a) / 2
            if middle.astimezone(zone).utcoffset() == after:
                b = middle
            else:
                a = middle
        found += [a.astimezone(zone).date(), b.astimezone(zone).date()]
        high = a
    return found


def days_between(since: datetime, until: datetime, zone: ZoneInfo) -> list[str]:
    """Every local day from the first to the last the range [since, until) touches, in
    order. Not simply the days of its ends: where clocks go back, a range ending just after
    midnight may be back on the day before, having touched the next one for a while (St.
    John's changed at 00:01 until 2011)."""
    last_instant = until - _INSTANT
    dates = (_local_dates_near(since, min(since + _NEAR_END, last_instant), zone)
             + _local_dates_near(max(last_instant - _NEAR_END, since), last_instant, zone))
    first, last = min(dates), max(dates)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def format_duration(ms: int | None, *, compact: bool = False) -> str:
    """``4 min 10 s``, ``2 h 5 min``, ``3 d 4 h``, ``0.8 s``; ``-`` for none. ``compact``:
    ``4m10s``, ``2h5m``, ``3d4h``, ``0.8s`` (tables)."""
    if ms is None:
        return "-"
    sep = "" if compact else " "
    units = ("d", "h", "m", "s") if compact else ("d", "h", "min", "s")
    if ms < 10_000:
        return f"{ms / 1000:.1f}{sep}s"
    seconds = (ms + 500) // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(value, unit) for value, unit in zip((days, hours, minutes, secs), units,
                                                  strict=True)]
    first = next(i for i, (value, _) in enumerate(parts) if value)
    shown = [part for part in parts[first:first + 2] if part[0]]
    return ("" if compact else " ").join(f"{value}{sep}{unit}" for value, unit in shown)


# --- building the report ----------------------------------------------------------------

@dataclass(slots=True)
class _Acc:
    opened: int = 0
    closed: int = 0
    ai_resolved: int = 0
    agent_ms: list[int] = field(default_factory=list)
    ai_ms: list[int] = field(default_factory=list)
    resolution_ms: list[int] = field(default_factory=list)
    roles: dict[str, int] = field(default_factory=dict)
    ai_replies: int = 0


def _fold(raw: RawReport, to_key: Callable[[Key], str]) -> dict[str, _Acc]:
    """Sum ``raw`` into accumulators by the key ``to_key`` makes of the store's."""
    accs: dict[str, _Acc] = {}

    def acc(key: Key) -> _Acc:
        name = to_key(key)
        found = accs.get(name)
        if found is None:
            found = accs[name] = _Acc()
        return found

    for key, count in raw.opened:
        acc(key).opened += count
    for key, count, by_ai in raw.closed:
        target = acc(key)
        target.closed += count
        target.ai_resolved += by_ai
    for key, role, count, not_campaign in raw.messages:
        target = acc(key)
        target.roles[role] = target.roles.get(role, 0) + count
        if role == "ai":
            target.ai_replies += not_campaign
    for key, ms in raw.resolution_ms:
        acc(key).resolution_ms.append(ms)
    for key, agent_ms, ai_ms in raw.first_response_ms:
        target = acc(key)
        if agent_ms is not None:
            target.agent_ms.append(agent_ms)
        if ai_ms is not None:
            target.ai_ms.append(ai_ms)
    return accs


def _figures(key: str, name: str, acc: _Acc) -> Figures:
    return Figures(
        key=key, name=name, opened=acc.opened, closed=acc.closed, ai_resolved=acc.ai_resolved,
        first_response_agent=durations(acc.agent_ms), first_response_ai=durations(acc.ai_ms),
        resolution=durations(acc.resolution_ms),
        messages=RoleCounts(**{role: acc.roles.get(role, 0) for role in ROLES}),
        ai_replies=acc.ai_replies)


def build_report(span: ReportRange, total: RawReport, grouped: RawReport | None) -> Report:
    """The report of ``total`` (no grouping) and, with ``span.by``, its rows from
    ``grouped`` (the same figures by agent, local day or label)."""
    whole = _fold(total, lambda _key: "").get("", _Acc())
    rows: list[Figures] = []
    if span.by is not None and grouped is not None:
        names = grouped.agent_names
        if span.by == "day":
            accs = _fold(grouped, lambda key: slot_day(int(key or 0), span.zone))
            # A 15-minute slot is counted on the local day it starts (slot_day); a slot
            # that starts on a day the range itself does not touch still gets its row.
            for day in sorted(set(days_between(span.since, span.until, span.zone)) | {
                    day for day in accs if day}):
                rows.append(_figures(day, day, accs.get(day, _Acc())))
        elif span.by == "agent":
            accs = _fold(grouped, lambda key: "" if key is None
                         else names.get(int(key), (f"#{key}", ""))[0])
            display = {user: shown or user for user, shown in names.values()}
            ordered = sorted((key for key in accs if key),
                             key=lambda k: ((display.get(k) or k).casefold(), k))
            rows = [_figures(key, display.get(key, key), accs[key]) for key in ordered]
            if "" in accs:
                rows.append(_figures("", "", accs[""]))
        else:
            accs = _fold(grouped, lambda key: "" if key is None else str(key))
            rows = [_figures(key, key, accs[key]) for key in sorted(k for k in accs if k)]
            if "" in accs:
                rows.append(_figures("", "", accs[""]))
    return Report(since=span.since.isoformat(), until=span.until.isoformat(),
                  timezone=span.zone.key, by=span.by, total=_figures("", "", whole), rows=rows,
                  campaigns=total.campaigns)


# --- the report as rows (CSV, the CLI's table) -----------------------------------------

CSV_HEADER = ("group", "name", "opened", "closed", "ai_resolved",
              "first_response_agent_count", "first_response_agent_median_s",
              "first_response_agent_p90_s", "first_response_ai_count",
              "first_response_ai_median_s", "first_response_ai_p90_s", "resolution_count",
              "resolution_median_s", "resolution_p90_s", "messages_visitor", "messages_agent",
              "messages_ai", "messages_system", "ai_replies")


def _seconds(ms: int | None) -> str:
    return "" if ms is None else f"{ms / 1000:.3f}"


def figures_row(figures: Figures, group: str) -> list[str]:
    """One CSV row (durations in seconds, 3 decimals; empty when nothing was measured;
    names that would start a formula get a leading ``'``)."""
    cells: list[object] = [safe_cell(group), safe_cell(figures.name), figures.opened, figures.closed,
                           figures.ai_resolved]
    for d in (figures.first_response_agent, figures.first_response_ai, figures.resolution):
        cells += [d.count, _seconds(d.median_ms), _seconds(d.p90_ms)]
    m = figures.messages
    cells += [m.visitor, m.agent, m.ai, m.system, figures.ai_replies]
    return [str(cell) for cell in cells]


def report_rows(report: Report) -> list[list[str]]:
    """The CSV's rows after the header: the groups (``--by``), then ``total``."""
    rows = [figures_row(row, row.key or "(none)") for row in report.rows]
    rows.append(figures_row(report.total, "total"))
    return rows
