"""The AI's pure parts: context window, stream chunks, breaker and retry delays."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from customer_service.core.ai_context import build_context, estimate_tokens
from customer_service.core.breaker import BreakerState, CircuitBreaker, retry_delay
from customer_service.core.models import Role, StoredMessage
from customer_service.core.openai_stream import parse_chunk
from customer_service.errors import AiBadResponse

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def message(seq: int, role: Role, content: str) -> StoredMessage:
    return StoredMessage(1, seq, role, None, role.value, content, NOW)


def test_context_keeps_the_system_prompt_and_maps_roles() -> None:
    history = [message(1, Role.VISITOR, "hi"), message(2, Role.SYSTEM, "Alice joined"),
               message(3, Role.AGENT, "hello"), message(4, Role.AI, "how can I help?")]
    assert build_context("be nice", history, 1000) == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "assistant", "content": "how can I help?"},
    ]


def test_context_keeps_the_newest_messages_that_fit() -> None:
    history = [message(n, Role.VISITOR, f"message {n:03d} " + "x" * 36) for n in range(1, 101)]
    context = build_context("sys", history, 200)
    kept = [m["content"][:11] for m in context[1:]]
    assert kept == [f"message {n:03d}" for n in range(100 - len(kept) + 1, 101)]
    used = sum(estimate_tokens(m["content"]) + 4 for m in context)
    assert used <= 200 and len(kept) >= 3


def test_an_oversized_newest_message_is_cut_from_the_front_not_dropped() -> None:
    context = build_context("sys", [message(1, Role.VISITOR, "a" * 10_000 + "THE END")], 100)
    assert context[-1]["content"].endswith("THE END")
    assert estimate_tokens(context[-1]["content"]) < 100


def chunk(content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return json.dumps({"id": "c", "object": "chat.completion.chunk",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_stream_chunks_give_their_text_and_finish_reason() -> None:
    assert parse_chunk(chunk("Hel")).text == "Hel"
    assert parse_chunk(chunk(None, "stop")).finish_reason == "stop"
    role_only = json.dumps({"choices": [{"delta": {"role": "assistant"}}]})
    assert parse_chunk(role_only).text == ""
    assert parse_chunk(json.dumps({"choices": [], "usage": {"total_tokens": 3}})).text == ""
    nulls = json.dumps({"choices": [{"delta": {"content": None}, "finish_reason": None}]})
    assert parse_chunk(nulls).text == ""


@pytest.mark.parametrize("data", ["{not json", "[1,2]", '{"choices": "no"}', '"text"'])
def test_malformed_chunks_are_an_ai_error(data: str) -> None:
    with pytest.raises(AiBadResponse):
        parse_chunk(data)


def test_an_error_event_mid_stream_is_an_ai_error() -> None:
    with pytest.raises(AiBadResponse, match="overloaded"):
        parse_chunk(json.dumps({"error": {"message": "overloaded", "type": "server_error"}}))


def test_breaker_opens_after_n_failures_then_allows_one_trial() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=10)
    for t in range(3):
        assert breaker.allow(float(t))
        breaker.record_failure(float(t))
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow(5.0)
    assert breaker.retry_in(5.0) == pytest.approx(7.0)
    assert breaker.allow(12.5)
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow(12.6), "only one trial at a time"
    breaker.record_failure(13.0)
    assert breaker.state is BreakerState.OPEN and not breaker.allow(14.0)
    assert breaker.allow(23.5)
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow(23.6)


def test_a_cancelled_trial_frees_the_half_open_breaker() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=1)
    breaker.record_failure(0.0)
    assert breaker.allow(2.0) and not breaker.allow(2.1)
    breaker.abandon()
    assert breaker.allow(2.2)


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=10)
    breaker.record_failure(0.0)
    breaker.record_success()
    breaker.record_failure(1.0)
    assert breaker.state is BreakerState.CLOSED


def test_retry_delays_back_off_with_jitter_and_honour_retry_after() -> None:
    rng = random.Random(7)
    delays = [retry_delay(n, 0.5, 8.0, rng=rng) for n in (1, 2, 3, 4, 5, 6)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert retry_delay(1, 0.5, 8.0, retry_after=3.0) == 3.0
    assert retry_delay(1, 0.5, 8.0, retry_after=60.0) == 60.0
