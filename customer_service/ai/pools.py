"""The HTTP connection pools to the OpenAI-compatible upstream (chat replies, campaigns).

The pool is split into shards of at most ``POOL_SHARD_SIZE`` connections: httpcore walks
(and polls) every connection of a pool on each request and each close, which with
hundreds of HTTP/1.1 streams cost a quarter of the server's CPU; a request goes to the
least busy shard. Over TLS with HTTP/2 each shard multiplexes its streams on one
connection.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import certifi
import httpx

from customer_service.config import AiConfig

POOL_SHARD_SIZE = 16


@asynccontextmanager
async def open_upstream_pools(config: AiConfig, connections: int, timeout: httpx.Timeout,
                              headers: dict[str, str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Shards holding ``connections`` connections in all to ``[ai] base_url`` (with the
    API key, the certifi CA bundle and ``[ai] http2``), closed at exit."""
    shards = max(1, math.ceil(connections / POOL_SHARD_SIZE))
    size = math.ceil(connections / shards)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size,
                          keepalive_expiry=60)
    headers = dict(headers)
    key = config.resolved_api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    tls = ssl.create_default_context(cafile=certifi.where())
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(httpx.AsyncClient(
            base_url=config.base_url.rstrip("/") + "/", timeout=timeout, limits=limits,
            http2=config.http2, headers=headers, verify=tls)) for _ in range(shards)]
