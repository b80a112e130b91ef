"""Throttles keyed by client (login attempts per address), local or shared over Redis.

One instance counts in memory (a token bucket per key, the oldest keys forgotten past
a bound). Instances on a bus share the count in Redis, so ten attempts a minute mean
ten across all of them rather than ten per instance behind a balancer; while Redis
does not answer, each instance falls back to its own count and says so in the log.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Protocol

import trio

from customer_service.core.ratelimit import TokenBucket
from customer_service.errors import BusError

log = logging.getLogger(__name__)

MAX_KEYS = 10_000


class Throttle(Protocol):
    async def allow(self, key: str) -> bool:
        """Take one attempt for ``key``; False when it has none left."""


class LocalThrottle:
    """Token buckets in memory: ``burst`` attempts at once, refilled at ``per_second``."""

    def __init__(self, per_second: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    async def allow(self, key: str) -> bool:
        return self.allow_now(key)

    def allow_now(self, key: str) -> bool:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.per_second, self.burst)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return bucket.allow(trio.current_time())


class SharedTokens(Protocol):
    """The bus's shared token buckets (``bus.redis.RedisBus.take_token``)."""

    async def take_token(self, key: str, per_second: float, burst: int) -> bool:
        """Raise ``BusError`` when Redis does not answer."""


class SharedThrottle:
    """Token buckets in Redis, with the local ones as the fallback."""

    def __init__(self, tokens: SharedTokens, name: str, per_second: float, burst: int) -> None:
        self._tokens = tokens
        self._name = name
        self._local = LocalThrottle(per_second, burst)
        self._degraded = False

    async def allow(self, key: str) -> bool:
        local = self._local.allow_now(key)
        try:
            shared = await self._tokens.take_token(f"{self._name}:{key}",
                                                   self._local.per_second, self._local.burst)
        except BusError as exc:
            if not self._degraded:
                log.warning("%s throttle: Redis unavailable (%s); counting on this instance "
                            "only until it answers", self._name, exc)
                self._degraded = True
            return local
        if self._degraded:
            log.info("%s throttle: shared through Redis again", self._name)
            self._degraded = False
        return shared
