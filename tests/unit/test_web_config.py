"""[web] branding in the config: the accent colour and the logo URL are checked, with an
error naming the key and the file; the pages' CSP allows a logo's origin and no other."""

from __future__ import annotations

from pathlib import Path

import pytest

from customer_service.config import load_config, logo_problem
from customer_service.errors import ConfigError
from customer_service.server.static import CSP, content_security_policy, load_assets, logo_origin


def load(tmp_path: Path, web: str, environ: dict[str, str] | None = None) -> object:
    path = tmp_path / "cs.toml"
    path.write_text(f"[web]\n{web}\n", encoding="utf-8")
    return load_config(path, environ={} if environ is None else environ)


def refused(tmp_path: Path, web: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, web, environ)
    return str(info.value)


@pytest.mark.parametrize("colour", ["#2563eb", "#ABC", "#c0ffee"])
def test_accent_colours_as_rgb_or_rrggbb_are_accepted(tmp_path: Path, colour: str) -> None:
    config = load(tmp_path, f'accent_color = "{colour}"')
    assert config.web.accent_color == colour  # type: ignore[attr-defined]


@pytest.mark.parametrize("colour", ["blue", "#12345", "#1234567", "2563eb", "#ggg", "", "#fff;"])
def test_other_accent_colours_are_refused_naming_the_key_and_file(tmp_path: Path, colour: str) -> None:
    message = refused(tmp_path, f'accent_color = "{colour}"')
    assert "[web] accent_color" in message and "#rgb or #rrggbb" in message
    assert "cs.toml:2:" in message


def test_a_bad_accent_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    message = refused(tmp_path, "", {"CUSTOMER_SERVICE_WEB_ACCENT_COLOR": "blue"})
    assert "CUSTOMER_SERVICE_WEB_ACCENT_COLOR" in message and "accent_color" in message


@pytest.mark.parametrize("url", ["", "/static/favicon.svg", "/logo.png",
                                 "https://cdn.example.com/brand/logo.png",
                                 "https://cdn.example.com:8443/logo.svg?v=2"])
def test_logo_urls_over_https_or_paths_are_accepted(tmp_path: Path, url: str) -> None:
    assert load(tmp_path, f'logo_url = "{url}"').web.logo_url == url  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["javascript:alert(1)", "http://cdn.example.com/logo.png",
                                 "//cdn.example.com/logo.png", "data:image/png;base64,AAAA",
                                 "logo.png", "https://", "https://cdn.example.com/a b.png",
                                 "https://cdn.example.com;script-src *", "/\\\\evil.example.com/x"])
def test_other_logo_urls_are_refused(tmp_path: Path, url: str) -> None:
    message = refused(tmp_path, f"logo_url = '{url}'")
    assert "[web] logo_url" in message and "https:// URL or a path" in message
    assert "cs.toml:2:" in message


def test_logo_problem_is_none_only_for_what_the_pages_can_load() -> None:
    assert logo_problem("https://a.example/x.png") is None
    assert logo_problem("/x.png") is None
    assert logo_problem("javascript:void(0)") is not None


def test_the_csp_allows_the_logo_origin_only_for_a_logo_elsewhere() -> None:
    assert content_security_policy("") == CSP
    assert content_security_policy("/static/logo.png") == CSP
    assert logo_origin("https://cdn.example.com:8443/x/logo.png?v=1") == "https://cdn.example.com:8443"
    policy = content_security_policy("https://cdn.example.com/brand/logo.png")
    assert "img-src 'self' data: https://cdn.example.com;" in policy
    assert policy.count("cdn.example.com") == 1 and "script-src 'self';" in policy


def test_pages_carry_the_logo_origin_and_scripts_carry_no_policy() -> None:
    assets = load_assets("https://cdn.example.com/logo.png")
    for page in ("/", "/agent"):
        headers = dict(assets[page].headers)
        assert b"img-src 'self' data: https://cdn.example.com;" in headers[b"content-security-policy"]
    assert b"content-security-policy" not in dict(assets["/widget.js"].headers)
