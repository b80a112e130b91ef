"""Labels across two server processes on one MariaDB and one Redis: a label added through
one instance's REST reaches, as a ``conversation`` event, the agent on the other."""

from __future__ import annotations

import httpx

from tests.cluster.conftest import Cluster, agent_at, visitor_at


async def test_a_label_change_crosses_instances(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, alice_token = await cluster.make_agent("alice")
    _, bob_token = await cluster.make_agent("bob")
    async with agent_at(b, alice_token) as (alice, _), visitor_at(a, name="Vera") as (vera, welcome):
        cid = welcome["conversation_id"]
        await vera.send(type="text", id="v1", content="refund please")
        await vera.recv_type("ack", id="v1")
        await alice.send(type="accept", id="acc", conversation_id=cid)
        await alice.recv_type("ack", id="acc")

        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {bob_token}"}) as http:
            added = await http.post(f"{a.url}/api/v1/conversations/{cid}/labels/Refund")
            assert added.status_code == 200, added.text
            assert added.json()["labels"] == ["refund"]
            event = await alice.recv_type(
                "conversation", where=lambda f: f["conversation"]["labels"] == ["refund"])
            assert event["conversation"]["conversation_id"] == cid
            assert event["conversation"]["assigned_to"] is not None
            alice.backlog.clear()  # the earlier events had no labels either


            removed = await http.delete(f"{a.url}/api/v1/conversations/{cid}/labels/refund")
            assert removed.json()["labels"] == []
            await alice.recv_type("conversation", where=lambda f: (
                f["conversation"]["conversation_id"] == cid and f["conversation"]["labels"] == []))
            listed = await http.get(f"{b.url}/api/v1/conversations", params={"label": "refund"})
            assert listed.json()["conversations"] == []
