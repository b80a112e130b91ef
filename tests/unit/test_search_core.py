"""Search rules (core/search.py): queries, what each database is asked, snippets."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.models import Role
from customer_service.core.search import (
    ELLIPSIS,
    MAX_QUERY_CHARS,
    MAX_TERMS,
    MAX_TOKEN_CHARS,
    SNIPPET_CHARS,
    SearchCursor,
    SearchHit,
    check_limit,
    fulltext_query,
    index_tokens,
    like_pattern,
    next_cursor,
    parse_cursor,
    parse_query,
    snippet,
    trigram_match,
    visitor_text,
)
from customer_service.errors import BadRequest


@pytest.mark.parametrize(("raw", "text", "terms"), [
    ("refund", "refund", ("refund",)),
    ("  order \t 1234\n", "order 1234", ("order", "1234")),
    ("退款", "退款", ("退款",)),
    ("a a b", "a a b", ("a", "b")),
    ("a\x00bc\x1b退款\x7f", "a bc 退款", ("a", "bc", "退款")),   # control characters: spaces
    ("x" * MAX_QUERY_CHARS, "x" * MAX_QUERY_CHARS, ("x" * MAX_QUERY_CHARS,)),
])
def test_queries_are_trimmed_and_split(raw: str, text: str, terms: tuple[str, ...]) -> None:
    query = parse_query(raw)
    assert (query.text, query.terms) == (text, terms)


@pytest.mark.parametrize(("raw", "problem"), [
    ("", "empty"),
    (" \n\t ", "empty"),
    ("\x00\x01", "empty"),
    ("x" * (MAX_QUERY_CHARS + 1), f"too long: at most {MAX_QUERY_CHARS} characters, not 201"),
    (" ".join(str(n) for n in range(MAX_TERMS + 1)), f"too many words: at most {MAX_TERMS}"),
])
def test_bad_queries_are_refused_saying_why(raw: str, problem: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(problem)):
        parse_query(raw)


def test_limits_and_cursors() -> None:
    assert check_limit(1) == 1
    for bad in (0, 101, -5):
        with pytest.raises(BadRequest, match="between 1 and 100"):
            check_limit(bad)
    cursor = SearchCursor(1_700_000_000_000, 42, 7)
    assert parse_cursor(cursor.encode()) == cursor
    for bad in ("", "1.2", "1.2.3.4", "a.b.c", "-1.2.3", "1.2.3 ", "9" * 19 + ".1.1"):
        with pytest.raises(BadRequest, match="cursor"):
            parse_cursor(bad)


def test_sqlite_gets_quoted_long_terms_and_likes_for_short_ones() -> None:
    match, short = trigram_match(parse_query('refund "quoted" 退款 tv'))
    assert match == '"refund" """quoted"""'
    assert short == ["退款", "tv"]
    assert trigram_match(parse_query("退款 ok")) == (None, ["退款", "ok"])
    assert like_pattern("100%_a\\b") == "%100\\%\\_a\\\\b%"


def test_mysql_tokens_survive_the_default_parser() -> None:
    """Words get a prefix (no stopword, no short token), CJK its pairs, and only
    characters InnoDB's parser keeps in one word."""
    assert index_tokens(["The TV, café!"]) == "wthe wtv wcaf_0000e9"
    assert index_tokens(["a"]) == "wa_"
    assert index_tokens(["我要退款"]) == (
        "k006211008981 k008981009000 k009000006b3e k006b3e")
    assert index_tokens(["Vera", "vera@example.com"]) == "wvera wvera wexample wcom"
    assert index_tokens(["\uff36\uff29\uff30"]) == "wvip"  # full-width VIP: NFKC
    assert index_tokens(["退款。谢谢"]) == (
        "k009000006b3e k006b3e k008c22008c22 k008c22")  # CJK punctuation splits
    long_word = index_tokens(["é" * 50])
    assert len(long_word) <= MAX_TOKEN_CHARS and long_word.startswith("w_0000e9")


@given(st.text(max_size=300))
def test_every_token_is_one_word_of_the_right_length(text: str) -> None:
    for token in index_tokens([text]).split(" "):
        if token:
            assert re.fullmatch(r"[a-z0-9_]+", token)
            assert 3 <= len(token) <= MAX_TOKEN_CHARS


def test_mysql_queries() -> None:
    assert fulltext_query(parse_query("Refund")) == ("+wrefund*", [])
    assert fulltext_query(parse_query("退")) == ("+k009000*", [])
    assert fulltext_query(parse_query("退款")) == ("+k009000006b3e", [])
    assert fulltext_query(parse_query("退款政策")) == (
        '+"k009000006b3e k006b3e00653f k00653f007b56"', [])
    assert fulltext_query(parse_query("don't")) == ("+wdon*", ["don't"])
    assert fulltext_query(parse_query("a")) == (None, ["a"])
    assert fulltext_query(parse_query("*** tv")) == ("+wtv*", ["***"])


@given(st.text(min_size=1, max_size=60).filter(lambda t: t.isprintable() and t.strip()))
def test_a_query_is_asked_with_index_tokens_only(raw: str) -> None:
    """Whatever is typed, the boolean expression holds tokens, operators and quotes only;
    each token a query asks for is among (or a prefix of one of) the text's own tokens."""
    query = parse_query(raw)
    expression, _ = fulltext_query(query)
    if expression is None:
        return
    assert re.fullmatch(r'[a-z0-9_+*" ]+', expression)
    stored = index_tokens([query.text]).split(" ")
    for asked in re.findall(r"[a-z0-9_]+\*?", expression):
        if asked.endswith("*"):
            assert any(token.startswith(asked[:-1]) for token in stored), (asked, stored)
        else:
            assert asked in stored, (asked, stored)


def test_snippets_show_the_first_hit_with_highlights() -> None:
    assert snippet("I want a\n refund  now", ["REFUND"]) == ("I want a refund now", ((9, 15),))
    text = "x" * 300 + " 退款 " + "y" * 300
    shown, ranges = snippet(text, ["退款"])
    assert shown.startswith(ELLIPSIS) and shown.endswith(ELLIPSIS)
    assert len(shown) == SNIPPET_CHARS + 2
    assert [shown[a:b] for a, b in ranges] == ["退款"]
    start, _ = snippet("no hit here " * 40, ["zzz"])
    assert start.startswith("no hit here") and start.endswith(ELLIPSIS)
    assert snippet("abcabc", ["bc", "b"]) == ("abcabc", ((1, 3), (4, 6)))


@given(st.text(max_size=500), st.lists(st.text(min_size=1, max_size=5), min_size=1,
                                        max_size=3))
def test_snippets_are_bounded_and_highlight_the_terms(text: str, terms: list[str]) -> None:
    shown, ranges = snippet(text, terms)
    assert len(shown) <= SNIPPET_CHARS + 2
    lead = 1 if shown.startswith(ELLIPSIS) and not text.startswith(ELLIPSIS) else 0
    trail = len(shown) - (1 if shown.endswith(ELLIPSIS) and len(" ".join(text.split()))
                          > SNIPPET_CHARS else 0)
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)),
                         re.IGNORECASE)
    previous_end = 0
    for start, end in ranges:
        assert previous_end <= start < end <= len(shown)
        previous_end = end
        if start > lead and end < trail:  # not cut by the window: a whole hit
            assert pattern.fullmatch(shown[start:end]), (shown, start, end)
    if not ranges and len(" ".join(text.split())) <= SNIPPET_CHARS:
        assert pattern.search(shown) is None


def hit(ms: int, cid: int, seq: int, kind: str = "message") -> SearchHit:
    return SearchHit(kind=kind, conversation_id=cid, seq=seq, role=Role.VISITOR,
                     sender_name="", created_at=datetime.fromtimestamp(ms / 1000, UTC),
                     created_ms=ms, snippet="", highlights=(), visitor_name="")


def test_the_next_page_starts_after_the_last_message_of_a_full_page() -> None:
    visitor = hit(40, 9, 0, "visitor")
    messages = [hit(30, 1, 2), hit(10, 1, 1)]
    assert visitor.cursor is None
    assert next_cursor([visitor, *messages], limit=2) == SearchCursor(10, 1, 1)
    assert next_cursor([visitor, *messages], limit=3) is None
    assert next_cursor([visitor], limit=1) is None
    assert visitor_text("Vera", "v@x.io") == "Vera <v@x.io>"
    assert visitor_text("", "v@x.io") == "v@x.io"
