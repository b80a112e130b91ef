"""What the AI client needs of HTTP: send a POST, get the status, the headers and an
async byte stream, close it. Two implementations: ``HttpxTransport`` (TLS, HTTP/2, any
URL; the sharded httpx pools of ``ai.upstream``) and ``ai.h11_upstream.H11Transport``
(plain ``http://`` upstreams, a lean h11 client on trio sockets). ``open_transport``
picks one from ``[ai] http_client`` and ``base_url``.

Every transport raises only ``AiError``s (plus ``trio.Cancelled``): each converts its
own failures in one place, ``upstream.transport_error`` for httpx and
``h11_upstream._transport_error`` for sockets and h11.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import httpx

from customer_service.ai.h11_upstream import open_h11_transport
from customer_service.ai.upstream import open_upstream_pools, transport_error
from customer_service.config import AiConfig
from customer_service.core.http1 import uses_lean_client

log = logging.getLogger(__name__)


class UpstreamResponse(Protocol):
    """A response whose body is read as it arrives (``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive lookups by lower-case name (``get("retry-after")``)."""
        ...

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as received (no content-decoding); ``AiError`` on a failure."""
        ...


class UpstreamTransport(Protocol):
    name: str

    def stream_post(self, path: str, body: bytes, headers: Mapping[str, str]
                    ) -> AbstractAsyncContextManager[UpstreamResponse]:
        """POST ``body`` to ``path`` (relative to ``base_url``); the response, closed at
        exit (its connection reused only when the body was read to the end)."""
        ...

    async def probe(self, path: str) -> bool:
        """``GET path`` (pre-warming a connection): True when it answered below 500;
        False, logged, when it failed."""
        ...


class _Shard:
    """One httpx client (one connection pool) and how many requests it carries now."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.busy = 0


class HttpxTransport:
    """The sharded httpx pools (``ai.upstream``): a request goes to the least busy shard."""

    name = "httpx"

    def __init__(self, pools: list[httpx.AsyncClient]) -> None:
        self._shards = [_Shard(http) for http in pools]
        self._next = 0

    @asynccontextmanager
    async def stream_post(self, path: str, body: bytes, headers: Mapping[str, str]
                          ) -> AsyncIterator[UpstreamResponse]:
        shard = min(self._shards, key=lambda s: s.busy)
        shard.busy += 1
        try:
            async with shard.http.stream("POST", path, content=body,
                                         headers=dict(headers)) as response:
                yield response
        except httpx.HTTPError as exc:
            raise transport_error(exc) from None
        finally:
            shard.busy -= 1

    async def probe(self, path: str) -> bool:
        shard = self._shards[self._next % len(self._shards)]
        self._next += 1
        try:
            response = await shard.http.get(path)
        except httpx.HTTPError as exc:
            log.warning("AI pre-warm: %s", exc or type(exc).__name__)
            return False
        return response.status_code < 500


@asynccontextmanager
async def open_transport(config: AiConfig, connections: int,
                         headers: dict[str, str]) -> AsyncIterator[UpstreamTransport]:
    """The transport ``[ai] http_client`` and ``base_url`` call for, holding up to
    ``connections`` connections, closed at exit. ``headers`` go with every request (the
    API key is added here)."""
    if uses_lean_client(config.base_url, config.http_client):
        async with open_h11_transport(config, connections, headers) as lean:
            yield lean
        return
    timeout = httpx.Timeout(connect=config.connect_timeout,
                            read=max(config.idle_timeout, config.first_token_timeout),
                            write=config.connect_timeout, pool=config.first_token_timeout)
    async with open_upstream_pools(config, connections, timeout, headers) as pools:
        yield HttpxTransport(pools)
