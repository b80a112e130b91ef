"""Admission control: how many visitor texts the server takes on at once, and when to
ask the others to come back.

Past what one process serves, taking every text makes every text late: the event loop
shares itself evenly, each text (and the AI turn it starts) waits behind all the
others, all of them pass ``message_timeout``, the clients resend, and the resends are
work too. Measured with 9,000 visitors writing as fast as they are answered: from 700
AI replies a second to 70, at ten times the CPU per reply. A server should instead
serve what it can in time and say ``busy`` to the rest at once, cheaply, with a
``retry_after`` that spreads the retries out.

``TextAdmission`` keeps an AIMD limit on texts in flight (read, not yet acked), as
TCP's congestion window and Netflix's concurrency-limits do: a text acked later than
``target`` seconds after it arrived shrinks the limit by ``BACKOFF`` (at most once per
``DECREASE_EVERY``, so that one slow group commit of hundreds of texts counts once); a
text acked in time while the limit is in use grows it by one. Under normal load texts
are acked in milliseconds and the limit is never reached.

``retry_after`` aims at the retry interval that makes refused clients come back about
as fast as texts are taken: if ``V`` clients wait and the server completes ``X`` texts
a second, each should retry every ``V / X`` seconds. Once a second the interval is
scaled by refused/completed (the refusals a second are ``V`` over the interval), halfway
in log terms to damp it, within ``RETRY_MIN`` and ``RETRY_MAX``; each refusal gets it
with ±25% jitter so that retries do not arrive together.

Pure: the caller passes the clock and the random draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

INITIAL_LIMIT = 256
MIN_LIMIT = 16
MAX_LIMIT = 10_000
BACKOFF = 0.9
DECREASE_EVERY = 0.1
"""Seconds between two decreases of the limit."""
RETRY_MIN = 1.0
RETRY_MAX = 60.0
WINDOW = 1.0
"""Seconds over which refusals and completions are counted for ``retry_after``."""


@dataclass(slots=True)
class RetryPacer:
    """The retry interval for refused clients (see the module doc)."""

    interval: float = RETRY_MIN
    _window_start: float = 0.0
    _refused: int = 0
    _completed: int = 0

    def refused(self, now: float) -> None:
        self._roll(now)
        self._refused += 1

    def completed(self, now: float) -> None:
        self._roll(now)
        self._completed += 1

    def retry_after(self, draw: float) -> float:
        """Seconds a refused client should wait before resending; ``draw`` in [0, 1).
        Within ``RETRY_MIN`` and ``RETRY_MAX`` like the interval (docs/protocol.md)."""
        jittered = self.interval * (0.75 + 0.5 * draw)
        return round(min(RETRY_MAX, max(RETRY_MIN, jittered)), 2)

    def _roll(self, now: float) -> None:
        if now - self._window_start < WINDOW:
            return
        if self._refused:
            wanted = self.interval * self._refused / max(1, self._completed)
            self.interval = math.sqrt(self.interval * wanted)
        else:
            self.interval /= 2  # nobody refused: come back sooner next time
        self.interval = min(RETRY_MAX, max(RETRY_MIN, self.interval))
        self._window_start = now
        self._refused = 0
        self._completed = 0


@dataclass(slots=True)
class TextAdmission:
    target: float
    """Seconds from a text's arrival to its ack beyond which the server is overloaded;
    0 turns admission off (every text is taken)."""
    limit: float = INITIAL_LIMIT
    in_flight: int = 0
    pacer: RetryPacer = field(default_factory=RetryPacer)
    _last_decrease: float = -math.inf

    @property
    def enabled(self) -> bool:
        return self.target > 0

    def try_enter(self, now: float) -> bool:
        """Take a text on (True), or refuse it (False: answer ``busy``)."""
        if not self.enabled or self.in_flight < int(self.limit):
            self.in_flight += 1
            return True
        self.pacer.refused(now)
        return False

    def leave(self, latency: float, now: float) -> None:
        """A text taken on is answered (acked or refused with an error) after ``latency``
        seconds from its arrival."""
        self.in_flight = max(0, self.in_flight - 1)
        if not self.enabled:
            return
        self.pacer.completed(now)
        if latency > self.target:
            if now - self._last_decrease >= DECREASE_EVERY:
                self._last_decrease = now
                self.limit = max(MIN_LIMIT, self.limit * BACKOFF)
        elif self.in_flight + 1 >= self.limit / 2:
            self.limit = min(MAX_LIMIT, self.limit + 1)

    def cancel(self) -> None:
        """A text taken on is dropped unanswered (its socket went away): no sample."""
        self.in_flight = max(0, self.in_flight - 1)

    def retry_after(self, draw: float) -> float:
        """Seconds a refused client should wait before resending; ``draw`` in [0, 1)."""
        return self.pacer.retry_after(draw)
