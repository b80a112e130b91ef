"""Search across two server processes on one MariaDB: a message a visitor sends through
one instance is found, in Chinese, by REST on the other, through the FULLTEXT index."""

from __future__ import annotations

import httpx

from tests.cluster.conftest import Cluster, visitor_at


async def test_a_message_stored_by_one_instance_is_found_on_the_other(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, token = await cluster.make_agent("alice")
    async with visitor_at(a, name="李娜") as (vera, welcome):
        cid = welcome["conversation_id"]
        await vera.send(type="text", id="v1", content="请问退款政策是什么？订单 A-77")
        await vera.recv_type("ack", id="v1")

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        for text in ("退款", "退款政策", "a-77 订单"):
            found = await http.get(f"{b.url}/api/v1/search", params={"q": text})
            assert found.status_code == 200, found.text
            assert [(h["kind"], h["conversation_id"], h["seq"]) for h in found.json()["hits"]] == [
                ("message", cid, 1)], text
        person = (await http.get(f"{b.url}/api/v1/search", params={"q": "李娜"})).json()
        assert [(h["kind"], h["conversation_id"]) for h in person["hits"]] == [("visitor", cid)]
        nothing = (await http.get(f"{b.url}/api/v1/search", params={"q": "政策退款"})).json()
        assert nothing["hits"] == []
