"""The session-state cache end to end: an AI reply in a long conversation sends the right
history upstream, and the next reply reads no history from the database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from customer_service import auth
from customer_service.config import Config
from customer_service.core.ai_context import CONTEXT_MESSAGES, build_context
from customer_service.core.models import NewMessage, Role
from customer_service.server.run import Server, open_server
from tests.fakes.openai_server import FakeOpenAI, Script, open_fake_openai
from tests.integration.helpers import http_url, visitor
from tests.integration.test_ai import API_KEY, ai_config, collect_reply

HISTORY = 250


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with open_fake_openai(api_key=API_KEY) as upstream:
        yield upstream


async def cache_counters(server: Server) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        text = (await http.get(http_url(server, "/metrics"))).text
    return {name: float(value) for name, value in
            re.findall(r"^cs_ai_context_cache_(\w+?)(?:_total)? (\S+)$", text, re.M)}


async def long_conversation(server: Server) -> tuple[int, str]:
    """A conversation with ``HISTORY`` earlier messages, written straight to the store
    before its visitor connects; (its id, the visitor's token)."""
    store = server.service.store
    token = auth.new_token()
    visitor_row = await store.create_visitor(auth.token_hash(token), "", "", "")
    cid = (await store.current_conversation(visitor_row.id)).id
    roles = (Role.VISITOR, Role.AGENT, Role.SYSTEM, Role.AI)
    await store.append_messages([
        NewMessage(cid, roles[n % 4], None, roles[n % 4].value, f"earlier message {n}")
        for n in range(HISTORY)])
    return cid, token


async def test_a_long_conversation_sends_its_newest_history_and_then_reads_it_no_more(
        config: Config, fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=["First", " answer."]), Script(tokens=["Second", " answer."]))
    async with open_server(ai_config(config, fake, max_context_tokens=100_000)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        cid, token = await long_conversation(srv)
        store = srv.service.store
        async with visitor(srv, visitor_token=token, last_seq=HISTORY) as (vis, _):
            await vis.send(type="text", id="q1", content="What about my order?")
            await collect_reply(vis)
            rows = await store.messages_after(cid, 0, 1000)
            (first,) = fake.requests  # made from the 200 newest messages, the question last
            assert first.body["messages"] == build_context(
                "You help.", rows[:HISTORY + 1][-CONTEXT_MESSAGES:], 100_000)
            assert first.body["messages"][1]["content"] == "earlier message 51"
            assert first.body["messages"][-1] == {"role": "user",
                                                  "content": "What about my order?"}
            after_first = await cache_counters(srv)
            assert after_first["misses"] == 1 and after_first["entries"] == 1, after_first

            await vis.send(type="text", id="q2", content="And the invoice?")
            await collect_reply(vis)
            (_, second) = fake.requests
            assert second.body["messages"][-3:] == [
                {"role": "user", "content": "What about my order?"},
                {"role": "assistant", "content": "First answer."},
                {"role": "user", "content": "And the invoice?"}]
            rows = await store.messages_after(cid, 0, 1000)
            assert second.body["messages"] == build_context(
                "You help.", rows[:HISTORY + 3][-CONTEXT_MESSAGES:], 100_000)
            after_second = await cache_counters(srv)
            assert after_second["misses"] == 1 and after_second["hits"] == 1
            assert after_second["bytes"] > 0
        srv.shutdown()


async def test_a_cache_of_zero_reads_the_store_every_time(config: Config,
                                                          fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=["One."]), Script(tokens=["Two."]))
    async with open_server(ai_config(config, fake, context_cache_mb=0)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv) as (vis, _):
            for n in (1, 2):
                await vis.send(type="text", id=f"q{n}", content=f"question {n}")
                await collect_reply(vis)
        (_, second) = fake.requests
        assert second.body["messages"][1:] == [
            {"role": "user", "content": "question 1"}, {"role": "assistant", "content": "One."},
            {"role": "user", "content": "question 2"}]
        assert await cache_counters(srv) == {}
        srv.shutdown()
