"""``[server] allowed_origins``: parsing entries and deciding on an ``Origin`` header."""

from __future__ import annotations

import pytest

from customer_service.core.origin import AllowedOrigins, Origin, parse_origin


@pytest.mark.parametrize(("text", "serialized"), [
    ("https://shop.example.com", "https://shop.example.com"),
    ("HTTPS://Shop.EXAMPLE.com", "https://shop.example.com"),
    ("https://shop.example.com:443", "https://shop.example.com"),  # the default port is implied
    ("http://shop.example.com:80", "http://shop.example.com"),
    ("http://shop.example.com:443", "http://shop.example.com:443"),
    ("http://localhost:8080", "http://localhost:8080"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
    ("https://*.example.com", "https://*.example.com"),
])
def test_origins_serialize_as_rfc_6454_says(text: str, serialized: str) -> None:
    assert str(parse_origin(text)) == serialized


@pytest.mark.parametrize(("text", "problem"), [
    ("https://shop.example.com/", "has a path"),
    ("https://shop.example.com?x=1", "has a path, query or fragment"),
    ("https://shop.example.com#top", "has a path, query or fragment"),
    ("shop.example.com", "has no scheme"),
    ("//shop.example.com", "has no scheme"),
    ("wss://shop.example.com", "has the scheme 'wss'"),
    ("https://a:b@shop.example.com", "has user info"),
    ("https://", "has no host"),
    ("https://shop_example.com", "has an invalid host"),
    ("https://-shop.example.com", "has an invalid host"),
    ("https://shop..example.com", "has an invalid host"),
    ("https://shöp.example.com", "non-ASCII"),
    ("https://*.com", "whole top-level domain"),
    ("https://*.0.0.1", "over an IP address"),
    ("https://a.*.example.com", "has an invalid host"),
    ("https://*example.com", "has an invalid host"),
    ("https://[nope]", "is not an origin"),
    (" https://shop.example.com", "no spaces"),
    ("", "not empty"),
])
def test_malformed_entries_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match="^.*" + problem.replace("?", r"\?")):
        parse_origin(text)


def test_a_header_may_not_be_a_wildcard() -> None:
    assert parse_origin("https://*.example.com") == Origin("https", "*.example.com", None)
    with pytest.raises(ValueError, match="wildcard"):
        parse_origin("https://*.example.com", wildcard=False)


def test_an_empty_list_allows_any_origin() -> None:
    allowed = AllowedOrigins([])
    assert allowed.any
    for header in ("https://evil.example", "null", "garbage", None):
        assert allowed.allows(header)


ALLOWED = AllowedOrigins(["https://Shop.example.com", "http://localhost:8080",
                          "https://*.help.example.org", "http://[::1]:9000"])


@pytest.mark.parametrize("header", [
    "https://shop.example.com",
    "https://SHOP.example.com:443",
    "HTTPS://shop.example.com",
    "http://localhost:8080",
    "https://a.help.example.org",
    "https://a.b.help.example.org",
    "http://[::1]:9000",
    None,  # no Origin: not a browser
])
def test_listed_origins_are_allowed(header: str | None) -> None:
    assert not ALLOWED.any
    assert ALLOWED.allows(header)


@pytest.mark.parametrize("header", [
    "https://evil.example",
    "http://shop.example.com",  # another scheme
    "https://shop.example.com:8443",  # another port
    "https://shop.example.com.evil.example",
    "https://evilshop.example.com",
    "http://localhost",  # the default port is not 8080
    "http://localhost:8081",
    "https://help.example.org",  # a wildcard covers subdomains only
    "https://evilhelp.example.org",
    "https://a.help.example.org.evil.example",
    "http://a.help.example.org",  # the wildcard's scheme
    "https://a.help.example.org:444",  # and port must match too
    "https://*.help.example.org",  # a header is never a wildcard
    "https://shop.example.com/",  # browsers never send a path: not an origin
    "https://shop.example.com, https://evil.example",  # two Origin headers
    "null",  # a sandboxed frame or a file:// page
    "",
])
def test_other_origins_are_refused(header: str) -> None:
    assert not ALLOWED.allows(header)
