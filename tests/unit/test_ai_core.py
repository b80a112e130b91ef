"""The AI's pure parts: context window, stream chunks, breaker, retry delays and
Retry-After, how a reply ends."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from customer_service.core.ai_context import build_context, estimate_tokens
from customer_service.core.ai_outcome import CUT_AT_LENGTH, SHUTDOWN, ReplyEnd, reply_end
from customer_service.core.breaker import (
    BreakerState,
    CircuitBreaker,
    retry_after,
    retry_delay,
)
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


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_read_on_429_and_503_in_both_forms(status: int) -> None:
    assert retry_after(status, "3", NOW) == 3.0
    assert retry_after(status, " 0.5 ", NOW) == 0.5
    assert retry_after(status, "-4", NOW) is None  # not 1*DIGIT: the usual backoff, not "now"
    later = format_datetime(NOW + timedelta(seconds=7), usegmt=True)
    assert later.endswith("GMT")
    assert retry_after(status, later, NOW) == 7.0
    # A date already past says nothing about when to come back: the usual backoff.
    assert retry_after(status, format_datetime(NOW - timedelta(hours=1), usegmt=True), NOW) is None
    assert retry_after(status, "Wed, 21 Oct 2015 07:28:00 GMT", NOW) is None
    for unreadable in ("soon", "", "nan", "inf", "Wed, 99 Foo 2015"):
        assert retry_after(status, unreadable, NOW) is None
    assert retry_after(status, None, NOW) is None


@pytest.mark.parametrize("status", [500, 502, 504, 408, 409, 400])
def test_retry_after_is_ignored_on_other_statuses(status: int) -> None:
    assert retry_after(status, "3", NOW) is None


def test_an_upstream_503_delay_comes_from_its_retry_after() -> None:
    assert retry_delay(1, 0.01, 0.2, retry_after(503, "2", NOW)) == 2.0
    assert retry_delay(1, 0.01, 0.2, retry_after(500, "2", NOW)) <= 0.01


def test_a_reply_that_finishes_with_text_is_completed_and_stored() -> None:
    assert reply_end(failed=False, stopped_by=None, text="Hello") == ReplyEnd(
        "completed", store_text=True, alert=False, follow_up=True, empty=False)


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", "\u3000"])
@pytest.mark.parametrize("stopped_by", [None, CUT_AT_LENGTH])
def test_a_reply_with_no_visible_text_is_a_failure_that_alerts(text: str,
                                                               stopped_by: str | None) -> None:
    end = reply_end(failed=False, stopped_by=stopped_by, text=text)
    assert end == ReplyEnd("failed", store_text=False, alert=True, follow_up=False, empty=True)


def test_a_reply_cut_at_the_length_cap_counts_as_completed() -> None:
    assert reply_end(failed=False, stopped_by=CUT_AT_LENGTH, text="0123456789") == ReplyEnd(
        "completed", store_text=True, alert=False, follow_up=True, empty=False)


@pytest.mark.parametrize(("text", "stored"), [("a b ", True), ("  ", False), ("", False)])
def test_a_failed_reply_stores_its_visible_part_and_alerts(text: str, stored: bool) -> None:
    assert reply_end(failed=True, stopped_by=None, text=text) == ReplyEnd(
        "failed", store_text=stored, alert=True, follow_up=False, empty=False)


@pytest.mark.parametrize(("text", "stored"), [("partial", True), ("", False)])
def test_a_reply_cut_by_shutdown_is_stored_with_the_note_and_flag(text: str,
                                                                  stored: bool) -> None:
    assert reply_end(failed=False, stopped_by=SHUTDOWN, text=text) == ReplyEnd(
        "cancelled", store_text=stored, alert=True, follow_up=False, empty=False)


def test_an_agent_taking_over_cancels_without_alerting() -> None:
    assert reply_end(failed=False, stopped_by="an agent took over", text="partial") == ReplyEnd(
        "cancelled", store_text=True, alert=False, follow_up=False, empty=False)
    assert not reply_end(failed=False, stopped_by="an agent took over", text="").store_text


@pytest.mark.parametrize("nesting", ["[" * 5000, '{"a":' * 5000,
                                     '{"choices":[' + "[" * 5000])
def test_a_deeply_nested_chunk_is_a_bad_response_not_a_recursion_error(nesting: str) -> None:
    with pytest.raises(AiBadResponse):
        parse_chunk(nesting)


def test_a_reply_the_content_filter_cut_keeps_its_text_and_asks_for_an_agent() -> None:
    end = reply_end(failed=False, stopped_by=None, text="Here is how to", finish_reason="content_filter")
    assert end == ReplyEnd("failed", store_text=True, alert=True, follow_up=False, empty=False)


@pytest.mark.parametrize("text", ["\u00a0\u200b", "\ufeff \t", "\u200d\u2060"])
def test_invisible_characters_only_are_an_empty_reply(text: str) -> None:
    end = reply_end(failed=False, stopped_by=None, text=text)
    assert end.empty and end.alert and not end.store_text
