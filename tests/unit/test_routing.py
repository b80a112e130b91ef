"""Routing decisions and the rate limiter, without an event loop."""

from __future__ import annotations

from datetime import UTC, datetime

from customer_service.core.models import Conversation, ConversationStatus, format_ts
from customer_service.core.ratelimit import TokenBucket
from customer_service.core.routing import agents_for_conversation, agents_for_event

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def conv(status: ConversationStatus, assigned_to: int | None = None) -> Conversation:
    return Conversation(1, 7, status, assigned_to, 0, 0, 0, NOW, NOW)


def test_waiting_conversations_go_to_every_online_agent() -> None:
    assert agents_for_conversation(conv(ConversationStatus.OPEN), {1, 2, 3}) == {1, 2, 3}


def test_assigned_conversations_go_to_the_assignee_and_watchers_online() -> None:
    assigned = conv(ConversationStatus.ASSIGNED, 2)
    assert agents_for_conversation(assigned, {1, 2, 3}) == {2}
    assert agents_for_conversation(assigned, {1, 2, 3}, {3, 9}) == {2, 3}
    assert agents_for_conversation(assigned, {1, 3}) == set()


def test_closed_conversations_stay_with_their_last_agent() -> None:
    assert agents_for_conversation(conv(ConversationStatus.CLOSED, 2), {1, 2}) == {2}
    assert agents_for_conversation(conv(ConversationStatus.CLOSED), {1, 2}) == {1, 2}


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5) is True
    assert bucket.allow(0.5) is False
    assert bucket.allow(10.0) is True
    assert bucket.tokens <= 3


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    assert format_ts(datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)) == "2026-03-04T05:06:07.891Z"


def test_waiting_messages_go_to_queue_followers_and_watchers_only() -> None:
    waiting = conv(ConversationStatus.OPEN)
    assert agents_for_conversation(waiting, {1, 2, 3}, {3}, queue={1}) == {1, 3}


def test_events_of_a_waiting_conversation_reach_the_queue() -> None:
    waiting = conv(ConversationStatus.OPEN)
    assert agents_for_event(None, waiting, {1, 2, 3}, queue={1, 2}) == {1, 2}


def test_leaving_the_queue_is_told_to_the_queue_once() -> None:
    before = conv(ConversationStatus.OPEN)
    after = conv(ConversationStatus.ASSIGNED, 3)
    assert agents_for_event(before, after, {1, 2, 3}, queue={1, 2}) == {1, 2, 3}


def test_events_of_assigned_conversations_stay_with_those_concerned() -> None:
    assigned = conv(ConversationStatus.ASSIGNED, 3)
    assert agents_for_event(None, assigned, {1, 2, 3, 4}, queue={1, 2}, watchers={4}) == {3, 4}
    moved = conv(ConversationStatus.ASSIGNED, 2)
    assert agents_for_event(assigned, moved, {1, 2, 3}, queue={1}) == {2, 3}
    offline = agents_for_event(assigned, moved, {1}, queue={1})
    assert offline == set()
