"""Visitor context across two server processes on one MariaDB and one Redis: a visitor on
one instance navigates, the agent on the other gets the ``page`` frame over the bus, and the
other instance's REST answers the context the first one wrote."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.cluster.conftest import Cluster, agent_at, visitor_at


async def test_a_page_change_crosses_instances(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, alice_token = await cluster.make_agent("alice")
    async with agent_at(b, alice_token) as (alice, _), \
            visitor_at(a, name="Vera", page="https://shop.example/", timezone="Europe/Berlin",
                       referrer="https://search.example/?q=x") as (vera, welcome):
        cid = welcome["conversation_id"]
        await vera.send(type="text", id="v1", content="Do you ship to Norway?")
        await vera.recv_type("ack", id="v1")
        await vera.send(type="page", url="https://shop.example/shipping", title="Shipping",
                        id="p1")
        await vera.recv_type("ack", id="p1")
        event = await alice.recv_type("page", conversation_id=cid)
        assert (event["url"], event["title"]) == ("https://shop.example/shipping", "Shipping")

        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {alice_token}"}) as http:
            with trio.fail_after(10):
                while True:
                    answer = await http.get(f"{b.url}/api/v1/conversations/{cid}/context")
                    assert answer.status_code == 200, answer.text
                    body: dict[str, Any] = answer.json()
                    if len(body["pages"]) == 2:
                        break
                    await trio.sleep(0.05)
        assert body["page"] == "https://shop.example/shipping"
        assert [p["url"] for p in body["pages"]] == ["https://shop.example/",
                                                     "https://shop.example/shipping"]
        assert (body["timezone"], body["referrer"]) == ("Europe/Berlin", "https://search.example/")
        assert body["ip"] == "127.0.0.1"
