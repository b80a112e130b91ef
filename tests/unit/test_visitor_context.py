"""Visitor context without an event loop: User-Agent summaries through ua-parser, URL and
title trimming, time zone checks, visits, pending changes coalesced per conversation, and
the ``page`` frame and the new hello fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core import frames
from customer_service.core.user_agent import MAX_USER_AGENT, UNKNOWN, UserAgents, clip, parse
from customer_service.core.visitor_context import (
    MAX_PAGES,
    MAX_TITLE,
    MAX_URL,
    VISIT_GAP,
    ContextUpdate,
    PageSeen,
    PendingContext,
    VisitFacts,
    check_timezone,
    clean_title,
    starts_visit,
    trim_url,
)
from customer_service.errors import BadRequest, Forbidden

CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/120.0.6099.109 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


# ---- User-Agent ------------------------------------------------------------------------

def test_chrome_on_windows() -> None:
    summary = parse(CHROME_WINDOWS)
    assert (summary.browser.name, summary.browser.version) == ("Chrome", "120.0")
    assert (summary.os.name, summary.os.version) == ("Windows", "10")
    assert summary.device == UNKNOWN  # a desktop: ua-parser names no device


def test_safari_on_iphone() -> None:
    summary = parse(SAFARI_IPHONE)
    assert (summary.browser.name, summary.browser.version) == ("Mobile Safari", "17.1")
    assert (summary.os.name, summary.os.version) == ("iOS", "17.1.2")
    assert summary.device == "iPhone"


def test_firefox_on_linux() -> None:
    summary = parse(FIREFOX_LINUX)
    assert (summary.browser.name, summary.browser.version) == ("Firefox", "121.0")
    assert (summary.os.name, summary.os.version) == ("Linux", "")


@pytest.mark.parametrize("garbage", ["", "   ", "garbage", "\x00\x01\x02", "()()(;;;", "é" * 5000,
                                     "Mozilla/5.0 (", "curl/8.5.0"])
def test_empty_or_garbage_is_unknown_never_an_error(garbage: str) -> None:
    summary = parse(garbage)
    if garbage.startswith("curl/"):
        assert summary.os.name == UNKNOWN  # a known client on no known OS
        return
    assert (summary.browser.name, summary.os.name, summary.device) == (UNKNOWN, UNKNOWN, UNKNOWN)
    assert summary.browser.version == summary.os.version == ""


@given(st.text(max_size=300))
def test_any_text_gives_a_summary(text: str) -> None:
    summary = parse(text)
    assert summary.browser.name and summary.os.name and summary.device


def test_clip_bounds_and_cleans_the_header() -> None:
    assert clip("  Agent\r\nX-Injected: 1\t ") == "Agent  X-Injected: 1"
    assert len(clip("A" * 10_000)) == MAX_USER_AGENT


def test_summaries_are_cached_in_a_bounded_lru() -> None:
    agents = UserAgents(size=2)
    assert agents.cached(CHROME_WINDOWS) is None
    first = agents.summarize(CHROME_WINDOWS)
    assert agents.cached(CHROME_WINDOWS) is first  # parsed once, not per render
    agents.summarize(SAFARI_IPHONE)
    assert agents.cached(CHROME_WINDOWS) is first  # now the most recently used
    agents.summarize(FIREFOX_LINUX)
    assert len(agents) == 2
    assert agents.cached(SAFARI_IPHONE) is None  # the least recently used went
    assert agents.cached(CHROME_WINDOWS) is first
    assert agents.cached("").browser.name == UNKNOWN  # nothing to parse: no miss


# ---- URLs, titles, time zones ---------------------------------------------------------------

@pytest.mark.parametrize(("raw", "stored"), [
    ("https://shop.example/cart?token=secret#pay", "https://shop.example/cart"),
    ("HTTPS://Shop.Example:8443/a/b/?q=1", "https://shop.example:8443/a/b/"),
    ("https://user:password@shop.example/x", "https://shop.example/x"),
    ("http://shop.example", "http://shop.example/"),
    ("http://[2001:db8::1]:8080/p?x", "http://[2001:db8::1]:8080/p"),
    ("  https://shop.example/é  ", "https://shop.example/é"),
    ("javascript:alert(1)", ""),
    ("data:text/html,<b>x</b>", ""),
    ("/relative/path", ""),
    ("https://", ""),
    ("https://shop.example:99999/", ""),
    ("http://[::1/", ""),
    ("", ""),
    ("https://shop.example/" + "a" * MAX_URL, ""),
])
def test_urls_keep_scheme_host_and_path_only(raw: str, stored: str) -> None:
    assert trim_url(raw) == stored


@given(st.text(max_size=200))
def test_trimmed_urls_never_carry_a_query_or_fragment(text: str) -> None:
    trimmed = trim_url(text)
    assert "?" not in trimmed and "#" not in trimmed
    assert trimmed == "" or trimmed.startswith(("http://", "https://"))


def test_titles_are_one_line_and_bounded() -> None:
    assert clean_title("  Cart \n\t | Shop  ") == "Cart | Shop"
    assert clean_title(None) == ""
    assert len(clean_title("x" * 2000)) == MAX_TITLE


@pytest.mark.parametrize("zone", ["Europe/Paris", "Asia/Shanghai", "America/Argentina/Buenos_Aires",
                                  "UTC", "Etc/GMT+5"])
def test_real_time_zones_are_kept(zone: str) -> None:
    assert check_timezone(zone) == (zone, None)


@pytest.mark.parametrize(("zone", "problem"), [
    ("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
    ("Europe", "unknown time zone 'Europe'"),  # a folder of the database, not a zone
    ("Europe/Paris; DROP TABLE", "is not an IANA zone name"),
    ("../../etc/passwd", "is not an IANA zone name"),
    ("+05:00", "is not an IANA zone name"),
    ("Z" * 65, "is not an IANA zone name"),
])
def test_invalid_time_zones_are_dropped_with_a_reason(zone: str, problem: str) -> None:
    stored, why = check_timezone(zone)
    assert stored == ""
    assert why is not None and problem in why


def test_no_time_zone_is_no_problem() -> None:
    assert check_timezone(None) == ("", None)
    assert check_timezone("") == ("", None)


# ---- visits and pending changes -----------------------------------------------------------

def test_a_silence_of_the_gap_starts_a_new_visit() -> None:
    assert starts_visit(None, T0)
    assert not starts_visit(T0, T0 + VISIT_GAP - timedelta(seconds=1))
    assert starts_visit(T0, T0 + VISIT_GAP)


def page(url: str, seconds: float = 0, title: str = "") -> PageSeen:
    return PageSeen(url, title, T0 + timedelta(seconds=seconds))


def test_pending_changes_coalesce_per_conversation() -> None:
    pending = PendingContext()
    facts = VisitFacts("UA", "203.0.113.7", "Europe/Paris", "https://search.example/")
    assert pending.hello(7, facts, T0, page("https://shop.example/"))
    # the widget's page frame for the hello's page: the same page, now with its title
    assert pending.page(7, page("https://shop.example/", 0.1, "Shop"))
    assert pending.page(7, page("https://shop.example/cart", 0.2, "Cart"))
    assert pending.page(3, page("https://other.example/", 0.3))
    newer = VisitFacts("UA2", "203.0.113.8", "Asia/Tokyo", "")
    assert pending.hello(7, newer, T0 + timedelta(seconds=1))
    assert len(pending) == 2
    taken = pending.take()
    assert [u.conversation_id for u in taken] == [3, 7]
    seven = taken[1]
    assert seven.visit == newer
    assert seven.at == T0 + timedelta(seconds=1)
    assert [(p.url, p.title, p.at) for p in seven.pages] == [
        ("https://shop.example/", "Shop", T0), ("https://shop.example/cart", "Cart", page("", 0.2).at)]
    assert pending.take() == [] and len(pending) == 0


def test_pending_pages_are_capped_and_conversations_bounded() -> None:
    update = ContextUpdate(1, T0)
    for n in range(MAX_PAGES + 10):
        update.add_page(page(f"https://shop.example/{n}", n))
    assert len(update.pages) == MAX_PAGES
    assert update.pages[0].url == "https://shop.example/10"
    pending = PendingContext(limit=2)
    assert pending.page(1, page("https://a.example/"))
    assert pending.page(2, page("https://b.example/"))
    assert not pending.page(3, page("https://c.example/"))  # full: dropped, counted
    assert pending.page(1, page("https://a.example/more"))  # one already waiting still grows
    assert pending.dropped == 1 and len(pending) == 2


# ---- frames ------------------------------------------------------------------------------

def test_hello_carries_referrer_time_zone_and_title() -> None:
    hello = frames.parse_visitor_frame(
        '{"type":"hello","page":"https://shop.example/","referrer":"https://search.example/",'
        '"timezone":"Europe/Paris","title":"Shop"}')
    assert isinstance(hello, frames.Hello)
    assert (hello.referrer, hello.timezone, hello.title) == (
        "https://search.example/", "Europe/Paris", "Shop")


def test_the_page_frame() -> None:
    frame = frames.parse_visitor_frame('{"type":"page","url":"https://shop.example/cart"}')
    assert frame == frames.VisitorPage(url="https://shop.example/cart")
    with_id = frames.parse_visitor_frame('{"type":"page","url":"u","title":"Cart","id":"p1"}')
    assert isinstance(with_id, frames.VisitorPage) and with_id.id == "p1"


@pytest.mark.parametrize(("raw", "message"), [
    ('{"type":"page","url":' + '"' + "a" * (MAX_URL + 1) + '"}',
     "invalid 'page' frame: field 'url': expected `str` of length <= 2048"),
    ('{"type":"page","url":42,"id":"p1"}', "invalid 'page' frame: field 'url': expected `str`"),
    ('{"type":"page"}', "invalid 'page' frame: Object missing required field `url`"),
    ('{"type":"page","url":"u","title":' + '"' + "t" * (MAX_TITLE + 1) + '"}',
     "field 'title': expected `str` of length <= 512"),
    ('{"type":"hello","timezone":"' + "Z" * 65 + '"}', "field 'timezone'"),
    ('{"type":"hello","referrer":["x"]}', "field 'referrer': expected `str | null`, got `array`"),
])
def test_bad_page_and_hello_fields_are_bad_requests(raw: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        frames.parse_visitor_frame(raw)
    assert message in caught.value.message
    if '"id":"p1"' in raw:
        assert caught.value.client_id == "p1"


def test_a_page_frame_on_the_agent_socket_is_forbidden() -> None:
    with pytest.raises(Forbidden, match="frame type 'page' is not allowed on this socket"):
        frames.parse_agent_frame('{"type":"page","url":"https://shop.example/"}')


def test_the_page_frame_agents_get() -> None:
    text = frames.encode(frames.PageOut(conversation_id=5, url="https://shop.example/",
                                        title="Shop", at="2026-05-01T12:00:00.000Z"))
    assert text == ('{"type":"page","conversation_id":5,"url":"https://shop.example/",'
                    '"title":"Shop","at":"2026-05-01T12:00:00.000Z"}')
