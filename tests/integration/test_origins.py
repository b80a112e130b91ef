"""``[server] allowed_origins``: the visitor and agent sockets refuse other web pages (403
before the upgrade), on both transports; clients sending no Origin are let in."""

from __future__ import annotations

import json
import logging

import pytest

from customer_service.config import Config
from customer_service.server.run import Server
from tests.integration.helpers import (
    agent_socket,
    make_agent,
    open_ws,
    refused_upgrade,
    visitor,
    ws_url,
)

SHOP = "https://shop.example.com"


@pytest.fixture
def config(config: Config) -> Config:
    return config.with_changes(server__allowed_origins=[SHOP, "https://*.help.example.org"])


@pytest.mark.parametrize("origin", [SHOP, "HTTPS://Shop.Example.com:443", "https://a.help.example.org"])
async def test_a_listed_origin_opens_the_visitor_socket(server: Server, origin: str) -> None:
    async with open_ws(ws_url(server, "/ws/visitor"), origin) as ws:
        await ws.send_message(json.dumps({"type": "hello"}))
        assert json.loads(await ws.get_message())["type"] == "welcome"


async def test_a_listed_origin_opens_the_agent_socket(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with open_ws(ws_url(server, f"/ws/agent?token={token}"), SHOP) as ws:
        assert json.loads(await ws.get_message())["type"] == "welcome"


@pytest.mark.parametrize("path", ["/ws/visitor", "/ws/agent"])
@pytest.mark.parametrize("origin", ["https://evil.example", "http://shop.example.com",
                                    "https://help.example.org", "null"])
async def test_another_origin_is_refused_with_403_before_the_upgrade(
        server: Server, path: str, origin: str, caplog: pytest.LogCaptureFixture) -> None:
    if path == "/ws/agent":
        _, token = await make_agent(server, "alice")
        path += f"?token={token}"  # a valid token does not make a foreign page welcome
    with caplog.at_level(logging.WARNING, logger="customer_service.server.app"):
        response = await refused_upgrade(server, path, {"Origin": origin})
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "forbidden" and repr(origin) in body["message"]
    assert "allowed_origins" in body["message"]
    [line] = [r.getMessage() for r in caplog.records if "allowed_origins" in r.getMessage()]
    assert repr(origin) in line
    if server.config.server.transport == "native":  # names the transport's connection
        assert line.startswith("[n"), line


async def test_a_client_without_an_origin_header_is_let_in(server: Server) -> None:
    """Browsers always send Origin on a WebSocket handshake; other clients need not."""
    async with visitor(server) as (_, welcome):  # trio-websocket sends no Origin
        assert welcome["type"] == "welcome"
    _, token = await make_agent(server, "bob")
    async with agent_socket(server, token) as (_, welcome):
        assert welcome["type"] == "welcome"
