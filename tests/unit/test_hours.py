"""Business hours, auto-replies and leave-a-message: the pure core (no event loop, fixed
instants) and the ``[hours]`` config errors that name the key, the file and the line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from customer_service.config import LANGUAGES, load_config
from customer_service.core.auto_replies import (
    TeamState,
    auto_client_id,
    availability,
    describe_back,
    resolve_language,
    text_for,
    unavailable_reply,
    welcome_reply,
)
from customer_service.core.hours import HoursError, parse_entry, parse_schedule
from customer_service.core.leave_message import check_email
from customer_service.errors import BadRequest, ConfigError

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, zone: ZoneInfo = PARIS) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


# --- parsing -------------------------------------------------------------------------

@pytest.mark.parametrize(("entry", "days", "start", "end"), [
    ("mon-fri 09:00-17:00", [0, 1, 2, 3, 4], 9 * 60, 17 * 60),
    ("sat,sun 10:00-14:30", [5, 6], 10 * 60, 14 * 60 + 30),
    ("mon,wed-fri 8:00-12:00", [0, 2, 3, 4], 8 * 60, 12 * 60),
    ("fri-mon 20:00-24:00", [4, 5, 6, 0], 20 * 60, 24 * 60),
    ("  Tue 00:00-00:30 ", [1], 0, 30),
])
def test_entries_parse_into_days_and_minutes(entry: str, days: list[int], start: int,
                                              end: int) -> None:
    parsed_days, interval = parse_entry(entry)
    assert (parsed_days, interval.start, interval.end) == (days, start, end)


@pytest.mark.parametrize(("entry", "words"), [
    ("weekdays 09:00-17:00", "is not a day or a range"),
    ("mon 9-17", "is not \"DAYS HH:MM-HH:MM\""),
    ("mon 09:00", "is not \"DAYS HH:MM-HH:MM\""),
    ("mon 17:00-09:00", "the closing time 09:00 is not after the opening time 17:00"),
    ("mon 09:00-09:00", "is not after"),
    ("mon 09:60-10:00", "is not a time of day"),
    ("mon 24:00-24:00", "is not a time of day"),
    ("mon 09:00-25:00", "is not a time of day"),
    ("mon-tue-wed 09:00-10:00", "is not a day or a range"),
])
def test_a_malformed_entry_is_refused_with_the_reason(entry: str, words: str) -> None:
    with pytest.raises(HoursError) as info:
        parse_entry(entry)
    assert words in str(info.value) and info.value.key == "open"


def test_entries_that_overlap_on_one_day_are_refused_naming_both_and_the_day() -> None:
    with pytest.raises(HoursError) as info:
        parse_schedule("UTC", ["mon-fri 09:00-12:00", "fri 11:30-18:00"], [])
    assert str(info.value) == ("entries 'mon-fri 09:00-12:00' and 'fri 11:30-18:00' overlap "
                               "on fri")
    # touching is not overlapping: closed at 12:00, open again at 12:00
    schedule = parse_schedule("UTC", ["mon-fri 09:00-12:00", "mon-fri 12:00-17:00"], [])
    assert schedule.is_open(at("2026-12-07T12:00", ZoneInfo("UTC")))


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe/Pariss", "", "../etc/passwd",
                                  "/etc/localtime"])
def test_a_bad_time_zone_is_refused(zone: str) -> None:
    with pytest.raises(HoursError) as info:
        parse_schedule(zone, [], [])
    assert info.value.key == "timezone"


@pytest.mark.parametrize("holiday", ["2026-02-30", "25/12/2026", "2026-1-1", "christmas"])
def test_a_bad_holiday_is_refused(holiday: str) -> None:
    with pytest.raises(HoursError) as info:
        parse_schedule("UTC", [], [holiday])
    assert info.value.key == "holidays" and repr(holiday) in str(info.value)


# --- open or closed at fixed instants --------------------------------------------------

WEEK = parse_schedule("Europe/Paris", ["mon-fri 09:00-17:00", "sat 10:00-12:00"],
                      ["2026-12-25"])


@pytest.mark.parametrize(("moment", "is_open"), [
    ("2026-12-07T09:00", True),    # Monday, opening minute
    ("2026-12-07T08:59", False),
    ("2026-12-07T16:59", True),
    ("2026-12-07T17:00", False),   # closing time is closed
    ("2026-12-12T11:00", True),    # Saturday
    ("2026-12-13T11:00", False),   # Sunday
    ("2026-12-25T10:00", False),   # a holiday, a Friday
])
def test_open_at_fixed_instants_in_the_team_zone(moment: str, is_open: bool) -> None:
    assert WEEK.is_open(at(moment)) is is_open


def test_the_instant_is_judged_in_the_team_zone_whatever_zone_it_comes_in() -> None:
    # 08:30 UTC on a winter Monday is 09:30 in Paris: open
    assert WEEK.is_open(datetime(2026, 12, 7, 8, 30, tzinfo=UTC))
    assert not WEEK.is_open(datetime(2026, 12, 7, 7, 30, tzinfo=UTC))


def test_opening_times_are_wall_clock_times_across_daylight_saving() -> None:
    # Paris: UTC+1 in winter, UTC+2 from 29 March 2026; 09:00 stays 09:00
    assert WEEK.is_open(datetime(2026, 3, 27, 8, 0, tzinfo=UTC))       # Fri 09:00 CET
    assert not WEEK.is_open(datetime(2026, 3, 30, 6, 30, tzinfo=UTC))  # Mon 08:30 CEST
    assert WEEK.is_open(datetime(2026, 3, 30, 7, 0, tzinfo=UTC))       # Mon 09:00 CEST
    back = WEEK.next_opening(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))  # Sat after 12:00
    assert back == at("2026-03-30T09:00")
    assert back is not None and back.utcoffset() is not None
    assert back.astimezone(UTC) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(("moment", "back"), [
    ("2026-12-07T07:00", "2026-12-07T09:00"),   # before opening: today
    ("2026-12-07T18:00", "2026-12-08T09:00"),   # after closing: tomorrow
    ("2026-12-11T17:30", "2026-12-12T10:00"),   # Friday evening: Saturday
    ("2026-12-12T12:00", "2026-12-14T09:00"),   # Saturday noon: Monday
    ("2026-12-24T17:00", "2026-12-26T10:00"),   # Christmas skipped
    ("2026-12-07T10:00", "2026-12-08T09:00"),   # while open: the next opening
])
def test_next_opening(moment: str, back: str) -> None:
    assert WEEK.next_opening(at(moment)) == at(back)


def test_a_schedule_that_never_opens_has_no_next_opening() -> None:
    never = parse_schedule("UTC", [], [])
    now = datetime(2026, 12, 7, tzinfo=UTC)
    assert not never.is_open(now) and never.next_opening(now) is None
    holidays = [date(2026, 12, 7).replace(day=d).isoformat() for d in range(7, 14)]
    mondays = parse_schedule("UTC", ["mon 09:00-10:00"], holidays)
    assert mondays.next_opening(now) == datetime(2026, 12, 14, 9, 0, tzinfo=ZoneInfo("UTC"))


# --- which auto-reply ------------------------------------------------------------------

WELCOME = {"en": "Hi!", "zh-CN": "您好！"}
AWAY = {"en": "Nobody is here.", "zh-CN": ""}
CLOSED = {"en": "Closed, back {back}.", "zh-CN": "休息中，{back}回来。"}
NOW = at("2026-12-11T18:00")  # a Friday evening in Paris
BACK = at("2026-12-12T10:00")


def state(*, hours_open: bool = True, agents: bool = False, ai: bool = False) -> TeamState:
    return TeamState(hours_open=hours_open, agents_available=agents, ai_answers=ai,
                     back_at=None if hours_open else BACK)


def reply(team: TeamState, language: str = "en") -> tuple[str, str] | None:
    found = unavailable_reply(team, AWAY, CLOSED, language=language, default="en", now=NOW)
    return None if found is None else (found.kind, found.text)


def test_away_when_no_agent_is_available_and_the_ai_does_not_answer() -> None:
    assert reply(state()) == ("away", "Nobody is here.")
    assert reply(state(agents=True)) is None
    assert reply(state(ai=True)) is None


def test_closed_outside_hours_says_when_the_team_is_back() -> None:
    assert reply(state(hours_open=False)) == (
        "closed", "Closed, back tomorrow at 10:00 (Europe/Paris).")
    # an agent online after hours does not open the team; the AI answering does silence it
    assert reply(state(hours_open=False, agents=True)) is not None
    assert reply(state(hours_open=False, ai=True)) is None


def test_the_reply_comes_in_the_visitor_language() -> None:
    assert reply(state(hours_open=False), "zh-CN") == (
        "closed", "休息中，明天 10:00（Europe/Paris）回来。")
    assert reply(state(), "zh-CN") is None  # an empty text: no message in that language


def test_texts_per_language() -> None:
    assert text_for(WELCOME, "zh-CN", "en") == "您好！"
    assert text_for({"en": "Hi!"}, "zh-CN", "en") == "Hi!"  # missing: the default's text
    assert text_for({"en": "Hi!", "zh-CN": "  "}, "zh-CN", "en") is None  # blank: none
    assert text_for({}, "en", "en") is None
    assert welcome_reply(WELCOME, "en", "en") is not None
    assert welcome_reply({"en": ""}, "en", "en") is None


@pytest.mark.parametrize(("wanted", "resolved"), [
    ("zh-CN", "zh-CN"), ("zh-cn", "zh-CN"), ("zh", "zh-CN"), ("zh-Hans-CN", "zh-CN"),
    ("en-GB", "en"), ("fr", "en"), (None, "en"), ("", "en")])
def test_the_visitor_language_resolves_to_a_known_one_or_the_default(
        wanted: str | None, resolved: str) -> None:
    assert resolve_language(wanted, LANGUAGES, "en") == resolved


def test_availability() -> None:
    assert availability(state(agents=True)) == "online"
    assert availability(state(ai=True)) == "online"
    assert availability(state()) == "away"
    assert availability(state(hours_open=False, agents=True)) == "closed"


@pytest.mark.parametrize(("moment", "language", "said"), [
    ("2026-12-12T08:00", "en", "today at 10:00 (Europe/Paris)"),
    ("2026-12-11T18:00", "en", "tomorrow at 10:00 (Europe/Paris)"),
    ("2026-12-09T18:00", "en", "Saturday 10:00 (Europe/Paris)"),
    ("2026-12-01T18:00", "en", "on 2026-12-12 at 10:00 (Europe/Paris)"),
    ("2026-12-09T18:00", "zh-CN", "星期六 10:00（Europe/Paris）"),
])
def test_when_the_team_is_back_in_words(moment: str, language: str, said: str) -> None:
    assert describe_back(BACK, at(moment), language) == said
    assert describe_back(None, at(moment), "en") == "later"


def test_one_client_id_per_kind_and_conversation() -> None:
    assert auto_client_id("welcome", 42) == "auto:welcome:42"
    assert auto_client_id("away", 42) != auto_client_id("away", 43)


# --- email -----------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["ann@example.com", " ann.lee+cs@mail.example.co.uk ",
                                     "用户@例子.中国"])
def test_an_email_address_is_accepted(address: str) -> None:
    assert check_email(address) == address.strip()


@pytest.mark.parametrize("address", ["", "ann", "ann@", "@example.com", "ann@example",
                                     "ann@@example.com", "ann lee@example.com",
                                     "ann@exa mple.com", "ann@example.com\x00",
                                     "a" * 250 + "@example.com"])
def test_a_bad_email_address_is_a_bad_request(address: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_email(address)
    assert "email" in info.value.message


# --- config errors name [hours] <key>, the file and the line ----------------------------

@pytest.mark.parametrize(("body", "key", "line", "words"), [
    ('timezone = "Europe/Pariss"', "hours.timezone", 3, "unknown time zone"),
    ('open = ["mon-fri 09:00-17:00", "fri 16:00-18:00"]', "hours.open", 3, "overlap on fri"),
    ('open = ["weekdays 9 to 5"]', "hours.open", 3, "is not \"DAYS HH:MM-HH:MM\""),
    ('open = ["mon 17:00-09:00"]', "hours.open", 3, "not after the opening time"),
    ('holidays = ["2026-13-01"]', "hours.holidays", 3, "is not a date"),
    ("open = []", "hours.open", 3, "would never open"),
])
def test_hours_config_errors_name_the_key_file_and_line(tmp_path: Path, body: str, key: str,
                                                        line: int, words: str) -> None:
    path = tmp_path / "cs.toml"
    path.write_text(f"[hours]\nenabled = true\n{body}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    error = info.value
    assert (error.key, error.line, error.path) == (key, line, str(path))
    assert words in error.message and f"[hours] {key.split('.')[1]}" in error.message
    assert str(error).startswith(f"{path}:{line}: ")


def test_an_unknown_language_in_an_auto_reply_table_names_it(tmp_path: Path) -> None:
    path = tmp_path / "cs.toml"
    path.write_text('[auto_replies]\nwelcome = { en = "Hi", fr = "Salut" }\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.key == "auto_replies.welcome" and info.value.line == 2
    assert "unknown language 'fr'" in info.value.message


def test_a_valid_hours_section_loads(tmp_path: Path) -> None:
    path = tmp_path / "cs.toml"
    path.write_text('[hours]\nenabled = true\ntimezone = "Asia/Shanghai"\n'
                    'open = ["mon-fri 09:00-12:00", "mon-fri 13:00-18:00"]\n'
                    'holidays = ["2027-02-17"]\n', encoding="utf-8")
    config = load_config(path, environ={})
    assert config.hours.timezone == "Asia/Shanghai" and len(config.hours.open) == 2
