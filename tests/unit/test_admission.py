"""Admission control's decisions, without an event loop (``core.admission``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.admission import (
    BACKOFF,
    DECREASE_EVERY,
    INITIAL_LIMIT,
    MAX_LIMIT,
    MIN_LIMIT,
    RETRY_MAX,
    RETRY_MIN,
    RetryPacer,
    TextAdmission,
)


def test_takes_texts_up_to_the_limit_then_refuses() -> None:
    admission = TextAdmission(target=0.5)
    taken = sum(admission.try_enter(0.0) for _ in range(INITIAL_LIMIT + 10))
    assert taken == INITIAL_LIMIT
    assert admission.in_flight == INITIAL_LIMIT
    admission.leave(0.01, 0.01)  # answered in time while the limit was in use: +1
    assert admission.limit == INITIAL_LIMIT + 1
    assert admission.try_enter(0.02)
    assert admission.try_enter(0.02)
    assert not admission.try_enter(0.02)


def test_off_takes_everything() -> None:
    admission = TextAdmission(target=0)
    assert all(admission.try_enter(0.0) for _ in range(MAX_LIMIT + 5))


def test_late_answers_shrink_the_limit_once_per_interval() -> None:
    admission = TextAdmission(target=0.5)
    for _ in range(100):
        admission.try_enter(0.0)
    # A group commit acks a hundred late texts at once: one decrease, not a hundred.
    for _ in range(100):
        admission.leave(2.0, 2.0)
    assert admission.limit == INITIAL_LIMIT * BACKOFF
    admission.try_enter(2.0)
    admission.leave(2.0, 2.0 + DECREASE_EVERY)
    assert admission.limit == INITIAL_LIMIT * BACKOFF * BACKOFF


def test_the_limit_never_falls_under_its_floor() -> None:
    admission = TextAdmission(target=0.1)
    now = 0.0
    for _ in range(200):
        admission.try_enter(now)
        now += DECREASE_EVERY
        admission.leave(5.0, now)
    assert admission.limit == MIN_LIMIT
    assert sum(admission.try_enter(now) for _ in range(MIN_LIMIT + 3)) == MIN_LIMIT


def test_timely_answers_grow_the_limit_only_while_it_is_used() -> None:
    admission = TextAdmission(target=0.5, limit=20)
    admission.try_enter(0.0)
    admission.leave(0.01, 0.01)  # 1 in flight of 20: not in use, no growth
    assert admission.limit == 20
    for _ in range(15):
        admission.try_enter(0.0)
    admission.leave(0.01, 0.01)  # 15 of 20: in use
    assert admission.limit == 21


def test_cancel_frees_the_place_without_a_sample() -> None:
    admission = TextAdmission(target=0.5, limit=20)
    for _ in range(15):
        admission.try_enter(0.0)
    admission.cancel()
    assert admission.in_flight == 14
    assert admission.limit == 20


def test_retry_interval_settles_where_refusals_match_completions() -> None:
    pacer = RetryPacer()
    now = 0.0
    intervals = []
    # 160 clients waiting, each knocking once per retry interval, 16 texts completing a
    # second: they should come back every 160 / 16 = 10 s.
    for _ in range(12):
        for _ in range(round(160 / pacer.interval)):
            pacer.refused(now)
        for _ in range(16):
            pacer.completed(now)
        now += 1.0
        pacer.completed(now)  # rolls the window
        intervals.append(pacer.interval)
    assert intervals[0] < 5.0
    assert all(9.0 < interval <= 11.0 for interval in intervals[-4:])
    # Nobody refused any more: the interval halves each second down to its floor.
    for _ in range(10):
        now += 1.0
        pacer.completed(now)
    assert pacer.interval == RETRY_MIN


def test_retry_after_is_jittered_around_the_interval() -> None:
    pacer = RetryPacer(interval=4.0)
    assert pacer.retry_after(0.0) == 3.0
    assert pacer.retry_after(0.5) == 4.0
    assert pacer.retry_after(0.99) == 4.98


@given(st.floats(RETRY_MIN, RETRY_MAX), st.floats(0, 1, exclude_max=True))
def test_retry_after_stays_within_what_the_protocol_promises(interval: float, draw: float
                                                             ) -> None:
    """docs/protocol.md: ``retry_after`` is 1 to 60 s, jitter included."""
    assert RETRY_MIN <= RetryPacer(interval=interval).retry_after(draw) <= RETRY_MAX


@given(st.lists(st.tuples(st.sampled_from(["enter", "leave", "cancel"]),
                          st.floats(0, 10), st.floats(0, 3)), max_size=400))
def test_bounds_hold_whatever_happens(steps: list[tuple[str, float, float]]) -> None:
    admission = TextAdmission(target=0.5)
    now = 0.0
    taken = 0
    for kind, latency, gap in steps:
        now += gap
        if kind == "enter":
            taken += admission.try_enter(now)
        elif taken:
            taken -= 1
            if kind == "leave":
                admission.leave(latency, now)
            else:
                admission.cancel()
        assert admission.in_flight == taken
        assert MIN_LIMIT <= admission.limit <= MAX_LIMIT
        assert admission.in_flight <= max(int(admission.limit), taken)
        assert RETRY_MIN <= admission.pacer.interval <= RETRY_MAX
