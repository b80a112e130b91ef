"""A circuit breaker, retry delays and ``Retry-After``: pure, on times the caller passes.

closed ──N failures in a row──▶ open ──cooldown──▶ half-open (one trial call)
   ▲                                                   │
   └────────────── trial succeeds ─────────────────────┘ (fails: open again)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

RETRY_AFTER_STATUSES = frozenset({429, 503})
"""HTTP statuses whose ``Retry-After`` is honoured (RFC 9110 §10.2.3 names 503 and 429)."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int
    cooldown: float
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_running: bool = field(default=False)

    def allow(self, now: float) -> bool:
        """May a call go out at ``now``? Moves open → half-open after the cooldown."""
        if self.state is BreakerState.OPEN and now >= self.opened_at + self.cooldown:
            self.state = BreakerState.HALF_OPEN
            self.trial_running = False
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self.trial_running:
            self.trial_running = True
            return True
        return False

    def abandon(self) -> None:
        """A call that ended with neither success nor failure (cancelled): free the trial."""
        self.trial_running = False

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.trial_running = False

    def record_failure(self, now: float) -> None:
        self.failures += 1
        self.trial_running = False
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = BreakerState.OPEN
            self.opened_at = now

    def retry_in(self, now: float) -> float:
        """Seconds until a trial call is allowed (0 when calls may go out)."""
        if self.state is BreakerState.OPEN:
            return max(0.0, self.opened_at + self.cooldown - now)
        return 0.0


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None,
                rng: random.Random | None = None) -> float:
    """Delay before retry ``attempt`` (1, 2...): Retry-After when given (the upstream's word
    wins over ``cap``; the caller's deadline bounds it), else exponential backoff with jitter:
    a uniform draw between half and all of min(cap, base·2^(attempt-1))."""
    if retry_after is not None:
        return max(0.0, retry_after)
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling * (rng or _jitter).uniform(0.5, 1.0)


_jitter = random.Random()


def retry_after(status: int, value: str | None, now: datetime) -> float | None:
    """Seconds the upstream asked to wait before a retry, for a status that honours
    ``Retry-After`` (429, 503): delay-seconds or an HTTP date (``now`` is the current
    UTC time). None for other statuses, or when the header is absent or unreadable."""
    if status not in RETRY_AFTER_STATUSES or value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)  # delay-seconds; a fraction is read too, as servers send them
    except ValueError:
        pass
    else:  # negative, nan or inf: unreadable, so the usual backoff applies
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    wait = (moment - now).total_seconds()
    return wait if wait > 0 else None  # a date already past says nothing: back off as usual
