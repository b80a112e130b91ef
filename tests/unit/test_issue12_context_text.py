"""Control characters and bidirectional overrides in what a visitor's browser reports
(``document.title``, ``document.referrer``, the page URL) never reach the agents: a NUL or
an escape sequence in a title is dropped, and a right-to-left override cannot make
``evil.com`` read as another site in the context panel."""

from __future__ import annotations

import pytest

from customer_service.core.visitor_context import clean_title, trim_url


@pytest.mark.parametrize(("title", "shown"), [
    ("Cart\x00 — Shop", "Cart — Shop"),
    ("\x1b[31mred\x1b[0m", "[31mred[0m"),
    ("moc.live\u202e — login", "moc.live — login"),
    ("a\u2066b\u2069c\u200fd", "abcd"),
    ("Tab\tand\nnewline", "Tab and newline"),
    ("退款 — 商店", "退款 — 商店"),
])
def test_titles_lose_control_and_bidi_characters(title: str, shown: str) -> None:
    assert clean_title(title) == shown


@pytest.mark.parametrize("url", [
    "http://a\x00b/c",
    "http://x/\x00",
    "http://\u202eevil.com/",
    "https://shop.example/\u202egpj.exe",
    "http://x/\x1b[2J",
])
def test_urls_with_control_or_bidi_characters_are_dropped(url: str) -> None:
    assert trim_url(url) == ""


def test_a_plain_url_is_kept() -> None:
    assert trim_url("https://shop.example/退款?x=1") == "https://shop.example/退款"
