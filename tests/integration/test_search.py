"""Search on a real server: ``GET /api/v1/search`` finds what a visitor wrote over the
socket a moment before (Chinese too), pages with ``next``, never shows private notes, and
answers each bad input with a 400 JSON error naming it."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from customer_service.server.run import Server
from tests.integration.helpers import agent_socket, http_url, make_agent, visitor


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_message_sent_a_moment_before_is_found(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server, name="王芳", email="wang@example.com") as (vis, welcome), \
            httpx.AsyncClient() as http:
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="你好，我想申请退款，订单号 A-1234")
        await vis.recv_type("ack", id="v1")
        await vis.send(type="text", id="v2", content="The refund is for a broken kettle")
        await vis.recv_type("ack", id="v2")
        async with agent_socket(server, token) as (agent, _):
            await agent.send(type="note", id="n1", conversation_id=cid,
                             content="kettle refund approved, 退款 secret")
            await agent.recv_type("ack", id="n1")

        found = await http.get(http_url(server, "/api/v1/search?q=" + quote("退款")),
                               headers=auth(token))
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["query"] == "退款" and body["next"] is None
        assert [(h["kind"], h["conversation_id"], h["seq"], h["role"], h["visitor_name"])
                for h in body["hits"]] == [("message", cid, 1, "visitor", "王芳")]
        hit = body["hits"][0]
        assert hit["snippet"] == "你好，我想申请退款，订单号 A-1234"
        assert [hit["snippet"][a:b] for a, b in hit["highlights"]] == ["退款"]
        assert hit["created_at"].endswith("Z") and hit["cursor"].endswith(f".{cid}.1")

        english = (await http.get(http_url(server, "/api/v1/search"),
                                  params={"q": "  KETTLE   refund "}, headers=auth(token))).json()
        assert english["query"] == "KETTLE refund"
        assert [(h["seq"], h["snippet"]) for h in english["hits"]] == [
            (2, "The refund is for a broken kettle")]   # the note is not a hit

        by_visitor = (await http.get(http_url(server, "/api/v1/search"),
                                     params={"q": "王芳"}, headers=auth(token))).json()
        assert [(h["kind"], h["conversation_id"], h["snippet"]) for h in by_visitor["hits"]] == [
            ("visitor", cid, "王芳 <wang@example.com>")]


async def test_pages_follow_next(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server, name="Vera") as (vis, _), httpx.AsyncClient() as http:
        for n in range(5):
            await vis.send(type="text", id=f"v{n}", content=f"invoice number {n}")
            await vis.recv_type("ack", id=f"v{n}")
        seqs: list[int] = []
        params = {"q": "invoice", "limit": "2"}
        while True:
            page = (await http.get(http_url(server, "/api/v1/search"), params=params,
                                   headers=auth(token))).json()
            seqs += [h["seq"] for h in page["hits"]]
            if page["next"] is None:
                break
            params["before"] = page["next"]
        assert seqs == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(("query", "problem"), [
    ("", "query parameter 'q' is missing"),
    ("?q=", "query parameter 'q': the search text is empty"),
    ("?q=%20%20", "query parameter 'q': the search text is empty"),
    ("?q=" + "x" * 201, "too long: at most 200 characters, not 201"),
    ("?q=a&limit=0", "'limit' must be an integer between 1 and 100, not '0'"),
    ("?q=a&limit=ten", "'limit' must be an integer between 1 and 100, not 'ten'"),
    ("?q=a&limit=101", "between 1 and 100"),
    ("?q=a&before=yesterday", "query parameter 'before': the cursor 'yesterday'"),
    ("?q=a&q=b", "query parameter 'q' is given more than once"),
    ("?q=%ff", "the query string is not UTF-8"),
])
async def test_bad_input_is_a_400_naming_it(server: Server, query: str, problem: str) -> None:
    _, token = await make_agent(server, "alice")
    async with httpx.AsyncClient() as http:
        answer = await http.get(http_url(server, "/api/v1/search" + query), headers=auth(token))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "bad_request"
    assert problem in answer.json()["message"]


async def test_search_needs_an_agent(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(http_url(server, "/api/v1/search?q=refund"))
        assert answer.status_code == 401 and "error" in answer.json()
        wrong = await http.post(http_url(server, "/api/v1/search?q=refund"),
                                headers=auth("nope"))
        assert wrong.status_code == 405
