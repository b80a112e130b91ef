"""The sequencer: in order, no gap, no repeat, without an event loop."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from customer_service.core.sequencer import Gap, Sequencer


def test_in_order_messages_pass_straight_through() -> None:
    seq: Sequencer[str] = Sequencer()
    assert seq.offer(1, 1, "m1", 0.0) == ["m1"]
    assert seq.offer(1, 2, "m2", 0.0) == ["m2"]
    assert seq.delivered(1) == 2
    assert not seq.gapped


def test_repeats_and_older_messages_are_dropped() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.offer(1, 1, "m1", 0.0)
    seq.offer(1, 2, "m2", 0.0)
    assert seq.offer(1, 2, "again", 0.0) == []
    assert seq.offer(1, 1, "older", 0.0) == []


def test_an_unknown_conversation_starts_where_it_is_first_seen() -> None:
    seq: Sequencer[str] = Sequencer()
    assert seq.offer(7, 40, "m40", 0.0) == ["m40"]
    assert seq.offer(7, 41, "m41", 0.0) == ["m41"]


def test_a_message_beyond_a_gap_waits_for_the_missing_one() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.seed(1, 4)
    assert seq.offer(1, 6, "m6", 10.0) == []
    assert seq.gapped
    assert seq.due(10.01, wait=0.05) == []
    assert seq.next_due(0.05) == 10.05
    assert seq.offer(1, 5, "m5", 10.02) == ["m5", "m6"]
    assert not seq.gapped
    assert seq.next_due(0.05) is None


def test_a_gap_that_does_not_close_by_itself_is_due_for_the_database() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.seed(1, 4)
    seq.offer(1, 7, "m7", 10.0)
    seq.offer(1, 8, "m8", 10.01)
    assert seq.due(10.06, wait=0.05) == [Gap(1, 4, 8)]
    # the fill offers what the database has, in order, including what was held
    filled = [m for n in (5, 6, 7, 8) for m in seq.offer(1, n, f"db{n}", 10.07)]
    assert filled == ["db5", "db6", "m7", "m8"]
    assert seq.delivered(1) == 8 and not seq.gapped


def test_seed_does_not_move_a_known_conversation() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.offer(1, 1, "m1", 0.0)
    seq.seed(1, 0)
    assert seq.offer(1, 1, "again", 0.0) == []
    seq.seed(2, 9)
    assert seq.offer(2, 10, "m10", 0.0) == ["m10"]


def test_a_resync_horizon_opens_a_gap_due_at_once() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.offer(1, 3, "m3", 0.0)
    seq.note_horizon(1, 5, 100.0)
    assert seq.due(100.0, wait=0.05) == [Gap(1, 3, 5)]
    seq.note_horizon(2, 9, 100.0)  # unknown conversation: nobody here waits for it
    assert [g.conversation_id for g in seq.due(100.0, wait=0.05)] == [1]


def test_the_horizon_message_arriving_last_closes_the_gap() -> None:
    """Regression: the missing message was exactly the horizon and nothing was held."""
    seq: Sequencer[str] = Sequencer()
    seq.offer(1, 20, "m20", 0.0)
    seq.note_horizon(1, 21, 1.0)
    assert seq.offer(1, 21, "m21", 1.0) == ["m21"]
    assert not seq.gapped
    assert seq.due(2.0, wait=0.05) == []


def test_too_many_held_messages_are_dropped_and_read_again() -> None:
    seq: Sequencer[str] = Sequencer(max_held=2)
    seq.seed(1, 0)
    for n in range(2, 6):
        assert seq.offer(1, n, f"m{n}", 0.0) == []
    assert seq.due(1.0, wait=0.05) == [Gap(1, 0, 5)]
    assert seq.offer(1, 1, "m1", 1.0) == ["m1", "m2", "m3"]  # 4 and 5 were dropped
    assert seq.gapped
    assert seq.due(1.0, wait=0.0) == [Gap(1, 3, 5)]


def test_a_failed_fill_is_retried_later() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.seed(1, 0)
    seq.offer(1, 3, "m3", 0.0)
    seq.retry_later(1, 1.0, 2.0)
    assert seq.due(2.0, wait=0.05) == []
    assert seq.due(3.06, wait=0.05) == [Gap(1, 0, 3)]


def test_abandoning_a_gap_drops_what_the_database_does_not_have() -> None:
    """A forged seq far ahead must not move delivery past what really exists."""
    seq: Sequencer[str] = Sequencer()
    seq.offer(1, 12, "m12", 0.0)
    seq.offer(1, 10**12, "forged", 0.0)
    seq.abandon_gap(1)
    assert seq.delivered(1) == 12 and not seq.gapped
    assert seq.offer(1, 13, "m13", 0.0) == ["m13"]


def test_a_conversation_the_database_does_not_know_is_forgotten() -> None:
    seq: Sequencer[str] = Sequencer()
    seq.offer(99, 1, "ghost", 0.0)
    seq.offer(99, 3, "ghost3", 0.0)
    seq.forget(99)
    assert not seq.gapped and seq.delivered(99) is None


def test_capacity_forgets_old_conversations_but_not_pinned_or_gapped_ones() -> None:
    pinned = {1}
    seq: Sequencer[str] = Sequencer(capacity=3, pinned=pinned.__contains__)
    seq.offer(1, 1, "a", 0.0)
    seq.seed(2, 0)
    seq.offer(2, 5, "gapped", 0.0)
    for cid in range(3, 10):
        seq.offer(cid, 1, "x", 0.0)
    assert seq.delivered(1) == 1
    assert seq.delivered(2) == 0
    assert len(seq) <= 4


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32),
       st.floats(min_value=0.0, max_value=0.6))
def test_any_arrival_order_and_loss_ends_in_order_after_fills(count: int, seed: int,
                                                              loss: float) -> None:
    """Messages arrive shuffled (bounded reordering), some never; fills from the
    'database' then complete the sequence: each seq handed on once, in order."""
    rng = random.Random(seed)
    arrivals = [n for n in range(1, count + 1) if rng.random() >= loss]
    for i in range(len(arrivals) - 1):  # local swaps: the bus reorders a little
        if rng.random() < 0.3:
            arrivals[i], arrivals[i + 1] = arrivals[i + 1], arrivals[i]
    seq: Sequencer[int] = Sequencer(max_held=8)
    seq.seed(1, 0)
    out: list[int] = []
    now = 0.0
    for n in arrivals:
        now += 0.01
        out += seq.offer(1, n, n, now)
    seq.note_horizon(1, count, now)  # a resync learns where the conversation ends
    for _ in range(count + 1):
        gaps = seq.due(now + 1.0, wait=0.05)
        if not gaps:
            break
        for gap in gaps:
            for n in range(gap.after + 1, gap.until + 1):
                out += seq.offer(1, n, n, now)
    assert out == list(range(1, count + 1))
    assert not seq.gapped
