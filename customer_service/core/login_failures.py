"""Login throttling on failures: how long the next attempt must wait. Pure arithmetic.

Only failed logins count, per username and per client address, so twenty agents
behind one office NAT all log in at 9 a.m., and a stranger's bad passwords for one
name do not lock every other agent out. A count is forgotten ``window`` seconds after
its last failure (it lives on as long as failures keep coming). Once a count reaches
its limit, each failure locks that key for a while, doubling from ``BACKOFF_BASE``
with every further failure up to ``window``: the limit-th failure waits 1 s, the next
2 s, then 4 s... A success clears the username's count (not the address's).

The clock is whatever the caller passes (trio's on one instance, Redis's when the
instances share the counts), in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BACKOFF_BASE = 1.0
"""Seconds of lock at the limit-th failure; each further failure doubles it."""
MAX_DOUBLINGS = 40


@dataclass(frozen=True, slots=True)
class LoginLimits:
    per_user: int
    """Failures for one username before its attempts are spaced out."""
    per_address: int
    """Failures from one address (any usernames) before its attempts are spaced out."""
    window: float
    """Seconds without a failure after which a count is forgotten; the longest lock."""


@dataclass(frozen=True, slots=True)
class Failures:
    """One key's failures: how many, and when the last one was (seconds)."""

    count: int = 0
    last: float = 0.0


NONE = Failures()


def _current(failures: Failures, now: float, window: float) -> Failures:
    """The count as it stands at ``now``: forgotten after ``window`` of quiet. A time ahead
    of ``now`` (another clock, or a hostile value in Redis) counts as ``now``."""
    if failures.count <= 0:
        return NONE
    last = min(failures.last, now)
    if now - last >= window:
        return NONE
    return Failures(failures.count, last)


def lock_seconds(count: int, limit: int, window: float) -> float:
    """How long the ``count``-th failure locks its key."""
    if count < limit:
        return 0.0
    return min(window, BACKOFF_BASE * 2.0 ** min(count - limit, MAX_DOUBLINGS))


def wait_seconds(failures: Failures, limit: int, window: float, now: float) -> float:
    """Seconds until the key may try again; 0.0: now."""
    current = _current(failures, now, window)
    if current.count == 0:
        return 0.0
    return max(0.0, current.last + lock_seconds(current.count, limit, window) - now)


def retry_after(address: Failures, user: Failures, limits: LoginLimits, now: float) -> float:
    """Seconds until a login from ``address`` for ``user`` may be tried; 0.0: now."""
    return max(wait_seconds(address, limits.per_address, limits.window, now),
               wait_seconds(user, limits.per_user, limits.window, now))


def after_failure(failures: Failures, now: float, window: float) -> Failures:
    """The key's failures once one more happened at ``now``."""
    current = _current(failures, now, window)
    return Failures(current.count + 1, now)


def retry_after_header(seconds: float) -> int:
    """``Retry-After`` in whole seconds, never 0 (a client would retry at once)."""
    return max(1, math.ceil(seconds))
