"""The session-state cache under fire (issue 14's attack): messages committed while the
AI reads its history and streams, follow-ups, a reconnect with replay, an agent's accept
mid-stream. Every context sent upstream must be the conversation as stored up to some
message: never a hole, never a duplicate (the fake upstream records what it was sent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio

from customer_service.config import Config
from customer_service.core.ai_context import CONTEXT_MESSAGES, build_context
from customer_service.core.models import NewMessage, Role, StoredMessage
from customer_service.server.run import Server, open_server
from tests.fakes.openai_server import FakeOpenAI, Script, open_fake_openai
from tests.integration.helpers import agent_socket, make_agent, visitor
from tests.integration.test_ai import API_KEY, ai_config

ROUNDS = 12


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with open_fake_openai(api_key=API_KEY) as upstream:
        yield upstream


def assert_prefixes(requests: Sequence[Any], rows: Sequence[StoredMessage]) -> None:
    """Each request's messages are the context of the first k stored messages, some k."""
    contexts = [build_context("You help.", rows[:k][-CONTEXT_MESSAGES:], 1_000_000)
                for k in range(len(rows) + 1)]
    for n, request in enumerate(requests):
        sent = request.body["messages"]
        assert sent in contexts, (n, sent, [(m.seq, m.sender_role, m.content) for m in rows])


async def settled(srv: Server, cid: int) -> None:
    """Until no reply streams and the newest message is the AI's (bounded)."""
    responder = srv.service.ai
    assert responder is not None
    with trio.fail_after(15):
        while True:
            rows = await srv.service.store.messages_before(cid, None, 1)
            if not responder.live and rows and rows[-1].sender_role is Role.AI:
                return
            await trio.sleep(0.02)


async def test_messages_committed_while_replies_read_and_stream_leave_no_hole_or_duplicate(
        config: Config, fake: FakeOpenAI) -> None:
    fake.default = Script(tokens=["a", "b", "c"], chunk_delay=0.005)
    async with open_server(ai_config(config, fake, mode="always",
                                     max_context_tokens=1_000_000)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        store = srv.service.store
        async with visitor(srv) as (vis, welcome):
            cid = welcome["conversation_id"]
            await vis.send(type="text", id="v0", content="hello")
            with trio.fail_after(10):
                while not fake.requests:
                    await trio.sleep(0.01)

            async def agent_lines() -> None:
                for n in range(ROUNDS):
                    await srv.service.post(NewMessage(cid, Role.AGENT, None, "Bob",
                                                      f"agent line {n}"))
                    await trio.sleep(0.003)

            async with trio.open_nursery() as writers:
                writers.start_soon(agent_lines)
                for n in range(ROUNDS):
                    await vis.send(type="text", id=f"v{n + 1}", content=f"visitor line {n}")
                    await trio.sleep(0.004)
            await settled(srv, cid)
        rows = await store.messages_after(cid, 0, 10_000)
        assert_prefixes(fake.requests, rows)
        srv.shutdown()


async def test_a_reconnect_with_replay_and_an_accept_mid_stream_leave_no_hole_or_duplicate(
        config: Config, fake: FakeOpenAI) -> None:
    fake.default = Script(tokens=[f"w{n} " for n in range(8)], chunk_delay=0.01)
    async with open_server(ai_config(config, fake, mode="always",
                                     max_context_tokens=1_000_000)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        store = srv.service.store
        _, token = await make_agent(srv, "alice")
        async with visitor(srv) as (vis, welcome):
            cid = welcome["conversation_id"]
            await vis.send(type="text", id="q0", content="first")
            ack = await vis.recv_type("ack", id="q0")
            await vis.recv_type("ai_delta")  # leaves mid-stream
        for n in range(3):  # back with replay, writes, leaves mid-stream again
            async with visitor(srv, visitor_token=welcome["visitor_token"],
                               last_seq=ack["seq"]) as (vis, _):
                await vis.send(type="text", id=f"r{n}", content=f"back {n}")
                ack = await vis.recv_type("ack", id=f"r{n}")
                await vis.recv_type("ai_delta")
        async with visitor(srv, visitor_token=welcome["visitor_token"],
                           last_seq=ack["seq"]) as (vis, _), \
                agent_socket(srv, token) as (agent, _):
            await vis.send(type="text", id="q1", content="still there?")
            await vis.recv_type("ai_delta")
            await agent.send(type="accept", id="take", conversation_id=cid)
            await agent.recv_type("ack", id="take")
            await agent.send(type="text", id="a1", conversation_id=cid, content="Alice here")
            await agent.recv_type("ack", id="a1")
            await vis.send(type="text", id="q2", content="thanks")  # "always": answered
            await vis.recv_type("ack", id="q2")
            await settled(srv, cid)
        rows = await store.messages_after(cid, 0, 10_000)
        assert_prefixes(fake.requests, rows)
        assert len(fake.requests) >= 2
        srv.shutdown()
