"""Business hours: ``[hours]`` entries parsed once, then "open now?" and "open when?".

Pure: the caller passes the instant (an aware ``datetime``), so tests use a fixed clock
and nothing here reads the time. Opening times are wall-clock times in the team's time
zone (``zoneinfo``): 09:00 stays 09:00 across a daylight-saving change.

An entry is ``"DAYS HH:MM-HH:MM"``: days as ``mon`` .. ``sun``, a range (``mon-fri``, and
``fri-mon`` wraps over the weekend) or a list (``sat,sun``, ``mon,wed-fri``); the closing
time comes after the opening time (``24:00`` is the end of the day). Entries of one day must
not overlap. Holidays (``YYYY-MM-DD``, in the team's time zone) are closed all day.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names in ``datetime.weekday()`` order."""

SEARCH_DAYS = 400
"""How far ahead ``next_opening`` looks (a year of holidays and then some)."""

_ENTRY = re.compile(r"(?P<days>[A-Za-z,\-]+)\s+(?P<open>\d{1,2}:\d{2})\s*-\s*(?P<close>\d{1,2}:\d{2})")


class HoursError(ValueError):
    """A problem with ``[hours]``; ``key`` names the key (``open``, ``timezone``...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Interval:
    """Open from ``start`` to ``end`` minutes after midnight on one weekday."""

    start: int
    end: int
    entry: str
    """The entry it came from (for messages)."""


@dataclass(frozen=True, slots=True)
class Schedule:
    timezone: ZoneInfo
    week: tuple[tuple[Interval, ...], ...]
    """Seven tuples (Monday first) of intervals, sorted by start."""
    holidays: frozenset[date]

    def is_open(self, now: datetime) -> bool:
        """Whether the team is open at ``now`` (an aware datetime)."""
        local = now.astimezone(self.timezone)
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute + local.second / 60
        return any(i.start <= minute < i.end for i in self.week[local.weekday()])

    def next_opening(self, now: datetime) -> datetime | None:
        """The next opening after ``now``, in the team's time zone; None when the schedule
        never opens (no entries, or every day a holiday for ``SEARCH_DAYS`` days)."""
        local = now.astimezone(self.timezone)
        for offset in range(SEARCH_DAYS):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            for interval in self.week[day.weekday()]:
                start = datetime.combine(day, time(interval.start // 60, interval.start % 60),
                                         tzinfo=self.timezone)
                if start > now:
                    return start
        return None


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` or a ``HoursError`` naming ``timezone``."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise HoursError("timezone", f"{name!r} is not an IANA time zone (e.g. \"Europe/Paris\")")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursError("timezone", f"unknown time zone {name!r} (an IANA name such as "
                         "\"Europe/Paris\", \"Asia/Shanghai\", \"UTC\")") from None


def _minutes(text: str, entry: str, *, closing: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not closing)):
        raise HoursError("open", f"entry {entry!r}: {text} is not a time of day "
                         "(00:00 to 23:59; 24:00 may end a day)")
    return hours * 60 + minutes


def _days(text: str, entry: str) -> list[int]:
    chosen: list[int] = []
    for part in text.lower().split(","):
        ends = part.split("-")
        if len(ends) > 2 or not all(end in DAYS for end in ends):
            raise HoursError("open", f"entry {entry!r}: {part!r} is not a day or a range of "
                             "days (mon, tue, wed, thu, fri, sat, sun; mon-fri; sat,sun)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        span = (last - first) % 7
        for step in range(span + 1):
            day = (first + step) % 7
            if day not in chosen:
                chosen.append(day)
    return chosen


def parse_entry(entry: str) -> tuple[list[int], Interval]:
    """One ``"DAYS HH:MM-HH:MM"`` entry: its weekdays and its interval."""
    found = _ENTRY.fullmatch(entry.strip())
    if found is None:
        raise HoursError("open", f"entry {entry!r} is not \"DAYS HH:MM-HH:MM\" (e.g. "
                         "\"mon-fri 09:00-17:00\", \"sat 10:00-14:00\")")
    days = _days(found["days"], entry)
    start = _minutes(found["open"], entry, closing=False)
    end = _minutes(found["close"], entry, closing=True)
    if end <= start:
        raise HoursError("open", f"entry {entry!r}: the closing time {found['close']} is not "
                         f"after the opening time {found['open']}")
    return days, Interval(start, end, entry)


def parse_holiday(text: str) -> date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise HoursError("holidays", f"{text!r} is not a date as YYYY-MM-DD") from None


def parse_schedule(timezone: str, entries: Sequence[str], holidays: Sequence[str]) -> Schedule:
    """The schedule of ``[hours]``, or a ``HoursError`` naming the key at fault."""
    tz = zone(timezone)
    week: list[list[Interval]] = [[] for _ in DAYS]
    for entry in entries:
        days, interval = parse_entry(entry)
        for day in days:
            for other in week[day]:
                if interval.start < other.end and other.start < interval.end:
                    raise HoursError("open", f"entries {other.entry!r} and {entry!r} overlap "
                                     f"on {DAYS[day]}")
            week[day].append(interval)
    return Schedule(tz, tuple(tuple(sorted(day, key=lambda i: i.start)) for day in week),
                    frozenset(parse_holiday(text) for text in holidays))
