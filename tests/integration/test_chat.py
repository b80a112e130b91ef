"""Visitor and agent chat end to end over real sockets."""

from __future__ import annotations

from customer_service.server.run import Server
from tests.integration.helpers import (
    Client,
    agent_socket,
    make_agent,
    open_ws,
    refused_upgrade,
    visitor,
    ws_url,
)


async def test_visitor_and_agent_chat_in_one_seq_order(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server, name="Vera", page="/pricing") as (vis, welcome):
        conversation_id = welcome["conversation_id"]
        assert welcome["last_seq"] == 0 and welcome["visitor_token"]
        await vis.send(type="text", id="v1", content="Hello, anyone there?")
        ack = await vis.recv_type("ack", id="v1")
        assert ack["seq"] == 1 and ack["ts"].endswith("Z")
        mine = await vis.recv_type("message", seq=1)
        assert mine["sender"]["role"] == "visitor" and mine["content"] == "Hello, anyone there?"

        async with agent_socket(server, token) as (agent, agent_welcome):
            listed = {c["conversation_id"]: c for c in agent_welcome["conversations"]}
            assert listed[conversation_id]["status"] == "open"
            assert listed[conversation_id]["visitor"]["name"] == "Vera"
            assert listed[conversation_id]["visitor"]["online"] is True
            assert listed[conversation_id]["unread"] == 1

            await agent.send(type="accept", id="a1", conversation_id=conversation_id)
            await agent.recv_type("ack", id="a1")
            joined = await vis.recv_type("message", seq=2)
            assert joined["sender"]["role"] == "system"
            event = await agent.recv_type(
                "conversation", where=lambda f: f["conversation"]["status"] == "assigned")
            assert event["conversation"]["conversation_id"] == conversation_id

            await agent.send(type="text", id="a2", conversation_id=conversation_id,
                             content="Hi Vera, how can I help?")
            reply_ack = await agent.recv_type("ack", id="a2")
            reply = await vis.recv_type("message", seq=3)
            assert reply["sender"]["role"] == "agent" and reply["sender"]["name"] == "Alice"
            assert reply_ack["seq"] == 3

            await vis.send(type="text", id="v2", content="Prices please")
            await vis.recv_type("ack", id="v2")
            got = await agent.recv_type("message", seq=4)
            assert got["content"] == "Prices please"

            visitor_seqs = [f["seq"] for f in vis.seen if f["type"] == "message"]
            agent_seqs = [f["seq"] for f in agent.seen if f["type"] == "message"]
            assert visitor_seqs == [1, 2, 3, 4]
            assert agent_seqs == sorted(agent_seqs) and agent_seqs[-1] == 4


async def test_reconnect_with_last_seq_replays_exactly_what_was_missed(server: Server) -> None:
    _, token = await make_agent(server, "bob")
    async with visitor(server) as (vis, welcome):
        conversation_id = welcome["conversation_id"]
        visitor_token = welcome["visitor_token"]
        await vis.send(type="text", id="r1", content="one")
        await vis.recv_type("ack", id="r1")
        async with agent_socket(server, token) as (agent, _):
            await agent.send(type="accept", id="acc", conversation_id=conversation_id)
            await agent.recv_type("ack", id="acc")
            last = await vis.recv_type("message", seq=2)
    last_seq = last["seq"]
    async with agent_socket(server, token) as (agent, _):
        for n in range(3):
            await agent.send(type="text", id=f"missed{n}", conversation_id=conversation_id,
                             content=f"missed {n}")
            await agent.recv_type("ack", id=f"missed{n}")
        async with visitor(server, visitor_token=visitor_token, last_seq=last_seq) as (
                back, again):
            assert again["conversation_id"] == conversation_id
            assert again["visitor_token"] == visitor_token
            assert again["last_seq"] == last_seq + 3
            replayed = [await back.recv() for _ in range(3)]
            assert [m["content"] for m in replayed] == ["missed 0", "missed 1", "missed 2"]
            assert [m["seq"] for m in replayed] == [last_seq + 1, last_seq + 2, last_seq + 3]
            await back.nothing_more()
            await agent.send(type="text", id="live", conversation_id=conversation_id,
                             content="live again")
            live = await back.recv_type("message")
            assert live["seq"] == last_seq + 4


async def test_a_resent_id_is_acked_with_the_original_seq_and_stored_once(
        server: Server) -> None:
    async with visitor(server) as (vis, welcome):
        conversation_id = welcome["conversation_id"]
        await vis.send(type="text", id="same", content="only once")
        first = await vis.recv_type("ack", id="same")
        await vis.send(type="text", id="same", content="only once")
        second = await vis.recv_type("ack", id="same")
        assert first["seq"] == second["seq"]
        await vis.send(type="text", id="other", content="next")
        third = await vis.recv_type("ack", id="other")
        assert third["seq"] == first["seq"] + 1
        delivered = [f["seq"] for f in vis.seen if f["type"] == "message"]
        assert delivered == [first["seq"], third["seq"]]
        await vis.nothing_more()
    stored = await server.service.store.messages_after(conversation_id, 0)
    assert [m.content for m in stored] == ["only once", "next"]


async def test_transfer_close_and_reopen(server: Server) -> None:
    alice, alice_token = await make_agent(server, "alice")
    bob, bob_token = await make_agent(server, "bob")
    async with visitor(server, name="Pat") as (vis, welcome), \
            agent_socket(server, alice_token) as (a, _), \
            agent_socket(server, bob_token) as (b, _):
        cid = welcome["conversation_id"]
        await a.send(type="accept", id="x1", conversation_id=cid)
        await a.recv_type("ack", id="x1")
        await b.send(type="accept", id="x2", conversation_id=cid)
        refused = await b.recv_type("error", id="x2")
        assert refused["error"] == "conflict"
        await b.send(type="text", id="x3", conversation_id=cid, content="not mine")
        assert (await b.recv_type("error", id="x3"))["error"] == "forbidden"
        await a.send(type="transfer", id="x4", conversation_id=cid, to_agent="bob")
        await a.recv_type("ack", id="x4")
        moved = await b.recv_type(
            "conversation", where=lambda f: f["conversation"]["assigned_to"] == bob.id)
        assert moved["conversation"]["status"] == "assigned"
        await a.send(type="transfer", id="x5", conversation_id=cid, to_agent="nobody")
        assert (await a.recv_type("error", id="x5"))["error"] == "not_found"
        await b.send(type="close", id="x6", conversation_id=cid)
        await b.recv_type("ack", id="x6")
        closed = await vis.recv_type("message", content="Bob closed the conversation")
        await vis.send(type="text", id="x7", content="one more question")
        await vis.recv_type("ack", id="x7")
        reopened = await a.recv_type(
            "conversation", where=lambda f: f["conversation"]["status"] == "open")
        assert reopened["conversation"]["assigned_to"] is None
        assert closed["sender"]["role"] == "system"
        assert reopened["conversation"]["visitor"]["name"] == "Pat"
        note = await vis.recv_type("message", content="Alice transferred the conversation to Bob")
        assert note["sender"]["role"] == "system" and alice.id != bob.id


async def test_typing_read_ping_and_history(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    async with visitor(server) as (vis, welcome), agent_socket(server, token) as (agent, _):
        cid = welcome["conversation_id"]
        await vis.send(type="typing", active=True)
        typing = await agent.recv_type("typing")
        assert typing["active"] is True and typing["conversation_id"] == cid
        await agent.send(type="accept", id="h0", conversation_id=cid)
        await agent.recv_type("ack", id="h0")
        await agent.send(type="typing", conversation_id=cid, active=True)
        assert (await vis.recv_type("typing"))["sender"]["role"] == "agent"
        for n in range(5):
            await vis.send(type="text", id=f"h{n + 1}", content=f"line {n}")
            await vis.recv_type("ack", id=f"h{n + 1}")
        await agent.send(type="read", conversation_id=cid, seq=6, id="rd")
        await agent.recv_type("ack", id="rd")
        read = await vis.recv_type("read")
        assert read["seq"] == 6 and read["by"] == "agent"
        await agent.send(type="history", id="hist", conversation_id=cid, before_seq=6, limit=3)
        page = await agent.recv_type("history", id="hist")
        assert [m["seq"] for m in page["messages"]] == [3, 4, 5]
        await vis.send(type="ping", id="p")
        assert (await vis.recv_type("pong"))["id"] == "p"
        token_of_visitor = welcome["visitor_token"]
    async with visitor(server, visitor_token=token_of_visitor, last_seq=6) as (again, _):
        restored = await again.recv_type("read")
        assert restored == {"type": "read", "conversation_id": cid, "seq": 6, "by": "agent"}


async def test_an_agent_not_following_the_queue_sees_only_its_own(server: Server) -> None:
    _, queue_token = await make_agent(server, "queue")
    _, bot_token = await make_agent(server, "bot")
    async with agent_socket(server, queue_token) as (dashboard, _), \
            open_ws(ws_url(server, f"/ws/agent?token={bot_token}&queue=off")) as ws:
        bot = Client(ws)
        assert (await bot.recv())["conversations"] == []
        async with visitor(server, name="Quinn") as (vis, welcome):
            cid = welcome["conversation_id"]
            await dashboard.recv_type("conversation")
            await vis.send(type="text", id="w1", content="anyone?")
            await dashboard.recv_type("message", content="anyone?")
            await bot.nothing_more()
            await bot.send(type="accept", id="take", conversation_id=cid)
            await bot.recv_type("ack", id="take")
            gone = await dashboard.recv_type(
                "conversation", where=lambda f: f["conversation"]["status"] == "assigned")
            assert gone["conversation"]["conversation_id"] == cid
            await vis.send(type="text", id="w2", content="for the bot only")
            await bot.recv_type("message", content="for the bot only")
        left = await bot.recv_type("conversation",
                                   where=lambda f: not f["conversation"]["visitor"]["online"])
        assert left["conversation"]["conversation_id"] == cid
        await dashboard.nothing_more()
    refused = await refused_upgrade(server, f"/ws/agent?token={bot_token}&queue=maybe")
    assert refused.status_code == 400
