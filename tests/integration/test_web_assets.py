"""The web pages and their assets as HTTP resources: types, CSP, caching, refusals."""

from __future__ import annotations

import httpx

from customer_service.server.run import Server
from tests.integration.helpers import http_url


async def test_pages_are_html_with_a_restrictive_csp(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        for path in ("/", "/agent"):
            response = await http.get(http_url(server, path))
            assert response.status_code == 200, path
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "<script" in response.text


async def test_widget_script_loads_from_other_sites(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(http_url(server, "/widget.js"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "content-security-policy" not in response.headers
    assert "currentScript" in response.text


async def test_static_files_are_served_with_their_types(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        css = await http.get(http_url(server, "/static/widget.css"))
        module = await http.get(http_url(server, "/static/agent.js"))
    assert css.status_code == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
    assert module.status_code == 200
    assert module.headers["content-type"] == "text/javascript; charset=utf-8"


async def test_an_unchanged_asset_answers_304(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        first = await http.get(http_url(server, "/static/agent.js"))
        etag = first.headers["etag"]
        again = await http.get(http_url(server, "/static/agent.js"), headers={"if-none-match": etag})
        stale = await http.get(http_url(server, "/static/agent.js"),
                               headers={"if-none-match": '"other"'})
        weak_list = await http.get(http_url(server, "/static/agent.js"),
                                   headers={"if-none-match": f'"other", W/{etag}'})
    assert first.headers["cache-control"] == "no-cache"
    assert again.status_code == 304 and again.content == b""
    assert "content-length" not in again.headers
    assert weak_list.status_code == 304
    assert stale.status_code == 200 and stale.content == first.content


async def test_head_gives_headers_without_a_body(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.head(http_url(server, "/"))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"].startswith("text/html")


async def test_unknown_files_and_wrong_methods_are_refused(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        missing = await http.get(http_url(server, "/static/nope.js"))
        package = await http.get(http_url(server, "/static/__init__.py"))
        post = await http.post(http_url(server, "/agent"), content=b"x")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert package.status_code == 404
    assert post.status_code == 405 and post.json()["error"] == "method_not_allowed"


async def test_scripts_carry_the_string_tables_of_every_language(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        widget = await http.get(http_url(server, "/widget.js"))
        i18n = await http.get(http_url(server, "/static/i18n.js"))
        english = await http.get(http_url(server, "/static/lang-en.json"))
    assert english.status_code == 200
    for script in (widget.text, i18n.text):
        assert "/*@STRINGS@*/" not in script
        assert '{"en":{' in script and '"zh-CN":{' in script


async def test_widget_settings_are_public_and_readable_from_any_site(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(http_url(server, "/api/v1/widget"),
                                  headers={"origin": "https://shop.example.com"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["title"] == "Customer service"
    assert body["languages"] == ["en", "zh-CN"]
    assert body["welcome"] == server.config.auto_replies.welcome  # (off in these tests)
    assert body["status"] == "away"  # no agent has a socket open
