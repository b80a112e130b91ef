"""The session-state cache end to end: an AI reply in a long conversation sends the right
history upstream, and the next reply reads no history from the database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import trio

from customer_service import auth
from customer_service.config import Config
from customer_service.core.ai_context import CONTEXT_MESSAGES, build_context
from customer_service.core.bus_events import MessageEvent
from customer_service.core.identity import expected_hash
from customer_service.core.models import (
    CampaignKind,
    CampaignSpec,
    CampaignStatus,
    NewMessage,
    Role,
)
from customer_service.server.hub import Hub
from customer_service.server.run import Server, open_server
from customer_service.storage import open_store
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


async def test_the_hub_tells_the_cache_what_it_hands_on_and_what_may_be_stale() -> None:
    hub = Hub()
    delivered: list[tuple[int, int]] = []
    stale: list[tuple[int | None, int | None]] = []
    hub.on_delivered = lambda event: delivered.append((event.conversation_id, event.seq))
    hub.on_context_stale = lambda cid, upto: stale.append((cid, upto))
    for seq in (1, 2, 4):  # 3 is lost: 4 is held behind the gap
        hub.message(MessageEvent(5, seq, None, True, "{}"))
    assert delivered == [(5, 1), (5, 2)] and stale == [(5, None)]
    hub.fill(MessageEvent(5, 3, None, True, "{}"))  # the gap filler reads it
    assert delivered[2:] == [(5, 3), (5, 4)]
    hub.receive("other", 1, [])
    hub.receive("other", 2, [MessageEvent(6, 1, None, True, "{}")])
    assert stale == [(5, None)] and delivered[-1] == (6, 1)
    hub.receive("other", 5, [])  # batches 3 and 4 were lost: anything may be stale
    assert stale[-1] == (None, None)


async def test_a_message_another_process_wrote_is_in_the_next_ai_context(
        config: Config, fake: FakeOpenAI) -> None:
    """``campaigns run`` without a bus commits straight to the database: the server's look
    for outside writes drops the cached window, and the next reply reads it again."""
    fake.script(Script(tokens=["Hi."]), Script(tokens=["Enjoy."]))
    secret = "context-cache-test-secret"
    who = {"user_id": "u-1", "user_hash": expected_hash(secret, "u-1")}
    async with open_server(ai_config(config.with_changes(identity__secret=secret), fake)
                           ) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv, name="Ann", **who) as (vis, _), \
                open_store(srv.config) as other_process:
            await vis.send(type="text", id="q1", content="hello")
            await collect_reply(vis)
            contact = await other_process.get_contact_by_external_id("u-1")
            assert contact is not None
            campaign = await other_process.create_campaign(_spec(), CampaignStatus.READY)
            await other_process.add_recipients(campaign.id, [contact.id])
            now = datetime.now(UTC)
            assert await other_process.claim_campaign(campaign.id, "cli", 30, now) is not None
            await other_process.set_campaign_status(campaign.id, CampaignStatus.RUNNING)
            delivery = await other_process.deliver_campaign_message(
                campaign.id, contact.id, "Spring sale: 20% off", 0, now)
            assert delivery.result is not None
            await vis.recv_type("message", timeout=5, campaign_id=campaign.id)
            await vis.send(type="text", id="q2", content="nice, how long?")
            await collect_reply(vis)
        (_, second) = fake.requests
        assert second.body["messages"][1:] == [
            {"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi."},
            {"role": "assistant", "content": "Spring sale: 20% off"},
            {"role": "user", "content": "nice, how long?"}]
        counters = await cache_counters(srv)
        assert counters["invalidations"] == 1 and counters["misses"] == 2, counters
        srv.shutdown()


def _spec() -> CampaignSpec:
    return CampaignSpec(name="spring", kind=CampaignKind.TEMPLATE, body="Hello {name}",
                        sender_role=Role.AI, sender_id=None, sender_name="Assistant",
                        audience={"tags": ["vip"]}, concurrency=4, rate=10.0,
                        scheduled_at=None, fallback=None, max_tokens_total=None)
