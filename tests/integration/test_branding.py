"""[web] branding over HTTP: GET /api/v1/widget tells the pages the title, logo, accent and
default language; the pages' CSP allows a logo on another origin, and only that origin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from customer_service.config import Config
from customer_service.server.run import Server, open_server
from tests.integration.helpers import http_url

LOGO = "https://cdn.example.com/brand/logo.png"


@pytest.fixture
async def branded(config: Config) -> AsyncIterator[Server]:
    changed = config.with_changes(web__title="Acme Help", web__logo_url=LOGO,
                                  web__accent_color="#c0ffee", web__default_language="zh-CN",
                                  web__show_embed_help=True)
    async with open_server(changed) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def test_the_widget_settings_carry_the_branding(branded: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(http_url(branded, "/api/v1/widget"))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["title"] == "Acme Help" and body["logo_url"] == LOGO
    assert body["accent_color"] == "#c0ffee" and body["default_language"] == "zh-CN"
    assert body["show_embed_help"] is True and body["languages"] == ["en", "zh-CN"]


async def test_the_pages_allow_the_logo_origin(branded: Server) -> None:
    async with httpx.AsyncClient() as http:
        for path in ("/", "/agent"):
            response = await http.get(http_url(branded, path))
            csp = response.headers["content-security-policy"]
            assert "img-src 'self' data: https://cdn.example.com;" in csp, path
            assert "script-src 'self';" in csp and "/brand/logo.png" not in csp


async def test_without_a_logo_elsewhere_images_stay_same_origin(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(http_url(server, "/"))
    assert "img-src 'self' data:;" in response.headers["content-security-policy"]
