"""AI replies end to end: the real server, real sockets, a fake OpenAI-compatible upstream."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from customer_service.config import Config
from customer_service.server.run import Server, open_server
from tests.fakes.openai_server import FakeOpenAI, Script, open_fake_openai
from tests.integration.helpers import (
    Client,
    agent_socket,
    http_url,
    make_agent,
    open_ws,
    visitor,
)

API_KEY = "sk-test-key"
UNAVAILABLE = "The assistant is unavailable right now. An agent will reply as soon as possible."


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with open_fake_openai(api_key=API_KEY) as upstream:
        yield upstream


def ai_config(config: Config, fake: FakeOpenAI, **ai: Any) -> Config:
    settings = {"enabled": True, "base_url": fake.base_url, "api_key": API_KEY,
                "model": "test-model", "system_prompt": "You help.", "first_token_timeout": 3.0,
                "idle_timeout": 0.5, "retry_base_delay": 0.01, "retry_max_delay": 0.2,
                "max_retries": 1, "breaker_failures": 50, "prewarm_connections": 1,
                "http2": False} | ai
    return config.with_changes(**{f"ai__{k}": v for k, v in settings.items()})


@pytest.fixture
async def ai_server(config: Config, fake: FakeOpenAI) -> AsyncIterator[Server]:
    async with open_server(ai_config(config, fake)) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def collect_reply(client: Client, timeout: float = 5) -> tuple[list[dict[str, Any]],
                                                                      dict[str, Any]]:
    """The ai_delta frames of one reply, then its stored message; other frames stay queued."""
    deltas: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    try:
        with trio.fail_after(timeout):
            while True:
                frame = await client.recv(timeout)
                if frame["type"] == "ai_delta":
                    deltas.append(frame)
                elif frame["type"] == "message" and frame["sender"]["role"] == "ai":
                    return deltas, frame
                else:
                    skipped.append(frame)
    finally:
        client.backlog[0:0] = skipped


async def test_a_reply_streams_in_order_and_is_stored_whole(ai_server: Server,
                                                            fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=["Our", " prices", " start", " at", " $5."], chunk_delay=0.01))
    _, token = await make_agent(ai_server, "alice")
    async with visitor(ai_server) as (vis, welcome), agent_socket(ai_server, token) as (agent, _):
        await vis.send(type="text", id="q", content="How much is it?")
        deltas, final = await collect_reply(vis)
        assert [d["delta"] for d in deltas] == ["Our", " prices", " start", " at", " $5."]
        assert {d["stream_id"] for d in deltas} == {final["stream_id"]}
        assert final["content"] == "Our prices start at $5."
        assert final["sender"] == {"role": "ai", "name": "Assistant"}
        agent_deltas, agent_final = await collect_reply(agent)
        assert "".join(d["delta"] for d in agent_deltas) == agent_final["content"]
    (request,) = fake.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["stream"] is True and request.body["model"] == "test-model"
    assert request.body["messages"] == [{"role": "system", "content": "You help."},
                                        {"role": "user", "content": "How much is it?"}]
    stored = await ai_server.service.store.messages_after(welcome["conversation_id"], 0)
    assert [(m.sender_role.value, m.content) for m in stored] == [
        ("visitor", "How much is it?"), ("ai", "Our prices start at $5.")]


async def test_health_reports_ai_ok_after_prewarming(ai_server: Server, fake: FakeOpenAI) -> None:
    with trio.fail_after(3):
        while ai_server.service.ai is None or ai_server.service.ai.client.prewarmed is None:
            await trio.sleep(0.01)
    async with httpx.AsyncClient() as http:
        health = (await http.get(http_url(ai_server, "/healthz"))).json()
    assert health["ai"] == "ok"
    assert fake.models_requests >= 1


async def test_a_visitor_who_leaves_mid_stream_gets_the_reply_by_replay(
        ai_server: Server, fake: FakeOpenAI) -> None:
    tokens = [f"t{n} " for n in range(15)]
    fake.script(Script(tokens=tokens, chunk_delay=0.03))
    async with visitor(ai_server) as (vis, welcome):
        await vis.send(type="text", id="q", content="tell me a story")
        ack = await vis.recv_type("ack", id="q")
        await vis.recv_type("ai_delta")
    (request,) = await fake.wait_for_requests(1)
    with trio.fail_after(5):
        await request.finished.wait()
    assert request.completed
    async with visitor(ai_server, visitor_token=welcome["visitor_token"],
                       last_seq=ack["seq"]) as (back, _):
        replayed = await back.recv_type("message")
        assert replayed["sender"]["role"] == "ai" and replayed["content"] == "".join(tokens)


async def test_an_agent_accepting_cancels_the_stream_and_keeps_what_was_shown(
        ai_server: Server, fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=[f"w{n} " for n in range(100)], chunk_delay=0.05))
    _, token = await make_agent(ai_server, "alice")
    async with visitor(ai_server) as (vis, welcome), agent_socket(ai_server, token) as (agent, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="q", content="hello?")
        await vis.recv_type("ai_delta")
        await vis.recv_type("ai_delta")
        await agent.send(type="accept", id="take", conversation_id=cid)
        await agent.recv_type("ack", id="take")
        (request,) = fake.requests
        with trio.fail_after(2):
            await request.finished.wait()
        assert request.cancelled
        _, final = await collect_reply(vis)
        shown = "".join(f["delta"] for f in vis.seen if f["type"] == "ai_delta")
        assert final["content"] == shown and 0 < len(shown) < len("w0 ") * 100
        await vis.recv_type("message", content="Alice joined the conversation")
        await vis.send(type="text", id="q2", content="thanks")
        await vis.recv_type("ack", id="q2")
        await trio.sleep(0.2)
        assert len(fake.requests) == 1, "no AI reply once an agent has the conversation"
        assert not [f for f in vis.backlog if f["type"] == "ai_delta"]
    stored = await ai_server.service.store.messages_after(cid, 0)
    assert [m.sender_role.value for m in stored][:3] == ["visitor", "ai", "system"], (
        "the partial reply is stored before the join note, as the visitor saw it")


async def test_a_message_during_a_stream_gets_one_follow_up_reply(
        ai_server: Server, fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=["first ", "answer"], chunk_delay=0.1), Script(tokens=["second"]))
    async with visitor(ai_server) as (vis, _):
        await vis.send(type="text", id="a", content="question one")
        await vis.recv_type("ai_delta")
        await vis.send(type="text", id="b", content="question two")
        await vis.send(type="text", id="c", content="question three")
        _, first = await collect_reply(vis)
        _, second = await collect_reply(vis)
    assert (first["content"], second["content"]) == ("first answer", "second")
    assert len(fake.requests) == 2
    follow_up = [m["content"] for m in fake.requests[1].body["messages"]]
    assert follow_up[1:] == ["question one", "question two", "question three", "first answer"]


async def expect_unavailable(vis: Client) -> dict[str, Any]:
    note = await vis.recv_type("message", content=UNAVAILABLE, timeout=8)
    assert note["sender"]["role"] == "system"
    return note


@pytest.mark.parametrize("script", [
    pytest.param(Script(status=500), id="5xx twice"),
    pytest.param(Script(status=401), id="4xx"),
    pytest.param(Script(first_token_delay=5.0), id="no first token in time"),
    pytest.param(Script(garbage_after=0), id="malformed SSE"),
    pytest.param(Script(reset_after=0), id="connection reset"),
    pytest.param(Script(send_done=False, finish_reason="", tokens=[]), id="stream ends early"),
    pytest.param(Script(tokens=[], finish_reason="content_filter"), id="content filter"),
    pytest.param(Script(tokens=[], finish_reason="stop"), id="empty reply"),
    pytest.param(Script(tokens=[" ", "\n", "\t "], finish_reason="stop"), id="whitespace only"),
])
async def test_failures_before_any_text_tell_the_visitor_and_flag_the_conversation(
        config: Config, fake: FakeOpenAI, script: Script) -> None:
    fake.script(script, script)
    cfg = ai_config(config, fake, first_token_timeout=1.0)
    async with open_server(cfg) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        _, token = await make_agent(srv, "alice")
        async with visitor(srv) as (vis, welcome), agent_socket(srv, token) as (agent, _):
            await vis.send(type="text", id="q", content="hello")
            await vis.recv_type("ack", id="q")
            await expect_unavailable(vis)
            flagged = await agent.recv_type(
                "conversation", where=lambda f: f["conversation"]["needs_agent"], timeout=8)
            assert flagged["conversation"]["conversation_id"] == welcome["conversation_id"]
            assert flagged["conversation"]["ai_streaming"] is False  # the stream is over
            assert not [f for f in vis.seen if f["type"] == "message"
                        and f["sender"]["role"] == "ai"]
            assert not [f for f in vis.seen + agent.seen if f["type"] == "ai_delta"]
        stored = await srv.service.store.messages_after(welcome["conversation_id"], 0)
        assert [m.content for m in stored] == ["hello", UNAVAILABLE]
        assert (await srv.service.store.get_conversation(welcome["conversation_id"])
                ).needs_agent  # type: ignore[union-attr]
        srv.shutdown()


@pytest.mark.parametrize("script", [
    pytest.param(Script(tokens=["a ", "b ", "c "], stall_after=2), id="stall mid-stream"),
    pytest.param(Script(tokens=["a ", "b ", "c "], reset_after=2), id="reset mid-stream"),
    pytest.param(Script(tokens=["a ", "b ", "c "], garbage_after=2), id="garbage mid-stream"),
])
async def test_failures_mid_stream_keep_the_partial_reply_then_explain(
        ai_server: Server, fake: FakeOpenAI, script: Script) -> None:
    fake.script(script)
    async with visitor(ai_server) as (vis, welcome):
        await vis.send(type="text", id="q", content="hello")
        deltas, partial = await collect_reply(vis)
        assert partial["content"] == "a b " == "".join(d["delta"] for d in deltas)
        await expect_unavailable(vis)
    assert len(fake.requests) == 1, "no retry after the first token"
    stored = await ai_server.service.store.messages_after(welcome["conversation_id"], 0)
    assert [m.sender_role.value for m in stored] == ["visitor", "ai", "system"]


async def test_429_with_retry_after_is_retried_then_answered(ai_server: Server,
                                                           fake: FakeOpenAI) -> None:
    fake.script(Script(status=429, retry_after="0.3"), Script(tokens=["ok"]))
    async with visitor(ai_server) as (vis, _):
        await vis.send(type="text", id="q", content="hello")
        _, final = await collect_reply(vis)
    assert final["content"] == "ok"
    first, second = fake.requests
    assert second.started_at - first.started_at >= 0.3


async def test_context_is_trimmed_to_the_newest_messages_that_fit(config: Config,
                                                                  fake: FakeOpenAI) -> None:
    fake.default = Script(tokens=["k"])
    cfg = ai_config(config, fake, max_context_tokens=120, mode="always")
    async with open_server(cfg) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv) as (vis, _):
            for n in range(12):
                await vis.send(type="text", id=f"m{n}", content=f"message number {n:02d} " * 3)
                await collect_reply(vis)
        last = fake.requests[-1].body["messages"]
        assert last[0] == {"role": "system", "content": "You help."}
        assert last[-1]["content"].startswith("message number 11")
        assert 3 <= len(last) < 24
        contents = [m["content"] for m in last[1:]]
        assert "message number 00 " * 3 not in contents
        srv.shutdown()


async def test_the_breaker_opens_reports_degraded_then_recovers(config: Config,
                                                               fake: FakeOpenAI) -> None:
    cfg = ai_config(config, fake, breaker_failures=2, breaker_cooldown=0.5, max_retries=0,
                    mode="always")
    fake.script(Script(status=503), Script(status=503))
    async with open_server(cfg) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv) as (vis, _), httpx.AsyncClient() as http:
            for n in range(2):
                await vis.send(type="text", id=f"f{n}", content="hello")
                await expect_unavailable(vis)
            health = (await http.get(http_url(srv, "/healthz"))).json()
            assert health["ai"] == "degraded"
            metrics = (await http.get(http_url(srv, "/metrics"))).text
            assert "cs_ai_breaker_open 1.0" in metrics
            assert 'cs_ai_errors_total{kind="circuit_open"}' not in metrics
            await vis.send(type="text", id="blocked", content="hello")
            await expect_unavailable(vis)
            assert len(fake.requests) == 2, "no call while the breaker is open"
            await trio.sleep(0.6)
            await vis.send(type="text", id="trial", content="hello")
            _, final = await collect_reply(vis)
            assert final["content"] == "Hello from the fake!"
            health = (await http.get(http_url(srv, "/healthz"))).json()
            assert health["ai"] == "ok"
            metrics = (await http.get(http_url(srv, "/metrics"))).text
            assert "cs_ai_breaker_open 0.0" in metrics
            assert 'cs_ai_errors_total{kind="circuit_open"} 1.0' in metrics
            assert "cs_ai_first_token_seconds_count" in metrics
            assert 'cs_ai_replies_total{outcome="completed"} 1.0' in metrics
        srv.shutdown()


@pytest.mark.parametrize("script", [
    pytest.param(Script(first_token_delay=4.0), id="silent before the first token"),
    pytest.param(Script(headers_delay=4.0), id="no response headers"),
])
async def test_first_token_timeout_bounds_the_wait_whatever_idle_timeout_says(
        config: Config, fake: FakeOpenAI, script: Script) -> None:
    fake.script(script)
    cfg = ai_config(config, fake, first_token_timeout=1.0, idle_timeout=10.0, max_retries=0)
    async with open_server(cfg) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv) as (vis, _):
            started = trio.current_time()
            await vis.send(type="text", id="q", content="hello")
            await expect_unavailable(vis)
            assert trio.current_time() - started < 2.5
        srv.shutdown()



async def test_a_reply_cut_at_the_length_cap_still_answers_the_queued_message(
        config: Config, fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=["0123456789"] * 5, chunk_delay=0.05), Script(tokens=["short"]))
    cfg = ai_config(config, fake, max_reply_tokens=1)
    async with open_server(cfg) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv) as (vis, _):
            await vis.send(type="text", id="a", content="question one")
            await vis.recv_type("ai_delta")
            await vis.send(type="text", id="b", content="question two")
            _, cut = await collect_reply(vis)
            _, follow_up = await collect_reply(vis)
        assert cut["content"] == "0123456789" and follow_up["content"] == "short"
        metrics = await metrics_text(srv)
        assert 'cs_ai_replies_total{outcome="completed"} 2.0' in metrics, (
            "a reply cut at the length cap counts as complete, as docs/ai.md says")
        assert 'outcome="cancelled"' not in metrics and 'outcome="failed"' not in metrics
        srv.shutdown()


async def test_health_recovers_from_a_failed_prewarm_after_a_good_reply(
        ai_server: Server, fake: FakeOpenAI) -> None:
    responder = ai_server.service.ai
    assert responder is not None
    with trio.fail_after(3):
        while responder.client.prewarmed is None:
            await trio.sleep(0.01)
    responder.client.prewarmed = False
    async with httpx.AsyncClient() as http, visitor(ai_server) as (vis, _):
        assert (await http.get(http_url(ai_server, "/healthz"))).json()["ai"] == "degraded"
        await vis.send(type="text", id="q", content="hello")
        await collect_reply(vis)
        assert (await http.get(http_url(ai_server, "/healthz"))).json()["ai"] == "ok"


async def serve_undecodable(stream: trio.SocketStream) -> None:
    """An upstream that claims gzip and sends bytes that are not gzip."""
    async with stream:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            received += chunk
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                              b"content-encoding: gzip\r\ncontent-length: 10\r\n\r\n0123456789")


async def test_an_undecodable_upstream_body_fails_the_reply_not_the_server(
        config: Config) -> None:
    async with trio.open_nursery() as upstream:
        (listener,) = await upstream.start(
            partial(trio.serve_tcp, serve_undecodable, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        cfg = config.with_changes(
            ai__enabled=True, ai__base_url=f"http://127.0.0.1:{port}/v1", ai__max_retries=0,
            ai__prewarm_connections=0, ai__http2=False, ai__first_token_timeout=3.0)
        async with open_server(cfg) as srv, trio.open_nursery() as nursery:
            await nursery.start(srv.serve)
            async with visitor(srv) as (vis, _):
                await vis.send(type="text", id="q", content="hello")
                await expect_unavailable(vis)
            async with visitor(srv) as (other, _):
                await other.send(type="ping", id="still-up")
                await other.recv_type("pong", id="still-up")
            srv.shutdown()
        upstream.cancel_scope.cancel()


class SlowCommits:
    """The first commit of "slow question" takes 0.6 s."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._slowed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append_messages(self, batch: Any) -> Any:
        if not self._slowed and any(m.content == "slow question" for m in batch):
            self._slowed = True
            await trio.sleep(0.6)
        return await self._inner.append_messages(batch)


async def test_a_message_whose_handler_timed_out_after_commit_is_still_answered(
        config: Config, fake: FakeOpenAI) -> None:
    cfg = ai_config(config, fake).with_changes(server__message_timeout=0.3)
    async with open_server(cfg, wrap_store=SlowCommits) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        async with visitor(srv) as (vis, _):
            await vis.send(type="text", id="q", content="slow question")
            assert (await vis.recv_type("error", id="q"))["error"] == "timeout"
            _, reply = await collect_reply(vis)
            assert reply["content"] == "Hello from the fake!"
            await vis.send(type="text", id="q", content="slow question")
            resent = await vis.recv_type("ack", id="q")
            await trio.sleep(0.3)
        assert len(fake.requests) == 1, "the duplicate starts no second reply"
        assert resent["seq"] == 1
        srv.shutdown()


def assert_every_stream_ended(client: Client) -> None:
    """Every ``stream_id`` the client saw in an ``ai_delta`` ended in a stored message
    carrying it (which replaces the deltas on screen)."""
    for index, frame in enumerate(client.seen):
        if frame["type"] == "ai_delta":
            assert any(later["type"] == "message" and later.get("stream_id") == frame["stream_id"]
                       for later in client.seen[index + 1:]), f"{frame} never ended"


async def metrics_text(server: Server) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(http_url(server, "/metrics"))).text


@pytest.mark.parametrize("chunk_delay", [0.0, 0.1], ids=["end with the whitespace", "end later"])
async def test_a_whitespace_only_reply_shows_nothing_and_alerts_an_agent(
        ai_server: Server, fake: FakeOpenAI, chunk_delay: float) -> None:
    fake.script(Script(tokens=[" ", "\n\n", "  "], chunk_delay=chunk_delay))
    _, token = await make_agent(ai_server, "alice")
    async with visitor(ai_server) as (vis, welcome), agent_socket(ai_server, token) as (agent, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="q", content="hello")
        await expect_unavailable(vis)
        await agent.recv_type("conversation", where=lambda f: f["conversation"]["needs_agent"])
        await vis.nothing_more(0.2)
        for client in (vis, agent):
            assert not [f for f in client.seen if f["type"] == "ai_delta"]
            assert_every_stream_ended(client)
    stored = await ai_server.service.store.messages_after(cid, 0)
    assert [m.content for m in stored] == ["hello", UNAVAILABLE]
    conversation = await ai_server.service.store.get_conversation(cid)
    assert conversation is not None and conversation.needs_agent
    metrics = await metrics_text(ai_server)
    assert 'cs_ai_errors_total{kind="empty_reply"} 1.0' in metrics
    assert 'cs_ai_replies_total{outcome="failed"} 1.0' in metrics


@pytest.mark.parametrize("script", [
    pytest.param(Script(tokens=["  ", "\n", "Hi", " there"], chunk_delay=0.05),
                 id="whitespace then text"),
    pytest.param(Script(tokens=["Hi", " there", "  ", "\n"], chunk_delay=0.05),
                 id="text then whitespace"),
])
async def test_whitespace_around_text_streams_and_is_stored_whole(
        ai_server: Server, fake: FakeOpenAI, script: Script) -> None:
    fake.script(script)
    async with visitor(ai_server) as (vis, welcome):
        await vis.send(type="text", id="q", content="hello")
        deltas, final = await collect_reply(vis)
        assert final["content"] == "".join(script.tokens) == "".join(d["delta"] for d in deltas)
        assert deltas[0]["delta"].strip(), "no delta that shows nothing"
        assert_every_stream_ended(vis)
    stored = await ai_server.service.store.messages_after(welcome["conversation_id"], 0)
    assert [m.content for m in stored] == ["hello", "".join(script.tokens)]


async def test_whitespace_then_a_failure_shows_nothing_and_explains(
        ai_server: Server, fake: FakeOpenAI) -> None:
    fake.script(Script(tokens=[" ", "\n", "x"], chunk_delay=0.05, reset_after=2))
    async with visitor(ai_server) as (vis, welcome):
        await vis.send(type="text", id="q", content="hello")
        await expect_unavailable(vis)
        assert not [f for f in vis.seen if f["type"] == "ai_delta"]
    stored = await ai_server.service.store.messages_after(welcome["conversation_id"], 0)
    assert [m.content for m in stored] == ["hello", UNAVAILABLE]


@pytest.mark.parametrize("script", [
    pytest.param(Script(content_type="Text/Event-Stream"), id="mixed case"),
    pytest.param(Script(content_type="TEXT/EVENT-STREAM; charset=utf-8"), id="with charset"),
    pytest.param(Script(bom=True, role_chunk=False, keepalive_comments=False),
                 id="byte-order mark before the first token"),
    pytest.param(Script(bom=True), id="byte-order mark before a comment"),
])
async def test_compatible_stream_variants_are_read_whole(ai_server: Server, fake: FakeOpenAI,
                                                         script: Script) -> None:
    fake.script(script)
    async with visitor(ai_server) as (vis, _):
        await vis.send(type="text", id="q", content="hello")
        deltas, final = await collect_reply(vis)
    assert final["content"] == "Hello from the fake!" == "".join(d["delta"] for d in deltas)
    assert len(fake.requests) == 1


def http_date(seconds_from_now: float) -> str:
    return formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(("retry_after", "at_least"), [
    pytest.param("0.6", 0.6, id="delay-seconds"),
    pytest.param(None, 1.4, id="HTTP-date"),  # whole seconds: 1.5 to 2.5 s from now
])
async def test_503_with_retry_after_is_retried_after_that_delay(
        ai_server: Server, fake: FakeOpenAI, retry_after: str | None, at_least: float) -> None:
    # retry_max_delay is 0.2 s here: a wait of 0.6 s or more can only come from the header.
    fake.script(Script(status=503, retry_after=retry_after or http_date(2.5)),
                Script(tokens=["ok"]))
    async with visitor(ai_server) as (vis, _):
        await vis.send(type="text", id="q", content="hello")
        _, final = await collect_reply(vis)
    assert final["content"] == "ok"
    first, second = fake.requests
    assert second.started_at - first.started_at >= at_least


async def test_a_503_retry_after_beyond_the_first_token_budget_fails_at_once(
        ai_server: Server, fake: FakeOpenAI) -> None:
    fake.script(Script(status=503, retry_after="30"))
    async with visitor(ai_server) as (vis, _):
        started = trio.current_time()
        await vis.send(type="text", id="q", content="hello")
        await expect_unavailable(vis)
        assert trio.current_time() - started < 2.0, "no waiting past first_token_timeout"
    assert len(fake.requests) == 1


REPO = Path(__file__).resolve().parents[2]


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMER_SERVICE_")}


def _command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "customer_service", "--config", str(config), *args]


@asynccontextmanager
async def server_process(config: Path, output: Path) -> AsyncIterator[tuple[trio.Process, int]]:
    """``customer-service serve`` in its own process; yields it and its port once it listens."""
    with output.open("wb") as out:
        proc = await trio.lowlevel.open_process(_command(config, "serve"), stdout=out,
                                                stderr=subprocess.STDOUT, cwd=REPO,
                                                env=_server_env())
    printed = trio.Path(output)
    try:
        with trio.fail_after(30):
            while not (found := re.search(rb"http://127\.0\.0\.1:(\d+)/healthz",
                                          await printed.read_bytes())):
                assert proc.poll() is None, await printed.read_text(errors="replace")
                await trio.sleep(0.05)
        yield proc, int(found.group(1))
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await proc.wait()


async def test_a_reply_cut_by_shutdown_is_kept_with_the_note_and_flag_after_a_restart(
        fake: FakeOpenAI, tmp_path: Path) -> None:
    tokens = [f"w{n} " for n in range(400)]
    fake.script(Script(tokens=tokens, chunk_delay=0.05))
    config = tmp_path / "cs.toml"
    config.write_text(
        f'[storage]\nsqlite_path = "{tmp_path / "cs.db"}"\n\n'
        "[server]\nhost = \"127.0.0.1\"\nport = 0\nshutdown_timeout = 2.0\n\n"
        f'[ai]\nenabled = true\nbase_url = "{fake.base_url}"\napi_key = "{API_KEY}"\n'
        'model = "test-model"\nprewarm_connections = 0\nhttp2 = false\n\n'
        "[auto_replies]\nwelcome = {}\n")  # the messages below begin with the visitor's
    await trio.run_process(_command(config, "db", "migrate"), capture_stdout=True,
                           capture_stderr=True, cwd=REPO, env=_server_env())
    await trio.run_process(_command(config, "agents", "add", "alice", "--password-stdin"),
                           stdin=b"correct horse battery\n", capture_stdout=True,
                           capture_stderr=True, cwd=REPO, env=_server_env())

    first_log = tmp_path / "first.log"
    async with server_process(config, first_log) as (proc, port), \
            open_ws(f"ws://127.0.0.1:{port}/ws/visitor") as ws:
        vis = Client(ws)
        await vis.send(type="hello")
        cid = (await vis.recv_type("welcome"))["conversation_id"]
        await vis.send(type="text", id="q", content="tell me everything")
        await vis.recv_type("ai_delta")
        await vis.recv_type("ai_delta")
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):  # shutdown_timeout + the 5 s to store, and a margin
            assert await proc.wait() == 0
    shown = "".join(f["delta"] for f in vis.seen if f["type"] == "ai_delta")
    (request,) = fake.requests
    with trio.fail_after(2):
        await request.finished.wait()
    assert request.cancelled, "the upstream request is closed at shutdown"
    assert "Traceback" not in await trio.Path(first_log).read_text()

    async with server_process(config, tmp_path / "second.log") as (proc, port), \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _attempt in range(3):  # a just-started server's first password check (two
            # scrypt runs: the dummy hash is made then) can miss the 3 s on a loaded machine
            login = await http.post("/api/v1/login", json={"username": "alice",
                                                           "password": "correct horse battery"})
            if login.status_code != 504:
                break
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        listed = (await http.get("/api/v1/conversations", headers=auth)).json()
        (conversation,) = [c for c in listed["conversations"] if c["conversation_id"] == cid]
        assert conversation["needs_agent"], "an agent must follow up after the restart"
        messages = (await http.get(f"/api/v1/conversations/{cid}/messages",
                                   headers=auth)).json()["messages"]
        assert [m["sender"]["role"] for m in messages] == ["visitor", "ai", "system"]
        partial_reply, note = messages[1], messages[2]
        assert partial_reply["content"].startswith(shown) and shown
        assert "".join(tokens).startswith(partial_reply["content"])
        assert len(partial_reply["content"]) < len("".join(tokens))
        assert {f["stream_id"] for f in vis.seen if f["type"] == "ai_delta"} == {
            partial_reply["stream_id"]}
        assert note["content"] == UNAVAILABLE
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await proc.wait() == 0
