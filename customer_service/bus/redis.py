"""The bus between instances on Redis (coredis, which runs on trio through anyio).

One pub/sub channel carries every instance's ``Batch``es (``core.bus_events``); the
database stays the source of truth and the bus only carries, as in Centrifugo's
Redis engine. Three tasks:

- the **publisher** gathers the events the hub queues (``publish`` never waits; the
  outbox is bounded, and what does not fit is dropped and shows up at the receivers
  as a skipped batch number, which makes them resynchronise). A batch goes out at
  once after a quiet spell; under load publishes are spaced ``publish_interval``
  apart, so one Redis round trip (costly through coredis) carries many events. The
  same round trip keeps this instance's presence hash (``<ns>:presence:<instance>``:
  its online agents and visitors) in step, for others to read when they join or
  missed something;
- the **subscriber** hands every batch of another instance to the hub and notes when
  its own batches come back: that round trip is the bus's health;
- the **heartbeat** makes the publisher send (an empty batch if need be) every
  ``heartbeat_interval``, so silence means an instance is gone and a lost trailing
  batch is noticed.

While Redis is down, publishing and subscribing retry with backoff, local delivery
goes on, ``status`` is ``degraded``, and everything resumes by itself when Redis
returns (the others notice the batches they missed and read them from the database).

Every Redis call has a deadline (``[bus] command_timeout``); its failures become
``BusError`` here, in one place.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import coredis
import trio
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from customer_service.bus.connection import (
    BUS_FAILURES,
    describe,
    redis_client,
    safe_url,
)
from customer_service.config import BusConfig
from customer_service.core.bus_events import (
    Batch,
    BusEvent,
    PresenceEvent,
    decode_batch,
    encode_batch,
)
from customer_service.core.login_failures import Failures
from customer_service.errors import BusError

log = logging.getLogger(__name__)


T = TypeVar("T")
class Receiver(Protocol):
    def __call__(self, origin: str, number: int, events: list[BusEvent], *,
                 final: bool = False, heartbeat: float = 0.0) -> None: ...



PresenceSource = Callable[[], tuple[set[int], set[int]]]

MAX_BATCH_EVENTS = 2000
"""Most events in one published batch (a few hundred KB at most)."""
RETRY_MIN = 0.1
RETRY_MAX = 2.0
MAX_ID_DIGITS = 19
LOG_EVERY = 30.0
"""Seconds between repeated warnings about the same outage."""

# Login failure counts (``server.limits``): a hash per key, {n: count, t: last failure}
# on Redis's own clock (seconds, so instances' clocks do not matter), expiring
# ``window`` after the last failure. What the counts mean is decided in Python
# (``core.login_failures``); these scripts only read and count, atomically.
_READ_FAILURES = """
local now = redis.call('TIME')
local out = {now[1], now[2]}
for _, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok == 'hash' then
    local v = redis.call('HMGET', key, 'n', 't')
    out[#out + 1] = v[1] or ''
    out[#out + 1] = v[2] or ''
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
"""
_RECORD_FAILURE = """
local now = redis.call('TIME')
local stamp = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
for _, key in ipairs(KEYS) do
  -- Anything but a hash of integers (a hostile or stale value) starts afresh.
  if redis.call('TYPE', key).ok ~= 'hash' then redis.call('DEL', key) end
  local counted = redis.pcall('HINCRBY', key, 'n', 1)
  if type(counted) == 'table' and counted.err then redis.call('HSET', key, 'n', 1) end
  redis.call('HSET', key, 't', stamp)
  redis.call('PEXPIRE', key, ARGV[1])
end
return 1
"""



def _failures(count: str, last: str) -> Failures:
    """A failure count as read from Redis; what an instance did not write reads as none."""
    try:
        parsed = Failures(int(count), float(last))
    except ValueError:
        return Failures()
    if parsed.count < 0 or not math.isfinite(parsed.last):
        return Failures()
    return parsed


class _Counts(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Reads(Protocol):
    def set_function(self, function: Callable[[], float]) -> None: ...


class BusMetrics(Protocol):
    """The instruments the bus records into (the server's ``Metrics`` has them)."""

    @property
    def bus_up(self) -> _Reads: ...

    @property
    def bus_batches_published(self) -> _Counts: ...

    @property
    def bus_events_published(self) -> _Counts: ...

    @property
    def bus_publish_failures(self) -> _Counts: ...

    @property
    def bus_events_dropped(self) -> _Counts: ...

    @property
    def bus_batches_received(self) -> _Counts: ...

    @property
    def bus_bad_batches(self) -> _Counts: ...


class _StaleSubscription(Exception):
    """The subscription still looks open but carries nothing: start it again."""


class RedisBus:
    """Build it with ``open_redis_bus``."""

    def __init__(self, config: BusConfig, client: coredis.Redis[bytes],
                 writer: coredis.Redis[bytes], *, instance: str, deployment: str,
                 metrics: BusMetrics, presence: PresenceSource) -> None:
        self.config = config
        self._writer = writer
        """The no-reply connection the publisher writes on."""
        self._instance = instance
        self._deployment = deployment
        self._client = client
        self._metrics = metrics
        self._presence = presence
        self.channel = f"{config.namespace}:bus"
        self.receiver: Receiver | None = None
        """Gets every batch another instance publishes (the hub's ``receive``)."""
        self._outbox: deque[BusEvent] = deque()
        self._wake = trio.Event()
        self._number = 0
        self._dropped = 0
        """Events dropped since the last batch went out (the next number skips one)."""
        self._dirty: dict[tuple[str, int], bool] = {}
        """Presence changes (kind, key) → online, to write with the next publish."""
        self._rewrite_presence = True
        """Write the whole presence hash next time (at start, and after Redis was down)."""
        self._heartbeat_due = False
        self._publish_lock = trio.Lock()
        self._last_publish = -math.inf
        self._publishing_ok = False
        self._subscribed = False
        self._ever_subscribed = False
        self._subscribed_once = False
        self._closing = False
        self._outage_started: float | None = None
        self._outage_dropped = 0
        self._own_seen = -math.inf
        self._warned: dict[str, float] = {}

    @property
    def instance(self) -> str:
        return self._instance

    def presence_key(self, instance: str) -> str:
        return f"{self.config.namespace}:presence:{instance}"

    @property
    def status(self) -> str:
        """``ok`` when batches go out and this instance's own come back in time."""
        fresh = trio.current_time() - self._own_seen < 3 * self.config.heartbeat_interval + 1
        return "ok" if self._publishing_ok and self._subscribed and fresh else "degraded"

    # ---- publishing -------------------------------------------------------
    def publish(self, event: BusEvent) -> None:
        if isinstance(event, PresenceEvent):
            self._dirty[(event.kind, event.key)] = event.online
        if len(self._outbox) >= self.config.outbox_size:
            self._dropped += 1
            self._metrics.bus_events_dropped.inc()
            return
        self._outbox.append(event)
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            wait = self._last_publish + self.config.publish_interval - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            await self._publish_batch()
            if self._outbox:
                self._wake.set()

    async def _publish_batch(self, *, final: bool = False) -> None:
        """One batch, in number order (the publisher and the goodbye at exit take turns)."""
        async with self._publish_lock:
            await self._publish_locked(final)

    async def _publish_locked(self, final: bool) -> None:
        events = [self._outbox.popleft()
                  for _ in range(min(len(self._outbox), MAX_BATCH_EVENTS))]
        heartbeat, self._heartbeat_due = self._heartbeat_due, False
        if (not events and not heartbeat and not self._dirty and not self._rewrite_presence
                and not final):
            return
        if self._dropped:
            self._number += 1  # the skipped number tells receivers they missed something
            self._dropped = 0
        self._number += 1
        payload = encode_batch(Batch(self._deployment, self._instance, self._number, events,
                                     final, self.config.heartbeat_interval))
        rewrite, self._rewrite_presence = self._rewrite_presence, False
        dirty, self._dirty = self._dirty, {}
        self._last_publish = trio.current_time()
        try:
            await self._call(self._send(payload, dirty, rewrite, heartbeat or rewrite))
        except BusError as exc:
            if self._publishing_ok or self._outage_started is None:
                self._outage_started = trio.current_time()
                self._outage_dropped = 0
            self._publishing_ok = False
            self._rewrite_presence = True
            self._outage_dropped += len(events)
            self._metrics.bus_publish_failures.inc()
            self._metrics.bus_events_dropped.inc(len(events))
            self._warn("publish", "cannot publish to Redis (%s); until it works, what this "
                       "instance's sockets do reaches the others through the database", exc)
            await trio.sleep(RETRY_MIN)
            return
        if self._warned.pop("publish", None) is not None and self._outage_started is not None:
            log.info("publishing to Redis again after %.1f s; %d events were not published "
                     "(the other instances read what matters from the database)",
                     trio.current_time() - self._outage_started, self._outage_dropped)
        self._outage_started = None
        self._publishing_ok = True
        self._metrics.bus_batches_published.inc()
        self._metrics.bus_events_published.inc(len(events))

    async def _send(self, payload: bytes, dirty: dict[tuple[str, int], bool], rewrite: bool,
                    refresh: bool) -> None:
        """Presence changes, then the batch, written on the no-reply connection (in order,
        without waiting for answers): whoever reads the presence hash because of this batch
        reads it after the changes the batch announces. Whether it all arrived shows in
        this instance's own heartbeats coming back."""
        key = self.presence_key(self._instance)
        writer = self._writer
        if rewrite:
            agents, visitors = self._presence()
            await writer.delete([key])
            fields = {**{f"agent:{a}": b"1" for a in agents},
                      **{f"visitor:{v}": b"1" for v in visitors}}
            if fields:
                await writer.hset(key, fields)
        else:
            online = {f"{kind}:{k}": b"1" for (kind, k), on in dirty.items() if on}
            offline = [f"{kind}:{k}" for (kind, k), on in dirty.items() if not on]
            if online:
                await writer.hset(key, online)
            if offline:
                await writer.hdel(key, offline)
        if refresh:
            await writer.pexpire(key, int(self.config.instance_timeout * 2000))
        await writer.publish(self.channel, payload)

    async def _heartbeat(self) -> None:
        while True:
            self._heartbeat_due = True
            self._wake.set()
            await trio.sleep(self.config.heartbeat_interval)

    # ---- subscribing --------------------------------------------------------
    async def _subscriber(self) -> None:
        delay = RETRY_MIN
        while True:
            self._subscribed_once = False
            try:
                await self._subscribe()
            except* BUS_FAILURES as group:
                if not self._closing:  # torn down on the way out: nothing to report
                    self._warn("subscribe", "%s (%s); retrying",
                               "Redis subscription lost" if self._ever_subscribed
                               else "cannot subscribe to Redis", describe(group))
            except* _StaleSubscription:
                self._warn("subscribe", "this instance's own heartbeats stopped coming back "
                           "through Redis; subscribing again")
            finally:
                self._subscribed = False
            if self._subscribed_once:  # it worked for a while: start the backoff again
                delay = RETRY_MIN
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _subscribe(self) -> None:
        """One subscription, until it fails or goes quiet. A connection that died without
        a word (no FIN, no RST) is noticed by this instance's heartbeats not coming back
        while its publishes succeed."""
        interval = self.config.heartbeat_interval
        stale_after = 3 * interval + 1
        # A client of its own for each subscription: a fresh connection every time, never
        # an idle pooled one that may be as dead as the subscription it replaces.
        async with redis_client(self.config) as client, client.pubsub(
                channels=[self.channel], ignore_subscribe_messages=True,
                retry_policy=NoRetryPolicy()) as pubsub:
            self._subscribed = True
            self._subscribed_once = True
            self._ever_subscribed = True
            subscribed_at = trio.current_time()
            # Redis may have restarted empty: write this instance's presence hash again.
            self._rewrite_presence = True
            self._wake.set()
            if self._warned.pop("subscribe", None) is not None:
                log.info("subscribed to Redis again")
            while True:
                message = await pubsub.get_message(timeout=interval)
                if message is not None and message["type"] == "message":
                    self._on_payload(message["data"])
                now = trio.current_time()
                if (self._publishing_ok and now - subscribed_at > stale_after
                        and now - self._own_seen > stale_after):
                    # Any connection may be as dead: start the others afresh too.
                    self._writer.connection_pool.disconnect()
                    self._client.connection_pool.disconnect()
                    raise _StaleSubscription

    def _on_payload(self, data: Any) -> None:
        try:
            batch = decode_batch(bytes(data))
        except (ValueError, TypeError) as exc:
            self._metrics.bus_bad_batches.inc()
            self._warn("payload", "ignoring a message on %s: %s",
                       self.channel, exc)
            return
        if batch.deployment != self._deployment:
            self._metrics.bus_bad_batches.inc()
            self._warn("deployment", "ignoring batches of instance %s: it uses another database "
                       "on the same Redis channel %s; give each deployment its own [bus] "
                       "namespace", batch.origin, self.channel)
            return
        if batch.origin == self._instance:
            self._own_seen = trio.current_time()
            return
        self._metrics.bus_batches_received.inc()
        if self.receiver is not None:
            self.receiver(batch.origin, batch.number, batch.events, final=batch.final,
                          heartbeat=batch.heartbeat)

    # ---- shared state ---------------------------------------------------------
    async def read_presence(self, instance: str) -> tuple[list[int], list[int]]:
        """Another instance's online agents and visitors (conversation ids)."""
        found = await self._call(self._client.hgetall(self.presence_key(instance)))
        agents: list[int] = []
        visitors: list[int] = []
        for raw in found:
            kind, _, key = bytes(raw).decode("ascii", "replace").partition(":")
            if not key.isdigit() or len(key) > MAX_ID_DIGITS or kind not in ("agent", "visitor"):
                continue  # not written by an instance: ignore it
            (agents if kind == "agent" else visitors).append(int(key))
        return agents, visitors

    def _failure_key(self, key: str) -> str:
        return f"{self.config.namespace}:login-failures:{key}"

    async def read_failures(self, keys: Sequence[str]) -> tuple[float, list[Failures]]:
        """Redis's clock (seconds) and each key's login failures (``server.limits``)."""
        answer = await self._call(self._client.eval(
            _READ_FAILURES, keys=[self._failure_key(k) for k in keys], args=[]))
        if not isinstance(answer, list) or len(answer) != 2 * len(keys) + 2:
            raise BusError(f"Redis: unexpected answer to the login failure script: {answer!r}")
        values = [bytes(v).decode("ascii", "replace") if isinstance(v, (bytes, bytearray))
                  else str(v) for v in answer]
        now = float(values[0]) + float(values[1]) / 1_000_000
        found = [_failures(values[i], values[i + 1]) for i in range(2, 2 * len(keys) + 2, 2)]
        return now, found

    async def record_failure(self, keys: Sequence[str], window: float) -> None:
        """One more failure for each key, forgotten ``window`` seconds after the last."""
        await self._call(self._client.eval(
            _RECORD_FAILURE, keys=[self._failure_key(k) for k in keys],
            args=[max(1, math.ceil(window * 1000))]))

    async def clear_failures(self, keys: Sequence[str]) -> None:
        await self._call(self._client.delete([self._failure_key(k) for k in keys]))

    async def claim(self, key: str, ttl: float) -> bool:
        """True for the first instance to ask for ``key`` within ``ttl`` seconds."""
        answer = await self._call(self._client.set(
            f"{self.config.namespace}:claim:{key}", self._instance, condition=PureToken.NX,
            px=max(1, int(ttl * 1000))))
        return bool(answer)

    async def claimed(self, key: str) -> bool:
        """Whether some instance claimed ``key`` (and the claim has not expired)."""
        return bool(await self._call(self._client.exists([f"{self.config.namespace}:claim:{key}"])))

    async def _call(self, request: Awaitable[T]) -> T:
        """Await one Redis request under ``command_timeout``; failures become ``BusError``."""
        try:
            with trio.fail_after(self.config.command_timeout):
                return await request
        except* BUS_FAILURES as group:
            raise BusError(f"Redis: {describe(group)}") from None

    async def ping(self) -> None:
        await self._call(self._client.ping())

    def _warn(self, topic: str, message: str, *args: object) -> None:
        """Log an outage once, then at most every ``LOG_EVERY`` seconds."""
        now = time.monotonic()
        if now - self._warned.get(topic, -math.inf) >= LOG_EVERY:
            self._warned[topic] = now
            log.warning(message, *args)

    async def _flush_on_exit(self) -> None:
        """Send what is queued (the goodbyes of the last sockets) and drop the presence
        hash, so the others see this instance's agents leave at once."""
        self._closing = True
        with trio.move_on_after(self.config.command_timeout, shield=True):
            try:
                await self._publish_batch(final=True)
                await self._call(self._client.delete([self.presence_key(self._instance)]))
            except BusError:
                pass


@asynccontextmanager
async def open_redis_bus(config: BusConfig, instance: str, deployment: str,
                         metrics: BusMetrics, presence: PresenceSource
                         ) -> AsyncIterator[RedisBus]:
    """Connect to Redis and run the bus for the duration of the block.

    Redis not answering at start is not fatal: the instance serves its own sockets and
    the bus connects when Redis comes (``/healthz`` says ``"bus": "degraded"`` until then).
    """
    client = redis_client(config)
    writer = redis_client(config, noreply=True)
    async with client, writer, trio.open_nursery() as nursery:
        bus = RedisBus(config, client, writer, instance=instance, deployment=deployment,
                       metrics=metrics, presence=presence)
        try:
            await bus.ping()
            log.info("bus: Redis at %s answers; this instance is %s", safe_url(config.redis_url),
                     instance)
        except BusError as exc:
            log.warning("bus: Redis at %s is not usable (%s); serving this instance's own "
                        "sockets, and joining the others once it is",
                        safe_url(config.redis_url), exc.message.removeprefix("Redis: "))
        nursery.start_soon(bus._subscriber)
        nursery.start_soon(bus._publisher)
        nursery.start_soon(bus._heartbeat)
        metrics.bus_up.set_function(lambda: 1.0 if bus.status == "ok" else 0.0)
        try:
            yield bus
        finally:
            await bus._flush_on_exit()
            nursery.cancel_scope.cancel()
