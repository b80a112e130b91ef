"""Whether the database is taking writes, judged from the writes themselves.

A ping answers while a table or row lock makes every write wait until its deadline,
so ``/healthz`` also asks this record: the database is *degraded* while a write has
failed or timed out within ``window`` seconds and none has succeeded since. Plain
code: the caller passes the clock.
"""

from __future__ import annotations

import math


class WriteHealth:
    __slots__ = ("failures", "last_failure", "last_success", "window")

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.last_failure = -math.inf
        self.last_success = -math.inf
        self.failures = 0
        """Failed or timed-out writes since the start (metrics)."""

    def succeeded(self, now: float) -> None:
        self.last_success = now

    def failed(self, now: float) -> None:
        self.last_failure = now
        self.failures += 1

    def degraded(self, now: float) -> bool:
        return now - self.last_failure < self.window and self.last_failure >= self.last_success
