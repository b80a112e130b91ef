"""The OpenAI-compatible streaming client: one pooled httpx client, pre-warmed.

``stream_reply`` posts ``/chat/completions`` with ``stream: true``, reads the
server-sent events as they arrive and hands each text delta to a callback.
Failures before the first token (429 with Retry-After, 5xx, network errors,
timeouts) are retried with backoff and jitter; after the first token a failure
ends the reply. A circuit breaker stops calling an upstream that keeps
failing. httpx and SSE errors become ``AiError``s here, in one place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import trio
from httpx_sse import EventSource, SSEError

from customer_service.config import AiConfig
from customer_service.core.ai_context import ChatMessage
from customer_service.core.breaker import BreakerState, CircuitBreaker, retry_delay
from customer_service.core.openai_stream import DONE, parse_chunk
from customer_service.errors import (
    AiBadResponse,
    AiCircuitOpen,
    AiConnectionError,
    AiError,
    AiRateLimited,
    AiTimeout,
    AiUpstreamError,
)
from customer_service.server.metrics import Metrics

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 4096


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_detail(body: bytes) -> str:
    try:
        data = msgspec.json.decode(body[:MAX_ERROR_BODY])
    except msgspec.DecodeError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message", ""))[:200]
        if isinstance(error, str):
            return error[:200]
    return ""


def _retryable(error: AiError) -> bool:
    if isinstance(error, AiUpstreamError):
        return error.retryable
    return isinstance(error, AiRateLimited | AiConnectionError | AiTimeout)


class _Delivery:
    """Passes deltas on, and notes the first one (time to first token; no retry after it)."""

    def __init__(self, on_delta: Callable[[str], None], requested_at: float,
                 metrics: Metrics) -> None:
        self._on_delta = on_delta
        self._requested_at = requested_at
        self._metrics = metrics
        self.started = False

    def deliver(self, text: str) -> None:
        if not self.started:
            self.started = True
            self._metrics.ai_first_token.observe(trio.current_time() - self._requested_at)
        self._on_delta(text)


class AiClient:
    def __init__(self, config: AiConfig, http: httpx.AsyncClient, metrics: Metrics) -> None:
        self.config = config
        self._http = http
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
            try:
                response = await self._http.get("models")
                results.append(response.status_code < 500)
            except httpx.HTTPError as exc:
                log.warning("AI pre-warm: %s", exc or type(exc).__name__)
                results.append(False)

        with trio.move_on_after(self.config.connect_timeout + self.config.idle_timeout):
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(one)
        self.prewarmed = bool(results) and all(results)
        log.info("AI upstream %s: %d connection(s) pre-warmed%s", self.config.base_url,
                 sum(results), "" if self.prewarmed else " (upstream not answering; degraded)")

    async def stream_reply(self, messages: list[ChatMessage],
                           on_delta: Callable[[str], None]) -> None:
        """Stream one reply, calling ``on_delta`` for each piece of text; raise ``AiError``."""
        cfg = self.config
        started = trio.current_time()
        first_deadline = started + cfg.first_token_timeout
        body = {"model": cfg.model, "messages": messages, "stream": True,
                "max_tokens": cfg.max_reply_tokens, "temperature": cfg.temperature}
        try:
            with trio.fail_after(cfg.total_timeout):
                with trio.move_on_at(first_deadline) as waiting:
                    await self._slots.acquire()
                if waiting.cancelled_caught:
                    raise AiTimeout(f"all {cfg.max_concurrent_streams} AI streams are busy")
                try:
                    await self._with_retries(body, on_delta, started, first_deadline)
                finally:
                    self._slots.release()
        except trio.TooSlowError:
            self._failed(AiTimeout("the reply took longer than total_timeout"))
            raise AiTimeout(f"the reply took longer than {cfg.total_timeout:g} s") from None

    async def _with_retries(self, body: dict[str, Any], on_delta: Callable[[str], None],
                            started: float, first_deadline: float) -> None:
        attempt = 0
        while True:
            if not self.breaker.allow(trio.current_time()):
                self._count_error(AiCircuitOpen("open"))
                raise AiCircuitOpen("the AI upstream is failing; calls are paused for "
                                    f"{self.breaker.retry_in(trio.current_time()):.0f} s")
            delivery = _Delivery(on_delta, started, self._metrics)
            settled = False
            try:
                await self._attempt(body, delivery.deliver, first_deadline)
            except AiError as exc:
                settled = True
                self._failed(exc)
                if delivery.started or attempt >= self.config.max_retries or not _retryable(exc):
                    raise
                attempt += 1
                delay = retry_delay(attempt, self.config.retry_base_delay,
                                    self.config.retry_max_delay,
                                    exc.retry_after if isinstance(exc, AiRateLimited) else None)
                if trio.current_time() + delay >= first_deadline:
                    raise
                log.info("AI request failed (%s); retry %d in %.2f s", exc, attempt, delay)
                self._metrics.ai_retries.inc()
                await trio.sleep(delay)
                continue
            else:
                settled = True
                self.breaker.record_success()
                self._metrics.ai_breaker.set(0)
                return
            finally:
                if not settled:
                    self.breaker.abandon()

    async def _attempt(self, body: dict[str, Any], deliver: Callable[[str], None],
                       first_deadline: float) -> None:
        """One HTTP request; httpx and SSE errors are converted to ``AiError`` here."""
        try:
            async with self._http.stream(
                    "POST", "chat/completions", json=body,
                    headers={"Accept": "text/event-stream"}) as response:
                if response.status_code != 200:
                    detail = _error_detail(await response.aread())
                    if response.status_code == 429:
                        raise AiRateLimited(f"rate limited by the upstream: {detail}",
                                            _retry_after(response))
                    raise AiUpstreamError(
                        f"the upstream answered {response.status_code}: {detail}",
                        response.status_code)
                await self._read_stream(EventSource(response), deliver, first_deadline)
        except httpx.TimeoutException as exc:
            raise AiTimeout(f"the upstream stalled ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise AiConnectionError(
                f"connection to the upstream failed ({type(exc).__name__}: {exc})") from None
        except SSEError as exc:
            raise AiBadResponse(f"not an event stream: {exc}") from None

    async def _read_stream(self, source: EventSource, deliver: Callable[[str], None],
                           first_deadline: float) -> None:
        """Read events until ``[DONE]``, the end of the body, an error, or a deadline.

        Reading stops by cancelling ``reading`` rather than by ``break`` or ``raise``:
        the cancellation surfaces inside httpx's and httpx-sse's async generators and
        unwinds them, where leaving the loop would leave them suspended.
        """
        finished = False
        failure: AiError | None = None
        tokens = 0
        first_at = 0.0
        with trio.CancelScope(deadline=first_deadline) as reading:
            async for event in source.aiter_sse():
                if finished or failure is not None or not event.data:
                    continue
                if event.data == DONE:
                    finished = True
                    reading.cancel()
                    continue
                try:
                    chunk = parse_chunk(event.data)
                except AiBadResponse as exc:
                    failure = exc
                    reading.cancel()
                    continue
                if chunk.text:
                    if tokens == 0:
                        reading.deadline = math.inf
                        first_at = trio.current_time()
                    tokens += 1
                    self._metrics.ai_tokens.inc()
                    deliver(chunk.text)
                if chunk.finish_reason:
                    finished = True
        if failure is not None:
            raise failure
        if not finished:
            if reading.cancelled_caught:
                raise AiTimeout("no first token within first_token_timeout")
            raise AiConnectionError("the stream ended before the reply was finished")
        elapsed = trio.current_time() - first_at
        if tokens > 1 and elapsed > 0:
            self._metrics.ai_tokens_per_second.observe(tokens / elapsed)

    def _count_error(self, error: AiError) -> None:
        self._metrics.ai_errors.labels(error.kind).inc()

    def _failed(self, error: AiError) -> None:
        self._count_error(error)
        self.breaker.record_failure(trio.current_time())
        if self.breaker.state is not BreakerState.CLOSED:
            self._metrics.ai_breaker.set(1)


@asynccontextmanager
async def open_ai_client(config: AiConfig, metrics: Metrics) -> AsyncIterator[AiClient]:
    """One ``httpx.AsyncClient`` for every reply, closed at exit."""
    timeout = httpx.Timeout(connect=config.connect_timeout, read=config.idle_timeout,
                            write=config.connect_timeout, pool=config.first_token_timeout)
    limits = httpx.Limits(max_connections=config.max_concurrent_streams + config.prewarm_connections,
                          max_keepalive_connections=config.max_concurrent_streams,
                          keepalive_expiry=60)
    headers = {"User-Agent": "customer-service"}
    key = config.resolved_api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(base_url=config.base_url.rstrip("/") + "/", timeout=timeout,
                                 limits=limits, http2=config.http2, headers=headers) as http:
        yield AiClient(config, http, metrics)
