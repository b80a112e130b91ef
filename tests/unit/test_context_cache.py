"""The session-state cache (``core.context_cache``): a window is always the last N
messages of the store, whatever the sequence of commits, lost messages, duplicates,
resyncs, fills racing with commits, and evictions."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_service.core.ai_context import build_context
from customer_service.core.context_cache import MESSAGE_OVERHEAD, ContextCache, WindowMessage
from customer_service.core.models import Role

WINDOW = 5
ROLES = (Role.VISITOR, Role.AI, Role.AGENT, Role.SYSTEM)


@dataclass
class Model:
    """The store, and which conversations lost a message the cache has not heard of."""

    rows: dict[int, list[WindowMessage]] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)

    def commit(self, cid: int, role: Role, content: str) -> WindowMessage:
        rows = self.rows.setdefault(cid, [])
        message = WindowMessage.of(len(rows) + 1, role, content)
        rows.append(message)
        return message

    def last(self, cid: int) -> list[WindowMessage]:
        return self.rows.get(cid, [])[-WINDOW:]


def read(cache: ContextCache, model: Model, cid: int) -> list[WindowMessage]:
    """What the edge does: the cached window, else one store read that is kept."""
    window = cache.get(cid)
    if window is not None:
        return list(window)
    token = cache.begin_fill(cid)
    rows = model.last(cid)
    cache.finish_fill(cid, token, rows)
    model.lost.discard(cid)
    return rows


def check(cache: ContextCache, model: Model) -> None:
    assert len(cache) <= cache.max_entries and cache.bytes <= cache.max_bytes
    total = 0
    for cid in list(model.rows):
        window = cache._windows.get(cid)
        if window is None:
            continue
        messages = list(window.messages)
        total += sum(m.size for m in messages)
        seqs = [m.seq for m in messages]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True
        if cid not in model.lost:
            assert messages == model.last(cid)
        else:  # a run of the store's messages, never one with a hole or a duplicate
            rows = model.rows[cid]
            assert messages == rows[seqs[0] - 1:seqs[-1]] if seqs else True
    assert total == cache.bytes


operation = st.one_of(
    st.tuples(st.just("commit"), st.integers(1, 4), st.sampled_from(ROLES),
              st.text(max_size=30)),
    st.tuples(st.just("lose"), st.integers(1, 4), st.sampled_from(ROLES), st.text(max_size=5)),
    st.tuples(st.just("duplicate"), st.integers(1, 4), st.integers(0, 10)),
    st.tuples(st.just("stale"), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("clear")),
    st.tuples(st.just("read"), st.integers(1, 4)),
    st.tuples(st.just("racing_fill"), st.integers(1, 4), st.integers(0, 7), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=60), st.integers(1, 3), st.integers(1, 8))
def test_a_cached_window_is_always_the_last_messages_of_the_store(
        operations: list[tuple[object, ...]], max_entries: int, max_kb: int) -> None:
    cache = ContextCache(max_entries=max_entries, max_bytes=max_kb * 200, window=WINDOW)
    model = Model()
    for op in operations:
        match op:
            case ("commit", int(cid), Role() as role, str(text)):
                message = model.commit(cid, role, text)
                cache.note(cid, message)
                if cid in model.lost and cid not in cache:
                    model.lost.discard(cid)  # the gap dropped it
            case ("lose", int(cid), Role() as role, str(text)):
                model.commit(cid, role, text)  # committed, never delivered here
                if cid in cache:
                    model.lost.add(cid)
            case ("duplicate", int(cid), int(back)):
                rows = model.rows.get(cid, [])
                if rows and cid not in model.lost:
                    cache.note(cid, rows[max(0, len(rows) - 1 - back)])
            case ("stale", int(cid), bool(whole)):
                # what the hub says after a resync or an outside write
                cache.drop(cid, upto=None if whole else len(model.rows.get(cid, [])))
                model.lost.discard(cid)
            case ("clear",):
                cache.clear()
                model.lost.clear()
            case ("read", int(cid)):
                got = read(cache, model, cid)
                if cid not in model.lost:
                    assert got == model.last(cid)
            case ("racing_fill", int(cid), int(during), bool(spoiled)):
                # commits land while the store is read (before or after its snapshot)
                token = cache.begin_fill(cid)
                snapshot = model.last(cid)
                for n in range(during):
                    cache.note(cid, model.commit(cid, Role.VISITOR, f"meanwhile {n}"))
                if spoiled:
                    cache.drop(cid)
                cache.finish_fill(cid, token, snapshot)
                model.lost.discard(cid)
        check(cache, model)


def test_a_fill_that_missed_a_commit_keeps_it_from_the_hub() -> None:
    cache = ContextCache(max_entries=10, max_bytes=1_000_000, window=3)
    token = cache.begin_fill(7)
    cache.note(7, WindowMessage.of(3, Role.VISITOR, "third"))  # committed during the read
    cache.finish_fill(7, token, [WindowMessage.of(1, Role.VISITOR, "one"),
                                 WindowMessage.of(2, Role.AI, "two")])
    window = cache.get(7)
    assert window is not None and [m.content for m in window] == ["one", "two", "third"]
    assert (cache.hits, cache.misses) == (1, 0)


def test_a_gap_drops_the_window_and_the_next_read_misses() -> None:
    cache = ContextCache(max_entries=10, max_bytes=1_000_000)
    cache.finish_fill(1, cache.begin_fill(1), [WindowMessage.of(1, Role.VISITOR, "a")])
    cache.note(1, WindowMessage.of(3, Role.VISITOR, "c"))
    assert cache.get(1) is None
    assert (cache.misses, cache.invalidations) == (1, 1)


def test_evictions_keep_the_bounds_least_recently_used_first() -> None:
    cache = ContextCache(max_entries=2, max_bytes=10 * (MESSAGE_OVERHEAD + 10))
    for cid in (1, 2):
        cache.finish_fill(cid, cache.begin_fill(cid), [WindowMessage.of(1, Role.VISITOR, "x")])
    assert cache.get(1) is not None  # 1 is now the most recent
    cache.finish_fill(3, cache.begin_fill(3), [WindowMessage.of(1, Role.VISITOR, "y")])
    assert 2 not in cache and 1 in cache and 3 in cache and cache.evictions == 1
    cache.finish_fill(4, cache.begin_fill(4), [WindowMessage.of(1, Role.VISITOR, "z" * 5000)])
    assert 4 not in cache and cache.bytes <= cache.max_bytes  # alone bigger than the cache


def test_messages_the_model_never_sees_keep_no_text_and_build_the_same_context() -> None:
    rows = [WindowMessage.of(1, Role.VISITOR, "hi"),
            WindowMessage.of(2, Role.SYSTEM, "Alice joined: a long system note"),
            WindowMessage.of(3, Role.AGENT, "hello")]
    assert rows[1].content == ""
    assert build_context("sys", rows, 1000) == [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        ContextCache(max_entries=0, max_bytes=1)
