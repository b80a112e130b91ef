"""The webhook sender: delivers the outbox's rows by HTTP POST, off the message path.

The chat only writes outbox rows in its own transactions (``storage/_sql_webhooks.py``);
nothing here is awaited by a message, an accept or a close. The sender looks at the queue
(a read) every ``[webhooks] poll_interval``, after each commit of messages (``nudge``; at
most every ``IDLE_GAP`` while idle) and as soon as one of its deliveries ends,
claims what may go (a lease in the database, so of several instances exactly one sends
each row; per webhook, one conversation's events in order), and sends at most
``max_in_flight`` at once, each under ``timeout``. Memory is bounded by ``max_in_flight``
rows and a few hundred bytes of each answer. ``core/webhooks.py`` decides what an answer
means (delivered, retry at a time, dead letter); the outcome is written back with the
claim's owner checked. Delivered rows are pruned after ``KEEP_DELIVERED``.

``post_event`` is also what ``customer-service webhooks test`` sends with.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import trio

from customer_service import __version__
from customer_service.config import WebhooksConfig
from customer_service.core import webhooks as hooks
from customer_service.errors import BadRequest, StorageError
from customer_service.storage.base import Store

log = logging.getLogger(__name__)

STORE_DEADLINE = 5.0
"""Seconds any one store call of the sender may take."""
PREVIEW_BYTES = 512
"""Bytes of a receiver's answer kept (the outbox's ``last_error``, ``webhooks test``)."""
KEEP_DELIVERED = timedelta(days=7)
PRUNE_EVERY = 3600.0
PRUNE_BATCHES = 20
IDLE_GAP = 0.02
"""Seconds at least between two looks at an idle queue, however often commits nudge."""
LOOK_SHARE = 10.0
"""An idle sender waits at least this many times as long as its last look at the queue
took: its reads take at most about a tenth of the database's time."""
IDLE_SPACING_CAP = 5.0
"""Seconds at most between two looks of an idle sender: a look slowed by a locked
database (up to ``STORE_DEADLINE``) does not pause every webhook for ten times as long."""
RECORD_BATCH = 500
"""Outcomes written in one transaction, at most."""


def store_problem(exc: Exception) -> str:
    """What a failed store call of the sender says in the log (a deadline has no text)."""
    if isinstance(exc, trio.TooSlowError):
        return f"the database did not answer within {STORE_DEADLINE:g} s"
    return str(exc) or type(exc).__name__


def idle_spacing(looked: float) -> float:
    """Seconds from the start of an idle look at the queue to the next one, given how long
    it took: ``LOOK_SHARE`` times as long, at least ``IDLE_GAP``, at most
    ``IDLE_SPACING_CAP``."""
    return min(IDLE_SPACING_CAP, max(IDLE_GAP, LOOK_SHARE * looked))


def lease_seconds(config: WebhooksConfig) -> float:
    """A claim outlives the request and the write of its outcome; a holder that died gives
    its rows up when it lapses."""
    return config.timeout + 2 * STORE_DEADLINE


@dataclass(frozen=True, slots=True)
class Answer:
    """A receiver's answer (``status``), or why there was none (``error``)."""

    status: int | None
    error: str
    retry_after: str | None
    duration_ms: int
    preview: bytes


def unsendable(url: str) -> str | None:
    """Why httpx or the resolver cannot send to ``url`` (which ``check_url`` passed): a host
    that is no IDNA name (an empty or 64-character label, an emoji), a control character;
    None when it can be sent to."""
    try:
        host = httpx.URL(url).raw_host.decode("ascii")
        if ":" not in host:  # an IPv6 literal has no labels
            host.encode("idna")  # what the resolver does with the name
    except (httpx.InvalidURL, UnicodeError) as exc:
        return str(exc) or type(exc).__name__
    return None


def check_sendable(url: str, option: str = "URL") -> str:
    """``url`` when it can be sent to; else ``BadRequest`` naming ``option``."""
    problem = unsendable(url)
    if problem is not None:
        raise BadRequest(f"{option}: {url!r} cannot be sent to ({problem})")
    return url


async def post_event(client: httpx.AsyncClient, url: str, secret: str, event_id: str,
                     body: bytes, *, timeout: float) -> Answer:
    """POST one signed event; never raises for the receiver's failures (nor for a URL that
    cannot be sent to: a row added before the check, or by another version)."""
    headers = hooks.signed_headers(secret, event_id, int(time.time()), body, __version__)
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with trio.fail_after(timeout):
            # identity, and the raw bytes: a compressed answer is not inflated (a 1 MB gzip
            # "bomb" would be 1 GB; only the first raw chunk, at most 64 KB, is held)
            headers["Accept-Encoding"] = "identity"
            async with client.stream("POST", url, content=body, headers=headers) as response:
                preview = bytearray()
                async for chunk in response.aiter_raw():
                    preview += chunk
                    if len(preview) >= PREVIEW_BYTES:
                        break
                return Answer(response.status_code, "", response.headers.get("retry-after"),
                              took(), bytes(preview[:PREVIEW_BYTES]))
    except (trio.TooSlowError, httpx.TimeoutException):
        return Answer(None, f"no answer within {timeout:g} s", None, took(), b"")
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        reason = failure_text(exc)
        return Answer(None, f"{type(exc).__name__}: {reason}"[:hooks.ERROR_TEXT_LIMIT], None,
                      took(), b"")


def failure_text(exc: BaseException) -> str:
    """Why a request failed: the exception's text or, when it has none (httpx's TLS errors),
    the first text down its causes (``[SSL: WRONG_VERSION_NUMBER] ...`` for https:// to a
    plain HTTP port)."""
    cause: BaseException | None = exc
    for _ in range(6):
        if cause is None:
            break
        if str(cause):
            return str(cause) if cause is exc else f"{type(cause).__name__}: {cause}"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def answer_text(answer: Answer) -> str:
    """What the outbox keeps of an answer that was no success."""
    if answer.status is None:
        return hooks.printable(answer.error)
    text = hooks.printable(answer.preview.decode("utf-8", "replace").strip())
    return f"HTTP {answer.status}" + (f": {text}" if text else "")


def http_client(config: WebhooksConfig) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=config.max_in_flight,
                          max_keepalive_connections=config.max_in_flight, keepalive_expiry=30)
    return httpx.AsyncClient(timeout=httpx.Timeout(config.timeout), limits=limits,
                             follow_redirects=False, trust_env=False)


class WebhookSender:
    def __init__(self, store: Store, config: WebhooksConfig, owner: str) -> None:
        self.store = store
        self.config = config
        self.owner = owner
        self.policy = hooks.RetryPolicy(base=config.retry_base, cap=config.retry_cap,
                                        hours=config.retry_hours)
        self._in_flight = 0
        self._busy: dict[int, int] = {}
        """Rows being sent, by webhook id: one receiver that hangs holds at most ``share``."""
        self.share = max(1, config.max_in_flight // 2)
        self._wake = trio.Event()
        self._next_prune = 0.0
        self._outcomes, self._outcomes_out = trio.open_memory_channel[
            tuple[hooks.WebhookDelivery, hooks.AttemptResult]](config.max_in_flight)

    def nudge(self) -> None:
        """Look at the queue now rather than at the next poll (the committer calls this after
        each commit: its events may be in the outbox)."""
        self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        async with http_client(self.config) as client, trio.open_nursery() as nursery:
            nursery.start_soon(self._record_outcomes)
            task_status.started()
            log.info("webhook sender %s: started (at most %d in flight)", self.owner,
                     self.config.max_in_flight)
            while True:
                looked_at = trio.current_time()
                free = self.config.max_in_flight - self._in_flight
                claimed = await self._claim(free) if free > 0 else []
                looked = trio.current_time() - looked_at
                for delivery in claimed:
                    self._in_flight += 1
                    self._busy[delivery.webhook_id] = self._busy.get(delivery.webhook_id, 0) + 1
                    nursery.start_soon(self._deliver, client, delivery)
                if free <= 0 or len(claimed) < free:
                    with trio.move_on_after(self.config.poll_interval):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    if not claimed:  # idle: commits' nudges cost one read per gap, and a
                        # slow look (a long queue behind a failing receiver) waits longer
                        await trio.sleep_until(looked_at + idle_spacing(looked))
                await self._maybe_prune()

    async def _claim(self, limit: int) -> list[hooks.WebhookDelivery]:
        now = datetime.now(UTC)
        try:
            with trio.fail_after(STORE_DEADLINE):
                if not await self.store.webhook_work_due(now):
                    return []
                return await self.store.claim_webhook_deliveries(
                    self.owner, now, lease_seconds(self.config), limit,
                    share=self.share, busy=dict(self._busy))
        except (StorageError, trio.TooSlowError) as exc:
            log.warning("webhook sender %s: cannot claim deliveries: %s", self.owner,
                        store_problem(exc))
            return []

    async def _deliver(self, client: httpx.AsyncClient, delivery: hooks.WebhookDelivery) -> None:
        """Send one claimed row; its outcome goes to the recorder (a bounded channel: a
        slow database holds this slot rather than piling outcomes up)."""
        try:
            answer = await post_event(client, delivery.url, delivery.secret, delivery.event_id,
                                      delivery.body, timeout=self.config.timeout)
            success = answer.status is not None and 200 <= answer.status <= 299
            result = hooks.decide(
                status=answer.status, error="" if success else answer_text(answer),
                retry_after_header=answer.retry_after, attempts=delivery.attempts + 1,
                queued_at=delivery.queued_at, now=datetime.now(UTC),
                duration_ms=answer.duration_ms, policy=self.policy, draw=random.random())
            self._log(delivery, result)
            await self._outcomes.send((delivery, result))
        finally:
            self._in_flight -= 1
            left = self._busy.get(delivery.webhook_id, 1) - 1
            if left > 0:
                self._busy[delivery.webhook_id] = left
            else:
                self._busy.pop(delivery.webhook_id, None)

    async def _record_outcomes(self) -> None:
        """Write outcomes in batches (one transaction for all that are waiting), then look
        at the queue again: a conversation's next event may go now."""
        async for first in self._outcomes_out:
            batch = [first]
            while len(batch) < RECORD_BATCH:
                try:
                    batch.append(self._outcomes_out.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                with trio.fail_after(STORE_DEADLINE):
                    await self.store.record_webhook_attempts(
                        self.owner, [(delivery.id, result) for delivery, result in batch])
            except (StorageError, trio.TooSlowError) as exc:
                for delivery, _ in batch:
                    log.warning("webhook %s event %s: outcome not stored (%s); sent again "
                                "when the claim lapses", delivery.webhook_id,
                                delivery.event_id, store_problem(exc))
            self._wake.set()

    def _log(self, delivery: hooks.WebhookDelivery, result: hooks.AttemptResult) -> None:
        if result.state is hooks.DeliveryState.DELIVERED:
            log.debug("webhook %s event %s (%s): delivered, HTTP %s in %d ms",
                      delivery.webhook_id, delivery.event_id, delivery.event_type,
                      result.status, result.duration_ms)
        elif result.state is hooks.DeliveryState.DEAD:
            log.warning("webhook %s event %s (%s): dead letter after %d attempts: %s",
                        delivery.webhook_id, delivery.event_id, delivery.event_type,
                        delivery.attempts + 1, result.error)
        else:
            log.info("webhook %s event %s (%s): attempt %d failed (%s); next at %s",
                     delivery.webhook_id, delivery.event_id, delivery.event_type,
                     delivery.attempts + 1, result.error, hooks.iso(result.next_attempt_at))

    async def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        before = datetime.now(UTC) - KEEP_DELIVERED
        try:
            for _ in range(PRUNE_BATCHES):
                with trio.fail_after(STORE_DEADLINE):
                    if await self.store.prune_webhook_deliveries(before) == 0:
                        break
        except (StorageError, trio.TooSlowError) as exc:
            log.warning("webhook sender %s: pruning delivered events failed: %s",
                        self.owner, store_problem(exc))


