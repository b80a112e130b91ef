"""Attacks on SQLite's own thread (``storage.worker_thread``) and the store around it:
a late interrupt, odd exceptions, cancellation racing delivery, close, open/close cycles."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from customer_service.errors import StorageError
from customer_service.storage._sql import Tx
from customer_service.storage.sqlite import open_sqlite_store
from customer_service.storage.worker_thread import WorkerThread

ROWS = 3_000_000
LONG_QUERY = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
              f"WHERE x < {ROWS}) SELECT count(*) FROM c")
"""About a second of SQLite work in one statement."""


class LateInterrupt:
    """The store's sqlite3 connection, except that ``interrupt()`` is slow to arrive: the
    thread switch that can fall between the store's "is that unit still running?" check
    and the call. Meanwhile the running unit ends and the worker starts the next one."""

    def __init__(self, conn: sqlite3.Connection, first_may_end: threading.Event,
                 second_started: threading.Event) -> None:
        self._conn = conn
        self._first_may_end = first_may_end
        self._second_started = second_started

    def interrupt(self) -> None:
        self._first_may_end.set()
        if self._second_started.wait(1):
            time.sleep(0.2)  # the second unit is inside its statement now
        self._conn.interrupt()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_a_late_interrupt_never_hits_the_next_unit(tmp_path: Path) -> None:
    """A caller whose deadline passes interrupts its own unit only: the next unit (a group
    commit of hundreds of texts, say) must not fail with "interrupted" because the worker
    moved on to it between the check and ``conn.interrupt()``."""
    first_running, first_may_end = threading.Event(), threading.Event()
    second_started = threading.Event()

    def first(tx: Tx) -> str:
        first_running.set()
        first_may_end.wait(5)
        return "first"

    def second(tx: Tx) -> int:
        second_started.set()
        row = tx.one(LONG_QUERY)
        assert row is not None
        return int(row[0])

    async with open_sqlite_store(tmp_path / "cs.db") as store:
        real = store._conn
        assert real is not None
        store._conn = LateInterrupt(real, first_may_end, second_started)  # type: ignore[assignment]
        results: dict[str, object] = {}

        async def second_caller() -> None:
            try:
                results["second"] = await store._run(second, write=False)
            except StorageError as exc:
                results["second"] = exc

        try:
            async with trio.open_nursery() as nursery:
                async def first_caller() -> None:
                    with trio.move_on_after(0.3):
                        await store._run(first, write=False)
                nursery.start_soon(first_caller)
                while not first_running.is_set():
                    await trio.sleep(0.01)
                nursery.start_soon(second_caller)
                while store._worker.waiting < 1:
                    await trio.sleep(0.01)
        finally:
            store._conn = real
    assert results["second"] == ROWS


class Odd(BaseException):
    """Not an ``Exception``: a unit might still raise it (``SystemExit`` in a driver)."""


async def test_a_unit_raising_a_base_exception_reaches_its_caller_and_the_thread_goes_on(
        ) -> None:
    worker = WorkerThread("attack")

    def odd() -> None:
        raise Odd("odd")

    with pytest.raises(Odd):
        await worker.run(odd)
    assert await worker.run(lambda: 42) == 42
    assert await worker.aclose(5)


async def test_cancel_racing_delivery_gives_a_result_or_cancelled_never_both() -> None:
    """The unit ends while the event loop is blocked past its caller's deadline: when the
    loop comes back the delivery and the cancellation are both due. The caller gets one
    of them; the thread and the next callers are unaffected."""
    worker = WorkerThread("attack")
    outcomes: list[str] = []
    for n in range(40):
        ended = threading.Event()

        def unit(n: int = n, ended: threading.Event = ended) -> int:
            ended.set()
            return n

        with trio.move_on_after(0.01) as scope:
            got = await worker.run(unit)
            outcomes.append("result")
            assert got == n
        if scope.cancelled_caught:
            outcomes.append("cancelled")
        # Block the loop until after both are due (once as the unit ends, once just after).
        ended.wait(5)
        time.sleep(0.02)  # noqa: ASYNC251 - the race needs a stuck event loop
        assert await worker.run(lambda n=n: n * 2) == n * 2
    assert len(outcomes) == 40
    assert await worker.aclose(5)


async def test_closing_the_store_while_units_wait_runs_them_then_refuses(tmp_path: Path) -> None:
    gate = threading.Event()
    async with open_sqlite_store(tmp_path / "cs.db") as store:
        await store.migrate()
        results: list[object] = []

        def hold(tx: Tx) -> str:
            gate.wait(5)
            return "held"

        async def call(work: Any) -> None:
            try:
                results.append(await store._run(work, write=False))
            except StorageError as exc:
                results.append(type(exc).__name__)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, hold)
            while store._worker.waiting or store._unit is None:
                await trio.sleep(0.01)
            for _ in range(3):
                nursery.start_soon(call, lambda tx: tx.one("SELECT 1")[0])
            while store._worker.waiting < 3:
                await trio.sleep(0.01)
            nursery.start_soon(store.aclose)
            await trio.sleep(0.05)
            gate.set()
        # (trio wakes the callers of one batch in no set order)
        assert sorted(map(str, results)) == ["1", "1", "1", "held"]
        with pytest.raises(StorageError):
            await store.schema_version()


async def test_no_thread_or_connection_is_left_behind_across_many_opens(tmp_path: Path) -> None:
    def sqlite_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("sqlite ")]

    before = len(sqlite_threads())
    for n in range(40):
        async with open_sqlite_store(tmp_path / f"cs{n % 3}.db") as store:
            await store.migrate()
            assert await store.schema_version() > 0
    assert len(sqlite_threads()) == before
    # The files are closed: another process may take an exclusive lock on each.
    for n in range(3):
        conn = sqlite3.connect(tmp_path / f"cs{n}.db", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        conn.close()
