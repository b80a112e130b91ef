"""Connecting to Redis with coredis: a client whose every wait is bounded, a connection
pool that does not shrink when connections die, and what a failure is called in logs.
``publish_once`` is for short-lived processes (the CLI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import coredis
import trio
from coredis.exceptions import AuthenticationError, AuthorizationError, RedisError
from coredis.retry import NoRetryPolicy

from customer_service.config import BusConfig
from customer_service.core.bus_events import Batch, BusEvent, encode_batch
from customer_service.errors import BusError

coredis.Config.optimized = True  # no runtime type checks on every command

POOL_SIZE = 16
"""Redis connections per instance: the subscription, the publisher, a few commands."""
BUS_FAILURES = (RedisError, OSError, TimeoutError, trio.TooSlowError,
                anyio.ClosedResourceError, anyio.BrokenResourceError)
"""What a Redis call may fail with; ``RedisBus._call`` makes them ``BusError``. (coredis's
connection tasks run on anyio, whose stream errors leak out when a connection is torn
down, for instance while a subscription is being cancelled.)"""


class _HealingPool(coredis.ConnectionPool[Any]):
    """coredis 6.9's pool drops the slot of a connection that dies while leased (its
    ``release`` keeps only usable connections and puts nothing back), so every lost
    subscription or pipeline shrinks the pool until no connection can be had. This
    puts an empty slot back, as the pool itself does for idle connections that die."""

    def release(self, connection: Any) -> None:
        if connection.usable:
            super().release(connection)
            return
        self.statistics.connection_released(connection)
        self._available_connections.put_nowait(None)


def redis_client(config: BusConfig, *, noreply: bool = False) -> coredis.Redis[bytes]:
    """A client whose every wait is bounded: connecting, and waiting for a free
    connection in the pool (commands are bounded by ``RedisBus._call``).

    ``noreply``: one connection on which Redis sends no replies (``CLIENT REPLY OFF``): a
    command costs a write, not a round trip (measured: about 150 µs of CPU through coredis
    on trio against 450 to 700 µs), and one connection keeps the commands in order. Only for
    fire-and-forget writes; a dead connection still fails the next write."""
    pool = _HealingPool.from_url(config.redis_url, decode_responses=False, noreply=noreply,
                                 connect_timeout=config.command_timeout,
                                 timeout=config.command_timeout,
                                 max_connections=1 if noreply else POOL_SIZE)
    return coredis.Redis(connection_pool=pool, retry_policy=NoRetryPolicy(),
                         decode_responses=False, noreply=noreply)


def describe(group: BaseExceptionGroup[Any] | BaseException) -> str:
    while isinstance(group, BaseExceptionGroup) and group.exceptions:
        group = group.exceptions[0]
    if isinstance(group, trio.TooSlowError):
        return "no answer in time"
    if isinstance(group, AuthenticationError | AuthorizationError):
        return f"Redis refused the credentials of [bus] redis_url: {group}"
    return str(group) or type(group).__name__


async def publish_once(config: BusConfig, deployment: str, origin: str,
                       events: list[BusEvent]) -> None:
    """Publish ``events`` from a short-lived process (the CLI disabling an agent), as batch
    number 0: receivers apply it without tracking ``origin`` as an instance. Raises
    ``BusError`` when Redis does not take it in time."""
    client = redis_client(config)
    payload = encode_batch(Batch(deployment, origin, 0, events))
    try:
        with trio.fail_after(config.command_timeout):
            async with client:
                await client.publish(f"{config.namespace}:bus", payload)
    except* BUS_FAILURES as group:
        raise BusError(f"Redis at {safe_url(config.redis_url)}: {describe(group)}") from None


class CommandPublisher:
    """Publishes from a longer-lived command (``campaigns run``) as batch number 0, on one
    client kept open: what ``publish_once`` does, without a connection per call."""

    def __init__(self, config: BusConfig, deployment: str, origin: str,
                 client: coredis.Redis[bytes]) -> None:
        self._config = config
        self._deployment = deployment
        self._origin = origin
        self._client = client

    async def publish(self, events: list[BusEvent]) -> None:
        """Raise ``BusError`` when Redis does not take the events in time."""
        if not events:
            return
        payload = encode_batch(Batch(self._deployment, self._origin, 0, events))
        try:
            with trio.fail_after(self._config.command_timeout):
                await self._client.publish(f"{self._config.namespace}:bus", payload)
        except* BUS_FAILURES as group:
            raise BusError(f"Redis at {safe_url(self._config.redis_url)}: "
                           f"{describe(group)}") from None


@asynccontextmanager
async def open_command_publisher(config: BusConfig, deployment: str, origin: str
                                 ) -> AsyncIterator[CommandPublisher]:
    """A ``CommandPublisher`` on its own client (it connects at the first publish, which
    raises ``BusError`` when Redis cannot be reached). Errors of the body pass through
    unchanged; Redis failures while closing become ``BusError``."""
    client = redis_client(config)
    body_failed = False
    try:
        async with client:
            try:
                yield CommandPublisher(config, deployment, origin, client)
            except Exception:
                body_failed = True
                raise
    except* BUS_FAILURES as group:
        if body_failed:
            raise
        raise BusError(f"Redis at {safe_url(config.redis_url)}: {describe(group)}") from None


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':' if user else ':'}***@{host}"
