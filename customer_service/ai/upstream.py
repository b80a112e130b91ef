"""What chat replies and campaigns share of the OpenAI-compatible upstream: the HTTP
connection pools, reading a bounded body, and turning an answer that is not 200 or an
httpx failure into the ``AiError`` it means (the one place for both callers).

The pool is split into shards of at most ``POOL_SHARD_SIZE`` connections: httpcore walks
(and polls) every connection of a pool on each request and each close, which with
hundreds of HTTP/1.1 streams cost a quarter of the server's CPU; a request goes to the
least busy shard. Over TLS with HTTP/2 each shard multiplexes its streams on one
connection.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol

import certifi
import httpx
import msgspec
import trio

from customer_service.config import AiConfig
from customer_service.core.breaker import retry_after
from customer_service.errors import (
    AiBadResponse,
    AiConnectionError,
    AiError,
    AiRateLimited,
    AiTimeout,
    AiUpstreamError,
)

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


MAX_ERROR_BODY = 4096


class _RawBody(Protocol):
    def aiter_raw(self) -> AsyncIterator[bytes]: ...


async def read_at_most(response: _RawBody, limit: int) -> bytes:
    """Up to ``limit`` bytes of a body, without reading an endless one to the end."""
    body = bytearray()
    with trio.CancelScope() as enough:
        async for piece in response.aiter_raw():
            if len(body) < limit:
                body += piece[:limit - len(body)]
            if len(body) >= limit:
                enough.cancel()
    return bytes(body)


def error_detail(body: bytes) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}`` or
    ``{"error": "..."}``), else the start of the body."""
    try:
        data = msgspec.json.decode(body[:MAX_ERROR_BODY])
    except (msgspec.DecodeError, RecursionError):  # msgspec has no depth limit of its own
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message", ""))[:200]
        if isinstance(error, str):
            return error[:200]
    return ""


def status_error(status: int, headers: Mapping[str, str], body: bytes) -> AiError:
    """What an answer other than 200 means: 429 (with its Retry-After), or another status."""
    detail = error_detail(body)
    wait = retry_after(status, headers.get("retry-after"), datetime.now(UTC))
    if status == 429:
        return AiRateLimited(f"rate limited by the upstream: {detail}", wait)
    return AiUpstreamError(f"the upstream answered {status}: {detail}", status, wait)


def transport_error(exc: httpx.HTTPError) -> AiError:
    """An httpx failure as the ``AiError`` it means."""
    if isinstance(exc, httpx.TimeoutException):
        return AiTimeout(f"the upstream did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return AiConnectionError(
            f"connection to the upstream failed ({type(exc).__name__}: {exc})")
    return AiBadResponse(f"unusable response ({type(exc).__name__}: {exc})")
