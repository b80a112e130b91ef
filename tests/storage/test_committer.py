"""Group commit over every backend (see conftest.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest
import trio
import trio.testing

from customer_service.core.models import AppendResult, NewMessage, Role
from customer_service.errors import NotFound, StorageError
from customer_service.storage.base import Store
from customer_service.storage.committer import open_group_committer


class GatedStore:
    """Delegates to a real store; ``append_messages`` waits for ``gate`` and records batches."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.gate = trio.Event()
        self.gate.set()
        self.batches: list[int] = []
        self.entered = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append_messages(self, batch: Sequence[NewMessage]) -> list[AppendResult]:
        self.entered.set()
        await self.gate.wait()
        self.batches.append(len(batch))
        return await self._inner.append_messages(batch)


def says(conversation_id: int, content: str, client_id: str | None = None) -> NewMessage:
    return NewMessage(conversation_id=conversation_id, sender_role=Role.VISITOR, sender_id=None,
                      sender_name="Vera", content=content, client_id=client_id)


async def new_conversation(store: Store, token: str = "t") -> int:
    visitor = await store.create_visitor(f"hash-{token}", "Vera", "", "")
    return (await store.current_conversation(visitor.id)).id


async def test_concurrent_appends_are_batched_and_each_caller_gets_its_seq(store: Store) -> None:
    a = await new_conversation(store, "a")
    b = await new_conversation(store, "b")
    results: dict[str, AppendResult] = {}

    async with open_group_committer(store, max_batch=64) as committer:
        async def send(conversation_id: int, content: str) -> None:
            results[content] = await committer.append(says(conversation_id, content))

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(send, a if i % 2 else b, f"m{i}")

    assert len(results) == 100
    assert committer.messages_committed == 100
    assert committer.batches_committed < 100
    for cid in (a, b):
        stored = await store.messages_after(cid, 0)
        assert [m.seq for m in stored] == list(range(1, 51))
        for message in stored:
            assert results[message.content].message == message


async def test_order_within_a_conversation_follows_arrival(store: Store) -> None:
    cid = await new_conversation(store)
    gated = GatedStore(store)
    gated.gate = trio.Event()
    seqs: dict[int, int] = {}

    async with open_group_committer(cast(Store, gated), max_batch=8) as committer:
        async def send(i: int) -> None:
            seqs[i] = (await committer.append(says(cid, f"m{i}"))).message.seq

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(send, i)
                await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()

    assert [seqs[i] for i in range(30)] == list(range(1, 31))
    assert [m.content for m in await store.messages_after(cid, 0)] == [f"m{i}" for i in range(30)]
    assert gated.batches[0] == 1
    assert max(gated.batches) == 8


async def test_resend_through_the_committer_returns_the_original(store: Store) -> None:
    cid = await new_conversation(store)
    async with open_group_committer(store, max_batch=16) as committer:
        first = await committer.append(says(cid, "hi", client_id="c1"))
        again = await committer.append(says(cid, "hi", client_id="c1"))
    assert again.duplicate and again.message == first.message
    assert committer.messages_committed == 1


async def test_unknown_conversation_fails_only_its_caller(store: Store) -> None:
    cid = await new_conversation(store)
    gated = GatedStore(store)
    gated.gate = trio.Event()
    outcomes: dict[str, object] = {}

    async with open_group_committer(cast(Store, gated), max_batch=16) as committer:
        async def send(conversation_id: int, content: str) -> None:
            try:
                result = await committer.append(says(conversation_id, content))
            except NotFound as exc:
                outcomes[content] = exc
            else:
                outcomes[content] = result.message.seq

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, cid, "first")
            await gated.entered.wait()
            for content, target in [("good1", cid), ("bad", cid + 100), ("good2", cid)]:
                nursery.start_soon(send, target, content)
                await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()

    assert outcomes["first"] == 1
    assert outcomes["good1"] == 2
    assert isinstance(outcomes["bad"], NotFound)
    assert outcomes["good2"] == 3


async def test_shutdown_drains_queued_items(store: Store) -> None:
    cid = await new_conversation(store)
    gated = GatedStore(store)
    gated.gate = trio.Event()
    seqs: list[int] = []

    async def send(committer_append: Any, i: int) -> None:
        seqs.append((await committer_append(says(cid, f"m{i}"))).message.seq)

    async def open_gate_soon() -> None:
        await trio.sleep(0.05)
        gated.gate.set()

    async with trio.open_nursery() as nursery:
        async with open_group_committer(cast(Store, gated), max_batch=4) as committer:
            for i in range(12):
                nursery.start_soon(send, committer.append, i)
            await trio.testing.wait_all_tasks_blocked()
            assert seqs == []
            nursery.start_soon(open_gate_soon)
        assert committer.closed
        assert sorted(seqs) == list(range(1, 13))
        with pytest.raises(StorageError):
            await committer.append(says(cid, "too late"))

    assert len(await store.messages_after(cid, 0)) == 12


async def test_shutdown_by_cancellation_still_drains(store: Store) -> None:
    cid = await new_conversation(store)
    gated = GatedStore(store)
    gated.gate = trio.Event()
    acked: list[int] = []

    async def send(committer_append: Any, i: int) -> None:
        acked.append((await committer_append(says(cid, f"m{i}"))).message.seq)

    async def open_gate_soon() -> None:
        await trio.sleep(0.05)
        gated.gate.set()

    async with trio.open_nursery() as outer:
        outer.start_soon(open_gate_soon)
        with trio.CancelScope() as scope:
            async with open_group_committer(cast(Store, gated), max_batch=4) as committer:
                for i in range(6):
                    outer.start_soon(send, committer.append, i)
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert sorted(acked) == list(range(1, 7))
    stored = await store.messages_after(cid, 0)
    assert [m.seq for m in stored] == list(range(1, 7))


async def test_cancelled_queued_caller_is_not_stored(store: Store) -> None:
    cid = await new_conversation(store)
    gated = GatedStore(store)
    gated.gate = trio.Event()
    victim_scope = trio.CancelScope()
    results: list[AppendResult] = []

    async with open_group_committer(cast(Store, gated), max_batch=8) as committer:
        async def send(content: str) -> None:
            results.append(await committer.append(says(cid, content)))

        async def victim() -> None:
            with victim_scope:
                await committer.append(says(cid, "victim"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "in flight")
            await gated.entered.wait()
            nursery.start_soon(victim)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(send, "after")
            await trio.testing.wait_all_tasks_blocked()
            victim_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            gated.gate.set()

    assert victim_scope.cancelled_caught
    contents = [m.content for m in await store.messages_after(cid, 0)]
    assert contents == ["in flight", "after"]
    assert [r.message.seq for r in results] == [1, 2]


async def test_store_failure_fails_every_caller_of_the_batch(store: Store) -> None:
    class BrokenStore(GatedStore):
        async def append_messages(self, batch: Sequence[NewMessage]) -> list[AppendResult]:
            raise StorageError("disk on fire")

    cid = await new_conversation(store)
    failures: list[Exception] = []
    async with open_group_committer(cast(Store, BrokenStore(store)), max_batch=8) as committer:
        async def send(i: int) -> None:
            try:
                await committer.append(says(cid, f"m{i}"))
            except StorageError as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(send, i)
    assert len(failures) == 5
    assert len({id(exc) for exc in failures}) == 5
    assert committer.batches_committed == 0


async def test_on_commit_sees_every_batch_in_order_before_callers_resume(store: Store) -> None:
    cid = await new_conversation(store)
    seen: list[int] = []
    acked_before_fanout: list[int] = []

    def on_commit(results: Sequence[AppendResult]) -> None:
        seen.extend(r.message.seq for r in results)

    async with open_group_committer(store, max_batch=8, on_commit=on_commit) as committer:
        async def send(i: int) -> None:
            seq = (await committer.append(says(cid, f"m{i}"))).message.seq
            if seq not in seen:
                acked_before_fanout.append(seq)

        async with trio.open_nursery() as nursery:
            for i in range(40):
                nursery.start_soon(send, i)
    assert seen == list(range(1, 41))
    assert acked_before_fanout == []


async def test_a_failing_on_commit_does_not_fail_callers(store: Store) -> None:
    cid = await new_conversation(store)

    def on_commit(results: Sequence[AppendResult]) -> None:
        raise RuntimeError("fan-out bug")

    async with open_group_committer(store, max_batch=8, on_commit=on_commit) as committer:
        result = await committer.append(says(cid, "still stored"))
    assert result.message.seq == 1
