"""A database connection's own thread, running its units of work back to back.

``trio.to_thread.run_sync(..., limiter=CapacityLimiter(1))`` hands a connection from
one caller to the next through the event loop: the thread reports back, the caller's
task is rescheduled and releases the limiter, the next waiter is woken and only then
starts its own thread hop. Each unit of work so costs about two scheduling rounds of
the event loop, and under load a round is long (every runnable task runs once per
round): with thousands of busy sockets the database, idle most of the time, did a
few units per round and every deadline passed (9,000 visitors: 18 group commits in
a minute). Here the thread takes the next unit as soon as one ends; the event loop is
needed only to wake each caller, and those wake-ups are batched into one round.

Units run in arrival order (a deque, appended in the trio thread and popped here).
The queue holds at most one unit per waiting caller, each under its own deadline; a
caller cancelled before its unit starts (a deadline) abandons it and the thread skips
it; one cancelled while it runs gets control back at once, the unit's result is
dropped, and the store's own interrupt (``run_interruptible``) ends the statement.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import outcome
import trio

from customer_service.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Job(Generic[T]):
    fn: Callable[[], T]
    task: trio.lowlevel.Task
    token: trio.lowlevel.TrioToken
    abandoned: bool = False
    """Its caller was cancelled: skip it if it has not started, drop its result if it has."""


class WorkerThread:
    """One thread that runs the functions handed to ``run``, one at a time, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: deque[_Job[Any]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Units queued and not yet started (a measure of the database's backlog)."""
        return len(self._jobs)

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the thread after the units queued before it; return its result or
        raise its exception. Cancelled, the caller returns at once (see the module doc)."""
        if self._closing:
            raise StorageError(f"the database thread {self.name} is stopped")
        job: _Job[T] = _Job(fn, trio.lowlevel.current_task(),
                            trio.lowlevel.current_trio_token())
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            job.abandoned = True
            return trio.lowlevel.Abort.SUCCEEDED

        # The outcome passed to ``reschedule`` comes back unwrapped: a value or a raise.
        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closing:
                    self._ready.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
            if job.abandoned:
                continue
            result = outcome.capture(job.fn)
            try:
                job.token.run_sync_soon(self._deliver, job, result)
            except trio.RunFinishedError:
                log.warning("database thread %s finished a unit after the event loop ended",
                            self.name)

    @staticmethod
    def _deliver(job: _Job[T], result: outcome.Outcome[T]) -> None:
        # In the trio thread, like ``abort``: a cancelled caller's result is dropped.
        if not job.abandoned:
            trio.lowlevel.reschedule(job.task, result)

    async def aclose(self, timeout: float) -> bool:
        """Let the queued units finish, then end the thread; False if it did not end
        within ``timeout`` (a unit stuck in the driver: the thread is a daemon)."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        with trio.move_on_after(timeout):
            await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)
        return not self._thread.is_alive()
