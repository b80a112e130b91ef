"""The OpenAI-compatible streaming client over a pooled, pre-warmed transport.

``stream_reply`` posts ``/chat/completions`` with ``stream: true``, reads the
server-sent events as they arrive and hands each text delta to a callback.
Failures before the first token (429 with Retry-After, 5xx, network errors,
timeouts) are retried with backoff and jitter; after the first token a failure
ends the reply. A circuit breaker stops calling an upstream that keeps
failing. SSE errors become ``AiError``s here; the transport (``ai.transport``: the
lean h11 client for ``http://`` upstreams, httpx for TLS/HTTP/2 or when
``[ai] http_client = "httpx"``) raises only ``AiError``s, converting its own failures in
one place each.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import msgspec
import trio

from customer_service.ai.transport import UpstreamResponse, UpstreamTransport, open_transport
from customer_service.ai.upstream import MAX_ERROR_BODY, read_at_most, status_error
from customer_service.config import AiConfig
from customer_service.core.ai_context import ChatMessage
from customer_service.core.breaker import BreakerState, CircuitBreaker, retry_delay
from customer_service.core.openai_stream import DONE, parse_chunk
from customer_service.core.sse import SseDecoder, is_event_stream
from customer_service.errors import (
    AiBadResponse,
    AiCircuitOpen,
    AiConnectionError,
    AiError,
    AiRateLimited,
    AiTimeout,
    AiUpstreamError,
)

log = logging.getLogger(__name__)


class _Observes(Protocol):
    def observe(self, amount: float) -> None: ...


class _Counts(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _Sets(Protocol):
    def set(self, value: float) -> None: ...


class _CountsByLabel(Protocol):
    def labels(self, *values: str) -> _Counts: ...


class AiMetrics(Protocol):
    """The instruments the client records into (the server's ``Metrics`` has them): the
    client takes these, not the server's objects."""

    @property
    def ai_first_token(self) -> _Observes: ...

    @property
    def ai_tokens(self) -> _Counts: ...

    @property
    def ai_tokens_per_second(self) -> _Observes: ...

    @property
    def ai_retries(self) -> _Counts: ...

    @property
    def ai_breaker(self) -> _Sets: ...

    @property
    def ai_errors(self) -> _CountsByLabel: ...

STREAM_HEADERS = {"Accept": "text/event-stream", "Content-Type": "application/json"}
_json = msgspec.json.Encoder()
MAX_EVENT_BYTES = 1 << 20
FINISH_GRACE = 1.0
"""Seconds to read the end of a body after the reply finished (for connection reuse)."""


def _redacted(url: str) -> str:
    """A URL safe to log: any user:password part removed."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


def _retryable(error: AiError) -> bool:
    if isinstance(error, AiUpstreamError):
        return error.retryable
    return isinstance(error, AiRateLimited | AiConnectionError | AiTimeout)


class _Delivery:
    """One attempt's progress: passes deltas on, notes the first (time to first token; no
    retry after it) and whether the reply finished."""

    def __init__(self, on_delta: Callable[[str], None], requested_at: float,
                 metrics: AiMetrics) -> None:
        self._on_delta = on_delta
        self._requested_at = requested_at
        self._metrics = metrics
        self.started = False
        self.finished = False
        self.tokens = 0
        self.first_at = 0.0
        self.finish_reason: str | None = None

    def deliver(self, text: str, tokens: int = 1) -> None:
        """Pass on the text of ``tokens`` chunks that arrived together (one network read
        gives one delta: fewer frames when the upstream is fast, no delay when it is not)."""
        now = trio.current_time()
        if not self.started:
            self.started = True
            self.first_at = now
            self._metrics.ai_first_token.observe(now - self._requested_at)
        self.tokens += tokens
        self._metrics.ai_tokens.inc(tokens)
        self._on_delta(text)

    def report_rate(self) -> None:
        elapsed = trio.current_time() - self.first_at
        if self.tokens > 1 and elapsed > 0:
            self._metrics.ai_tokens_per_second.observe(self.tokens / elapsed)


class AiClient:
    def __init__(self, config: AiConfig, transport: UpstreamTransport,
                 metrics: AiMetrics) -> None:
        self.config = config
        self.transport = transport
        self._metrics = metrics
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown)
        self._slots = trio.CapacityLimiter(config.max_concurrent_streams)
        self.prewarmed: bool | None = None
        """None until pre-warming ends; False when the upstream did not answer it."""

    @property
    def status(self) -> str:
        """``ok``, or ``degraded`` while the breaker is not closed or pre-warming failed."""
        if self.breaker.state is not BreakerState.CLOSED or self.prewarmed is False:
            return "degraded"
        return "ok"

    async def prewarm(self) -> None:
        """Open ``prewarm_connections`` pooled connections with cheap ``GET /models`` calls."""
        count = self.config.prewarm_connections
        if count == 0:
            return
        results: list[bool] = []

        async def one() -> None:
            results.append(await self.transport.probe("models"))

        with trio.move_on_after(self.config.connect_timeout + self.config.idle_timeout):
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(one)
        self.prewarmed = bool(results) and all(results)
        log.info("AI upstream %s: %d connection(s) pre-warmed%s", _redacted(self.config.base_url),
                 sum(results), "" if self.prewarmed else " (upstream not answering; degraded)")

    async def stream_reply(self, messages: list[ChatMessage],
                           on_delta: Callable[[str], None]) -> str | None:
        """Stream one reply, calling ``on_delta`` for each piece of text; raise ``AiError``.
        Return the upstream's ``finish_reason`` (None when it ended with ``[DONE]`` alone)."""
        cfg = self.config
        started = trio.current_time()
        first_deadline = started + cfg.first_token_timeout
        body = _json.encode({"model": cfg.model, "messages": messages, "stream": True,
                             "max_tokens": cfg.max_reply_tokens,
                             "temperature": cfg.temperature})
        try:
            with trio.fail_after(cfg.total_timeout):
                with trio.move_on_at(first_deadline) as waiting:
                    await self._slots.acquire()
                if waiting.cancelled_caught:
                    busy = AiTimeout(f"all {cfg.max_concurrent_streams} AI streams are busy")
                    self._count_error(busy)
                    raise busy
                try:
                    return await self._with_retries(body, on_delta, started, first_deadline)
                finally:
                    self._slots.release()
        except trio.TooSlowError:
            self._failed(AiTimeout("the reply took longer than total_timeout"))
            raise AiTimeout(f"the reply took longer than {cfg.total_timeout:g} s") from None

    async def _with_retries(self, body: bytes, on_delta: Callable[[str], None],
                            started: float, first_deadline: float) -> str | None:
        attempt = 0
        while True:
            if not self.breaker.allow(trio.current_time()):
                self._count_error(AiCircuitOpen("open"))
                raise AiCircuitOpen("the AI upstream is failing; calls are paused for "
                                    f"{self.breaker.retry_in(trio.current_time()):.0f} s")
            delivery = _Delivery(on_delta, started, self._metrics)
            settled = False
            try:
                with trio.CancelScope(deadline=first_deadline) as deadline:
                    await self._attempt(body, delivery, deadline)
                if deadline.cancelled_caught and not delivery.finished:
                    raise AiTimeout("the stream stalled (idle_timeout)" if delivery.started
                                    else "no first token within first_token_timeout")
            except AiError as exc:
                settled = True
                self._failed(exc)
                if delivery.started or attempt >= self.config.max_retries or not _retryable(exc):
                    raise
                attempt += 1
                delay = retry_delay(attempt, self.config.retry_base_delay,
                                    self.config.retry_max_delay,
                                    exc.retry_after if isinstance(exc, AiRateLimited
                                                                  | AiUpstreamError) else None)
                if trio.current_time() + delay >= first_deadline:
                    raise
                log.info("AI request failed (%s); retry %d in %.2f s", exc, attempt, delay)
                self._metrics.ai_retries.inc()
                await trio.sleep(delay)
                continue
            else:
                settled = True
                self.breaker.record_success()
                self.prewarmed = True
                self._metrics.ai_breaker.set(0)
                return delivery.finish_reason
            finally:
                if not settled:
                    self.breaker.abandon()

    async def _attempt(self, body: bytes, delivery: _Delivery,
                       deadline: trio.CancelScope) -> None:
        """One HTTP request under ``deadline``; the transport raises only ``AiError``s."""
        async with self.transport.stream_post("chat/completions", body,
                                              STREAM_HEADERS) as response:
            if response.status_code != 200:
                raise status_error(response.status_code, response.headers,
                                   await read_at_most(response, MAX_ERROR_BODY))
            kind = response.headers.get("content-type")
            if not is_event_stream(kind):
                raise AiBadResponse(f"expected an event stream, got {kind or 'no type'!r}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise AiBadResponse(f"the event stream came {encoding}-encoded; "
                                    "identity was asked for")
            await self._read_stream(response, delivery, deadline)

    async def _read_stream(self, response: UpstreamResponse, delivery: _Delivery,
                           deadline: trio.CancelScope) -> None:
        """Read events until the body ends, moving ``deadline`` as the stream goes.

        Until the first token the deadline is first_token_timeout; after each token it
        is idle_timeout from then; once the reply is finished ([DONE] or a
        finish_reason) the rest of the body gets FINISH_GRACE seconds, so the
        connection can go back to the pool. Reading stops by cancelling a scope, never
        by ``break``: the cancellation unwinds httpx's async generators from inside.
        The body is read raw (``Accept-Encoding: identity`` is asked for): httpx decodes
        content-encodings in an outer generator whose errors would leave the inner ones
        suspended.
        """
        decoder = SseDecoder(MAX_EVENT_BYTES)
        failure: AiError | None = None
        idle = self.config.idle_timeout
        with trio.CancelScope() as reading:
            async for piece in response.aiter_raw():
                try:
                    events = decoder.feed(piece)
                except AiBadResponse as exc:
                    failure = exc
                    reading.cancel()
                    continue
                texts: list[str] = []
                for data in events:
                    if delivery.finished or failure is not None:
                        break
                    if data == DONE:
                        delivery.finished = True
                        break
                    try:
                        chunk = parse_chunk(data)
                    except AiBadResponse as exc:
                        failure = exc
                        reading.cancel()
                        break
                    if chunk.text:
                        texts.append(chunk.text)
                    if chunk.finish_reason:
                        delivery.finished = True
                        delivery.finish_reason = chunk.finish_reason
                if texts:
                    delivery.deliver("".join(texts), len(texts))
                    deadline.deadline = trio.current_time() + idle
                if delivery.finished:
                    deadline.deadline = trio.current_time() + FINISH_GRACE
        if failure is not None and not delivery.finished:
            raise failure
        if not delivery.finished:
            raise AiConnectionError("the stream ended before the reply was finished")
        delivery.report_rate()

    def _count_error(self, error: AiError) -> None:
        self._metrics.ai_errors.labels(error.kind).inc()

    def _failed(self, error: AiError) -> None:
        self._count_error(error)
        self.breaker.record_failure(trio.current_time())
        if self.breaker.state is not BreakerState.CLOSED:
            self._metrics.ai_breaker.set(1)


@asynccontextmanager
async def open_ai_client(config: AiConfig, metrics: AiMetrics) -> AsyncIterator[AiClient]:
    """The shared connection pool every reply uses (``ai.transport``), closed at exit."""
    wanted = config.max_concurrent_streams + config.prewarm_connections
    headers = {"User-Agent": "customer-service", "Accept-Encoding": "identity"}
    async with open_transport(config, wanted, headers) as transport:
        log.info("AI upstream %s over %s", _redacted(config.base_url), transport.name)
        yield AiClient(config, transport, metrics)
