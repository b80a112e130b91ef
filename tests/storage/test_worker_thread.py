"""The database connection's own thread (``storage.worker_thread``)."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from customer_service.errors import StorageError
from customer_service.storage.worker_thread import WorkerThread


async def test_units_run_in_arrival_order_in_one_thread_and_return_or_raise() -> None:
    worker = WorkerThread("test")
    ran: list[tuple[int, str]] = []

    def unit(n: int) -> int:
        ran.append((n, threading.current_thread().name))
        return n * n

    results: dict[int, int] = {}
    async with trio.open_nursery() as nursery:
        async def call(n: int) -> None:
            results[n] = await worker.run(lambda: unit(n))
        for n in range(50):
            nursery.start_soon(call, n)
            await trio.sleep(0)  # arrival order = start order
    assert [n for n, _ in ran] == list(range(50))
    assert {name for _, name in ran} == {"test"}
    assert results == {n: n * n for n in range(50)}

    def fails() -> None:
        raise ValueError("from the thread")

    with pytest.raises(ValueError, match="from the thread"):
        await worker.run(fails)
    assert await worker.aclose(5)


async def _hold(worker: WorkerThread, nursery: trio.Nursery) -> threading.Event:
    """Occupy the thread with a unit that waits for the returned event."""
    entered, gate = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        gate.wait(5)

    nursery.start_soon(worker.run, hold)
    while not entered.is_set():
        await trio.sleep(0.01)
    return gate


async def test_the_next_unit_starts_without_waiting_for_the_event_loop() -> None:
    """Units queued together run back to back even while the event loop is blocked."""
    worker = WorkerThread("test")
    started: list[float] = []
    async with trio.open_nursery() as nursery:
        gate = await _hold(worker, nursery)
        for _ in range(20):
            nursery.start_soon(worker.run, lambda: started.append(time.monotonic()))
        while worker.waiting < 20:
            await trio.sleep(0.01)
        gate.set()
        time.sleep(0.5)  # noqa: ASYNC251 - the event loop is stuck on purpose
        assert len(started) == 20
    assert await worker.aclose(5)


async def test_a_caller_cancelled_before_its_unit_starts_skips_it() -> None:
    worker = WorkerThread("test")
    release = threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        release.wait(5)
        ran.append("blocker")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run, blocker)
        await trio.sleep(0.05)
        with trio.move_on_after(0.05) as scope:
            await worker.run(lambda: ran.append("skipped"))
        assert scope.cancelled_caught
        release.set()
    assert await worker.run(lambda: "after") == "after"
    assert ran == ["blocker"]
    assert await worker.aclose(5)


async def test_a_caller_cancelled_while_its_unit_runs_gets_control_back_at_once() -> None:
    worker = WorkerThread("test")
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(5)
        finished.set()
        return "late"

    started = trio.current_time()
    with trio.move_on_after(0.1) as scope:
        await worker.run(slow)
    assert scope.cancelled_caught and trio.current_time() - started < 2
    assert not finished.is_set()
    release.set()
    # The unit still ended in the thread; its result went nowhere; the thread goes on.
    assert await worker.run(lambda: 7) == 7
    assert finished.is_set()
    assert await worker.aclose(5)


async def test_close_lets_queued_units_finish_then_refuses_more() -> None:
    worker = WorkerThread("test")
    done: list[int] = []
    async with trio.open_nursery() as nursery:
        gate = await _hold(worker, nursery)
        for n in range(5):
            nursery.start_soon(worker.run, lambda n=n: done.append(n))
            while worker.waiting < n + 1:
                await trio.sleep(0.01)
        gate.set()
        assert await worker.aclose(5)
    assert done == list(range(5))
    with pytest.raises(StorageError, match="stopped"):
        await worker.run(lambda: None)


async def test_close_gives_up_on_a_stuck_unit() -> None:
    worker = WorkerThread("test")
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run, lambda: release.wait(5))
        await trio.sleep(0.05)
        assert not await worker.aclose(0.2)
        release.set()
