"""How fast a campaign calls the AI upstream, and what it does when a call fails.

Pure: every method takes the time (``now``, seconds on any monotonic clock); nothing
sleeps here.

**The rate.** ``Pacer`` lets one request go at a time, and the next one no sooner than
``1 / current_rate`` seconds after the previous one *actually went* (a bucket of capacity
one, refilled when a request goes, not when it was planned): a late request never lets
the next ones bunch up behind it, so the upstream sees at most ``rate`` requests in any
one-second window. A safety margin of ``MARGIN`` absorbs the jitter of the network
between the two clocks.

**429.** A ``Retry-After`` (or ``DEFAULT_PAUSE`` without one) pauses the *whole*
campaign until then, and halves the current rate (down to ``rate / FLOOR_DIVISOR``).
Every other 429 that arrives during that pause came from a request sent before it and
changes nothing more. Then, after each ``RECOVER_EVERY`` seconds without a 429, the rate
grows back by ``rate / RECOVER_STEPS`` (additive increase) up to ``rate``.

**Retries.** ``RetryPolicy.decide`` says what to do with a failed attempt: 5xx, network
errors, timeouts and empty replies are retried after exponential backoff with jitter
until ``max_attempts``; 429s are retried (they do not use up attempts, up to
``max_rate_limited``); other 4xx are final. A final failure goes to the fallback text
when the campaign has one, else the recipient is ``failed``. 401, 403 and 404 say the
campaign's configuration is wrong (key, model, URL): the campaign pauses rather than
fail every recipient.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from customer_service.core.breaker import retry_delay

MARGIN = 0.98
"""Requests go at 98 % of the rate asked for: the upstream's clock sees the network's
jitter on top of ours."""
DEFAULT_PAUSE = 5.0
"""Seconds the campaign pauses after a 429 without (a readable) Retry-After."""
MAX_PAUSE = 600.0
"""The longest pause a Retry-After can impose at once."""
FLOOR_DIVISOR = 16.0
RECOVER_EVERY = 1.0
RECOVER_STEPS = 10.0


class Pacer:
    """The campaign-wide request rate (see the module docstring)."""

    def __init__(self, rate: float, *, concurrency: int = 1) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.current = rate
        self.floor = rate / FLOOR_DIVISOR
        self.concurrency = concurrency
        self.paused_until = 0.0
        self.rate_limited_count = 0
        self._next_at = 0.0
        self._last_change = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._in_flight_area = 0.0
        self._in_flight_since = 0.0
        self._in_flight_started: float | None = None

    @property
    def interval(self) -> float:
        return 1.0 / (self.current * MARGIN)

    def delay(self, now: float) -> float:
        """Seconds until the next request may go (0: now)."""
        return max(0.0, self._next_at - now, self.paused_until - now)

    def sent(self, now: float) -> None:
        """A request went at ``now`` (call only when ``delay(now)`` is 0)."""
        self._next_at = now + self.interval
        self._recover(now)

    def rate_limited(self, now: float, retry_after: float | None) -> float:
        """The upstream answered 429: pause everyone, slow down. Returns the pause's end."""
        self.rate_limited_count += 1
        if now < self.paused_until:
            return self.paused_until  # sent before the pause began: already accounted for
        wait = DEFAULT_PAUSE if retry_after is None else min(max(retry_after, 0.0), MAX_PAUSE)
        self.paused_until = now + wait
        self.current = max(self.floor, self.current / 2)
        self._last_change = self.paused_until
        self._next_at = max(self._next_at, self.paused_until)
        return self.paused_until

    def _recover(self, now: float) -> None:
        if self.current >= self.rate:
            return
        steps = int((now - self._last_change) / RECOVER_EVERY)
        if steps > 0:
            self.current = min(self.rate, self.current + steps * self.rate / RECOVER_STEPS)
            self._last_change += steps * RECOVER_EVERY

    # -- requests in flight (for the progress figures) --------------------------------------
    def begin(self, now: float) -> None:
        self._account(now)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self, now: float) -> None:
        self._account(now)
        self.in_flight -= 1

    def _account(self, now: float) -> None:
        if self._in_flight_started is None:
            self._in_flight_started = now
        else:
            self._in_flight_area += self.in_flight * (now - self._in_flight_since)
        self._in_flight_since = now

    def average_in_flight(self, now: float) -> float:
        if self._in_flight_started is None or now <= self._in_flight_started:
            return 0.0
        area = self._in_flight_area + self.in_flight * (now - self._in_flight_since)
        return area / (now - self._in_flight_started)


class Failure(StrEnum):
    RATE_LIMITED = "rate_limited"
    RETRYABLE = "retryable"
    """5xx, network error, timeout, an empty or malformed reply."""
    FINAL = "final"
    """A 4xx that a retry will not change (a prompt too long...)."""
    CONFIG = "config"
    """401, 403, 404: the key, the model or the URL is wrong for every recipient."""


class Action(StrEnum):
    RETRY = "retry"
    GIVE_UP = "give_up"
    """Fallback text, or the recipient fails."""
    STOP_CAMPAIGN = "stop_campaign"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0
    """Seconds before the retry (besides any campaign-wide pause)."""


def classify_status(status: int) -> Failure:
    if status == 429:
        return Failure.RATE_LIMITED
    if status in (401, 403, 404):
        return Failure.CONFIG
    if status >= 500 or status in (408, 409):
        return Failure.RETRYABLE
    return Failure.FINAL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    """Attempts per recipient, 429s not counted."""
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_rate_limited: int = 50
    """429s one recipient may get before it gives up (the campaign keeps slowing anyway)."""

    def decide(self, failure: Failure, attempts: int, rate_limited: int,
               rng: random.Random | None = None) -> Decision:
        """After ``attempts`` counted attempts and ``rate_limited`` 429s, the last of which
        failed with ``failure``."""
        if failure is Failure.CONFIG:
            return Decision(Action.STOP_CAMPAIGN)
        if failure is Failure.RATE_LIMITED:
            if rate_limited >= self.max_rate_limited:
                return Decision(Action.GIVE_UP)
            return Decision(Action.RETRY)
        if failure is Failure.FINAL or attempts >= self.max_attempts:
            return Decision(Action.GIVE_UP)
        return Decision(Action.RETRY, retry_delay(attempts, self.base_delay, self.max_delay,
                                                  rng=rng))


def budget_allows(tokens_used: int, reserved: int, per_request: int, budget: int | None) -> bool:
    """May one more request start? ``reserved``: tokens set aside for requests in flight
    (``per_request`` each, the reply's ``max_tokens``): the campaign stops before its
    budget rather than after (prompt tokens aside, which the budget counts when the
    upstream reports them)."""
    return budget is None or tokens_used + reserved + per_request <= budget
