"""Hostile input to issue 12's frames and REST on a real server: what is refused gets a
clear error, and what is accepted reaches agents harmless."""

from __future__ import annotations

import httpx
import pytest
import trio

from customer_service.server.run import Server
from tests.integration.helpers import http_url, make_agent, visitor


async def _context(server: Server, token: str, conversation_id: int) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            http_url(server, f"/api/v1/conversations/{conversation_id}/context"),
            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    found: dict[str, object] = response.json()
    return found


@pytest.mark.parametrize(("page", "shown"), [
    ("javascript:alert(1)", ""),
    ("data:text/html,<script>alert(1)</script>", ""),
    ("http://[::1", ""),
    ("https://shop.example/cart?token=secret#x", "https://shop.example/cart"),
])
async def test_the_hello_page_reaches_the_context_panel_only_as_an_http_url(
        server: Server, page: str, shown: str) -> None:
    """The panel links the page (``<a href>``): a ``javascript:`` one was served as it came
    (the visitor's ``page`` column, kept from before visitor context, was the fallback)."""
    _, token = await make_agent(server, "ann")
    async with visitor(server, page=page) as (vis, welcome):
        await vis.send(type="ping", id="p")
        await vis.recv_type("pong")
        with trio.fail_after(5):
            while (found := await _context(server, token, welcome["conversation_id"])
                   )["visit_started_at"] is None:
                await trio.sleep(0.05)
    assert found["page"] == shown
