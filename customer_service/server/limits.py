"""Login throttling on failures (``core.login_failures``), local or shared over Redis.

One instance keeps the failure counts in memory (the oldest keys forgotten past a
bound). Instances on a bus keep them in Redis, so five failures for a username mean
five across all instances rather than five per instance behind a balancer; while
Redis does not answer, each instance falls back to its own counts (which it keeps
all along) and says so in the log.

Keys: ``address:<client address>`` and ``user:<SHA-256 of the username>`` (any
length of username becomes a short key, and Redis never holds the names).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import trio

from customer_service.core.login_failures import (
    NONE,
    Failures,
    LoginLimits,
    after_failure,
    retry_after,
)
from customer_service.errors import BusError

log = logging.getLogger(__name__)

MAX_KEYS = 100_000
"""Failure counts kept in memory; past it the least recently touched are forgotten."""


def address_key(address: str) -> str:
    return f"address:{address}"


def user_key(username: str) -> str:
    return "user:" + hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class LoginThrottle(Protocol):
    async def retry_after(self, address: str, username: str) -> float:
        """Seconds before a login for ``username`` from ``address`` may be tried; 0.0: now."""

    async def failed(self, address: str, username: str) -> None:
        """Count a failed login against both the address and the username."""

    async def succeeded(self, username: str) -> None:
        """A successful login: forget the username's failures."""


class LocalLoginThrottle:
    """Failure counts in this process, on trio's clock."""

    def __init__(self, limits: LoginLimits, max_keys: int = MAX_KEYS) -> None:
        self.limits = limits
        self.max_keys = max_keys
        self._counts: OrderedDict[str, Failures] = OrderedDict()

    async def retry_after(self, address: str, username: str) -> float:
        return self.retry_after_now(address, username)

    async def failed(self, address: str, username: str) -> None:
        self.failed_now(address, username)

    async def succeeded(self, username: str) -> None:
        self.succeeded_now(username)

    def retry_after_now(self, address: str, username: str) -> float:
        return retry_after(self._counts.get(address_key(address), NONE),
                           self._counts.get(user_key(username), NONE), self.limits,
                           trio.current_time())

    def failed_now(self, address: str, username: str) -> None:
        now = trio.current_time()
        for key in (address_key(address), user_key(username)):
            self._counts[key] = after_failure(self._counts.pop(key, NONE), now,
                                              self.limits.window)
        while len(self._counts) > self.max_keys:
            self._counts.popitem(last=False)

    def succeeded_now(self, username: str) -> None:
        self._counts.pop(user_key(username), None)


class SharedFailures(Protocol):
    """The bus's shared failure counts (``bus.redis.RedisBus``); each raises ``BusError``
    when Redis does not answer."""

    async def read_failures(self, keys: Sequence[str]) -> tuple[float, list[Failures]]:
        """Redis's clock (seconds) and each key's failures."""

    async def record_failure(self, keys: Sequence[str], window: float) -> None:
        """One more failure for each key, on Redis's clock; forgotten ``window`` s later."""

    async def clear_failures(self, keys: Sequence[str]) -> None: ...


class SharedLoginThrottle:
    """Failure counts in Redis, with this instance's own counts as the fallback."""

    def __init__(self, shared: SharedFailures, limits: LoginLimits) -> None:
        self._shared = shared
        self._local = LocalLoginThrottle(limits)
        self._degraded = False

    async def retry_after(self, address: str, username: str) -> float:
        try:
            now, (by_address, by_user) = await self._shared.read_failures(
                [address_key(address), user_key(username)])
        except BusError as exc:
            self._lost(exc)
            return self._local.retry_after_now(address, username)
        self._back()
        return retry_after(by_address, by_user, self._local.limits, now)

    async def failed(self, address: str, username: str) -> None:
        self._local.failed_now(address, username)
        try:
            await self._shared.record_failure([address_key(address), user_key(username)],
                                              self._local.limits.window)
        except BusError as exc:
            self._lost(exc)

    async def succeeded(self, username: str) -> None:
        self._local.succeeded_now(username)
        try:
            await self._shared.clear_failures([user_key(username)])
        except BusError as exc:
            self._lost(exc)

    def _lost(self, exc: BusError) -> None:
        if not self._degraded:
            log.warning("login throttle: Redis unavailable (%s); counting failures on this "
                        "instance only until it answers", exc)
            self._degraded = True

    def _back(self) -> None:
        if self._degraded:
            log.info("login throttle: shared through Redis again")
            self._degraded = False
