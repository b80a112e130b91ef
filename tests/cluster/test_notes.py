"""Private notes across two instances on one MariaDB and one Redis: the bus carries a note
to the agents on the other instance and to none of the visitor's sockets."""

from __future__ import annotations

import json

from tests.cluster.conftest import Cluster, agent_at, visitor_at

SECRET = "chargeback risk: check the card before refunding"


async def test_a_note_crosses_instances_to_agents_only(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, alice_token = await cluster.make_agent("alice")
    _, bob_token = await cluster.make_agent("bob")
    async with visitor_at(a, name="Vera") as (vera_a, welcome), \
            agent_at(b, alice_token) as (alice, _), agent_at(a, bob_token) as (bob, _):
        cid = welcome["conversation_id"]
        async with visitor_at(b, visitor_token=welcome["visitor_token"], last_seq=0,
                              conversation_id=cid) as (vera_b, _):
            await vera_a.send(type="text", id="v1", content="hello")
            await alice.recv_type("message", conversation_id=cid, content="hello")
            await alice.send(type="accept", id="acc", conversation_id=cid)
            await alice.recv_type("ack", id="acc")
            await bob.send(type="history", id="h", conversation_id=cid)  # bob watches, on A
            await bob.recv_type("history", id="h")

            await alice.send(type="note", id="n1", conversation_id=cid, content=SECRET)
            ack = await alice.recv_type("ack", id="n1")
            got = await bob.recv_type("note", conversation_id=cid)
            assert (got["note_id"], got["content"]) == (ack["note_id"], SECRET)

            await alice.send(type="text", id="t1", conversation_id=cid, content="On it.")
            for vera in (vera_a, vera_b):
                await vera.recv_type("message", content="On it.")
            await bob.recv_type("message", content="On it.")
            for vera in (vera_a, vera_b):
                assert [f for f in vera.seen
                        if f["type"] == "note" or SECRET in json.dumps(f)] == []
            assert [f["note_id"] for f in bob.seen if f["type"] == "note"] == [ack["note_id"]]
