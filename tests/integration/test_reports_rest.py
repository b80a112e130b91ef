"""``GET /api/v1/reports`` on a real server: any agent's token reads the hand-computed
fixture's figures (tests/reports_fixture.py), grouped; bad parameters get a 400 JSON
error naming them; no token gets 401."""

from __future__ import annotations

import httpx

from customer_service.server.run import Server
from tests.integration.helpers import http_url, make_agent
from tests.reports_fixture import fill


async def test_an_agent_reads_the_report_and_bad_input_is_named(server: Server) -> None:
    await fill(server.service.store)
    _, token = await make_agent(server, "reporter")
    auth = {"Authorization": f"Bearer {token}"}
    url = http_url(server, "/api/v1/reports")
    async with httpx.AsyncClient() as http:
        got = await http.get(url, params={"since": "2026-11-02", "until": "2026-11-03",
                                          "by": "agent", "tz": "UTC"}, headers=auth)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["total"]["opened"] == 5 and body["total"]["closed"] == 4
        assert body["total"]["first_response_agent"] == {"count": 3, "median_ms": 120000,
                                                         "p90_ms": 224000}
        assert [(row["key"], row["name"], row["opened"]) for row in body["rows"]] == [
            ("alice", "Alice", 2), ("bob", "Bob", 1), ("", "", 2)]
        assert body["campaigns"][0]["name"] == "November promo"

        by_day = (await http.get(url, params={"since": "2026-11-02T00:00:00Z",
                                              "until": "2026-11-04T00:00:00Z", "by": "day"},
                                 headers=auth)).json()
        assert [(row["key"], row["opened"]) for row in by_day["rows"]] == [
            ("2026-11-02", 3), ("2026-11-03", 2)]

        for params, message in (
                ({}, "query parameter 'since' is missing"),
                ({"since": "yesterday"}, "query parameter 'since': 'yesterday' is not a date"),
                ({"since": "2026-11-05", "until": "2026-11-01"},
                 "query parameter 'until': '2026-11-01' ends the range before"),
                ({"since": "2026-11-01", "by": "week"},
                 "query parameter 'by': 'week' is not one of agent, day, label"),
                ({"since": "2026-11-01", "tz": "Mars/Base"},
                 "query parameter 'tz': unknown time zone 'Mars/Base'"),
                ({"since": "2026-11-01", "limit": "5"}, "unknown query parameter 'limit'")):
            bad = await http.get(url, params=params, headers=auth)
            assert bad.status_code == 400, (params, bad.text)
            assert bad.json()["error"] == "bad_request"
            assert bad.json()["message"].startswith(message), bad.text

        anonymous = await http.get(url, params={"since": "2026-11-02"})
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "unauthorized"
