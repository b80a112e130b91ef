"""Run a campaign: claim it, send each pending recipient its message once, stop cleanly.

Reusable by whoever runs campaigns (``campaigns run`` in the foreground, the server's
scheduler): the store, the AI edge (None for a template campaign), what to do with a
delivered message (``deliver``: the server's hub, the CLI's bus publisher) and what
to do with progress figures are passed in. No server imports.

One run:

1. takes the campaign's lease (``claim_campaign``); a lease held by a process of this
   host that no longer exists (``kill -9``) is taken over at once; the lease is renewed
   every ``renew_every`` seconds, and the run stops if it is lost;
2. reads the pending and interrupted recipients a page at a time (never the whole
   audience) and hands them to ``concurrency`` workers;
3. each worker: a contact that unsubscribed or is within the frequency cap is skipped
   (before any AI call; the store checks again when it delivers); a stored text is
   delivered as it is (a resumed run never pays the AI twice for it); else the
   message is rendered (template) or generated (prompt: ``start_generating``, one AI
   call under the campaign's ``Pacer``, ``store_generated``), with retries, then the
   fallback text or ``failed``; then ``deliver_campaign_message`` (exactly once: the
   store skips a recipient already sent);
4. polls the campaign every ``poll_every`` seconds: ``paused`` lets the requests in
   flight finish and waits for ``running`` again (or ``cancelled``); ``cancelled``
   finishes the requests in flight and stops;
5. at the end marks the campaign finished; when the token budget
   (``max_tokens_total``) is reached it stops starting AI calls and finishes with
   ``stop_reason`` saying so (the recipients not reached stay ``pending``).

Every store call and every upstream call has a deadline. A store failure stops the
run (the campaign stays ``running``, resumable: run it again).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import trio

from customer_service.campaigns.lease import RUNNABLE, claim
from customer_service.config import Config
from customer_service.core.campaign_pacing import (
    Action,
    Failure,
    Pacer,
    RetryPolicy,
    budget_allows,
    classify_status,
)
from customer_service.core.campaign_template import MissingField, parse_template, render
from customer_service.core.models import (
    AppendResult,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Contact,
    Recipient,
    RecipientState,
)
from customer_service.errors import (
    AiError,
    AiRateLimited,
    AiUpstreamError,
    Conflict,
    CustomerServiceError,
    NotFound,
    StorageError,
)
from customer_service.storage.base import Store

log = logging.getLogger(__name__)
T = TypeVar("T")



class Generates(Protocol):
    """The AI edge (``campaigns.ai_edge.CampaignAi``): one attempt per call."""

    async def generate(self, prompt: str) -> _GeneratedLike: ...


class _GeneratedLike(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def tokens(self) -> int: ...


Deliver = Callable[[AppendResult], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RunSettings:
    min_gap_seconds: float
    """The frequency cap (``[campaigns] min_hours_between`` in seconds)."""
    reply_tokens: int = 512
    """``[ai] max_reply_tokens``: what one request may cost, set aside for the budget."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    page_size: int = 500
    lease_seconds: float = 15.0
    renew_every: float = 5.0
    poll_every: float = 1.0
    db_timeout: float = 15.0


@dataclass(slots=True)
class Progress:
    campaign_id: int
    status: str
    total: int
    sent: int
    failed: int
    skipped: int
    pending: int
    tokens_used: int
    sent_this_run: int
    elapsed: float
    in_flight: int
    max_in_flight: int
    avg_in_flight: float
    rate_limited: int
    current_rate: float

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped

    @property
    def per_second(self) -> float:
        return self.sent_this_run / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RunOutcome:
    status: CampaignStatus
    stop_reason: str
    progress: Progress


def settings_for(config: Config) -> RunSettings:
    """The run's settings from the configuration (the CLI and the server's scheduler)."""
    ai = config.ai
    return RunSettings(min_gap_seconds=config.campaigns.min_hours_between * 3600,
                       reply_tokens=ai.max_reply_tokens,
                       retry=RetryPolicy(max_attempts=ai.max_retries + 1,
                                         base_delay=ai.retry_base_delay,
                                         max_delay=ai.retry_max_delay))


def _now() -> datetime:
    return datetime.now(UTC)


class _Run:
    def __init__(self, store: Store, campaign: Campaign, *, ai: Generates | None,
                 deliver: Deliver | None, owner: str, settings: RunSettings,
                 progress: Callable[[Progress], None] | None) -> None:
        self.store = store
        self.campaign = campaign
        self.cid = campaign.id
        self.ai = ai
        self.deliver = deliver
        self.owner = owner
        self.settings = settings
        self.on_progress = progress
        spec = campaign.spec
        self.template = parse_template(spec.body)
        self.fallback = parse_template(spec.fallback) if spec.fallback else None
        self.pacer = Pacer(spec.rate, concurrency=spec.concurrency)
        self.tokens_used = campaign.tokens_used
        self.counts: dict[RecipientState, int] = {}
        self.sent_this_run = 0
        self.started = trio.current_time()
        self.status = CampaignStatus.RUNNING
        self.stop_reason = ""
        self.stop_status: CampaignStatus | None = None
        self.running = trio.Event()
        self.running.set()
        self.gate = trio.Lock()
        self.ai_in_flight = 0
        self.ai_done = trio.Event()
        self.lease_deadline = trio.current_time() + settings.lease_seconds

    # -- helpers -----------------------------------------------------------------------------
    async def db(self, work: Awaitable[T]) -> T:
        """A store call under the run's database deadline."""
        try:
            with trio.fail_after(self.settings.db_timeout):
                return await work
        except trio.TooSlowError:
            raise StorageError(f"campaign {self.cid}: the database did not answer within "
                               f"{self.settings.db_timeout:g} s") from None

    @property
    def stopping(self) -> bool:
        return self.stop_status is not None

    def stop(self, status: CampaignStatus, reason: str) -> None:
        if self.stop_status is None:
            self.stop_status = status
            self.stop_reason = reason
            log.info("campaign %d: stopping (%s)", self.cid, reason or status)
        self.running.set()  # wake whoever waits for a resume

    def progress(self) -> Progress:
        c = self.counts
        now = trio.current_time()
        return Progress(
            self.cid, str(self.status), sum(c.values()), c.get(RecipientState.SENT, 0),
            c.get(RecipientState.FAILED, 0), c.get(RecipientState.SKIPPED, 0),
            c.get(RecipientState.PENDING, 0) + c.get(RecipientState.GENERATING, 0),
            self.tokens_used, self.sent_this_run, now - self.started, self.pacer.in_flight,
            self.pacer.max_in_flight, self.pacer.average_in_flight(now),
            self.pacer.rate_limited_count, self.pacer.current)

    def report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def moved(self, state: RecipientState) -> None:
        self.counts[RecipientState.PENDING] = self.counts.get(RecipientState.PENDING, 0) - 1
        self.counts[state] = self.counts.get(state, 0) + 1
        if state is RecipientState.SENT:
            self.sent_this_run += 1

    # -- the watcher: lease, pause, cancel ---------------------------------------------------
    async def watch(self) -> None:
        last_renew = trio.current_time()
        while True:
            await trio.sleep(self.settings.poll_every)
            now = trio.current_time()
            if now - last_renew >= self.settings.renew_every:
                try:
                    renewed = await self.db(self.store.claim_campaign(
                        self.cid, self.owner, self.settings.lease_seconds, _now()))
                except StorageError as exc:
                    log.warning("campaign %d: could not renew the lease: %s", self.cid, exc)
                    if trio.current_time() >= self.lease_deadline - 1:
                        self.stop(CampaignStatus.RUNNING, "lease lost")
                        return
                else:
                    if renewed is None:
                        self.stop(CampaignStatus.RUNNING, "lease lost")
                        return
                    self.lease_deadline = now + self.settings.lease_seconds
                    last_renew = now
            try:
                current = await self.db(self.store.get_campaign(self.cid))
            except StorageError as exc:
                log.warning("campaign %d: could not read its status: %s", self.cid, exc)
                continue
            if current is None:
                self.stop(CampaignStatus.CANCELLED, "deleted")
                return
            self.apply_status(current)
            self.report()

    def apply_status(self, current: Campaign) -> None:
        if current.status is CampaignStatus.CANCELLED:
            self.status = current.status
            self.stop(CampaignStatus.CANCELLED, current.stop_reason or "cancelled")
        elif current.status is CampaignStatus.PAUSED and self.running.is_set():
            self.status = current.status
            log.info("campaign %d: paused; finishing the requests in flight", self.cid)
            self.running = trio.Event()
        elif current.status is CampaignStatus.RUNNING and not self.running.is_set():
            self.status = current.status
            log.info("campaign %d: resumed", self.cid)
            self.running.set()
        elif current.status is CampaignStatus.FINISHED:
            self.stop(CampaignStatus.FINISHED, current.stop_reason)

    # -- reading recipients ------------------------------------------------------------------
    async def produce(self, send: trio.MemorySendChannel[tuple[Recipient, Contact]]) -> None:
        after = 0
        async with send:
            while not self.stopping:
                page = await self.db(self.store.recipients_to_send(
                    self.cid, after, self.settings.page_size))
                if not page:
                    return
                for item in page:
                    while not self.running.is_set():
                        self.report()
                        await self.running.wait()
                    if self.stopping:
                        return
                    await send.send(item)
                after = page[-1][0].contact_id

    async def work(self, receive: trio.MemoryReceiveChannel[tuple[Recipient, Contact]]) -> None:
        async with receive:
            async for recipient, contact in receive:
                await self.one(recipient, contact)

    # -- one recipient -----------------------------------------------------------------------
    async def one(self, recipient: Recipient, contact: Contact) -> None:
        now = _now()
        skip = self.skip_reason(contact, now)
        if skip:
            await self.db(self.store.finish_recipient(self.cid, contact.id,
                                                      RecipientState.SKIPPED, skip))
            self.moved(RecipientState.SKIPPED)
            return
        try:
            text = recipient.text
            if text is None:
                text = await self.message_for(contact, recipient.attempts)
            if text is None:
                return  # failed (already recorded) or the campaign is stopping
            await self.send(contact, text)
        except MissingField as exc:
            await self.fail(contact, str(exc))
        except (NotFound, Conflict) as exc:  # the contact was deleted meanwhile
            log.info("campaign %d: contact %d: %s", self.cid, contact.id, exc)
            self.moved(RecipientState.FAILED)

    def skip_reason(self, contact: Contact, now: datetime) -> str:
        if contact.unsubscribed:
            return "unsubscribed"
        gap = self.settings.min_gap_seconds
        last = contact.last_campaign_at
        if gap > 0 and last is not None and now - last < timedelta(seconds=gap):
            return f"frequency cap: got a campaign message at {last:%Y-%m-%d %H:%M} UTC"
        return ""

    async def fail(self, contact: Contact, error: str) -> None:
        await self.db(self.store.finish_recipient(self.cid, contact.id, RecipientState.FAILED,
                                                  error[:500]))
        self.moved(RecipientState.FAILED)

    async def send(self, contact: Contact, text: str) -> None:
        delivery = await self.db(self.store.deliver_campaign_message(
            self.cid, contact.id, text, self.settings.min_gap_seconds, _now()))
        if delivery.result is None:
            already = delivery.skipped == "already sent"
            self.moved(RecipientState.SENT if already else RecipientState.SKIPPED)
            if already:
                self.sent_this_run -= 1
            return
        self.moved(RecipientState.SENT)
        if self.deliver is not None:
            try:
                await self.deliver(delivery.result)
            except CustomerServiceError as exc:  # stored: the server finds it by itself
                log.warning("campaign %d: live delivery to conversation %d failed: %s",
                            self.cid, delivery.result.message.conversation_id, exc)

    async def paced(self) -> None:
        """Wait for the campaign's next request slot (one request at a time passes)."""
        async with self.gate:
            while True:
                delay = self.pacer.delay(trio.current_time())
                if delay <= 0:
                    self.pacer.sent(trio.current_time())
                    return
                await trio.sleep(delay)

    async def message_for(self, contact: Contact, attempts: int) -> str | None:
        """The text for ``contact``: rendered, or generated with retries; None when it
        failed (recorded) or the campaign stops first."""
        if self.ai is None or self.campaign.spec.kind is CampaignKind.TEMPLATE:
            text = render(self.template, contact)
            await self.paced()
            return text
        prompt = render(self.template, contact)
        counted = 0
        rate_limited = 0
        error = ""
        while True:
            if not await self.budget_ok():  # True: one request's tokens are set aside
                return None
            try:
                outcome = await self.attempt(self.ai, contact, prompt)
            finally:
                self.release()
            if not isinstance(outcome, AiError):
                return outcome
            exc = outcome
            failure = self.classify(exc)
            if failure is Failure.RATE_LIMITED:
                rate_limited += 1
                retry_after = exc.retry_after if isinstance(exc, AiRateLimited) else None
                self.pacer.rate_limited(trio.current_time(), retry_after)
            else:
                counted += 1
            error = f"{exc.kind}: {exc.message}"
            decision = self.settings.retry.decide(failure, counted, rate_limited)
            log.info("campaign %d: contact %d: %s (%s)", self.cid, contact.id, error,
                     decision.action)
            if decision.action is Action.STOP_CAMPAIGN:
                self.stop(CampaignStatus.PAUSED, f"the AI upstream refused: {error}"[:500])
                return None
            if decision.action is Action.GIVE_UP:
                break
            if decision.delay > 0:
                await trio.sleep(decision.delay)
        if self.fallback is not None:
            return render(self.fallback, contact)
        await self.fail(contact, f"after {counted + rate_limited} attempt(s): {error}")
        return None

    @staticmethod
    def classify(error: AiError) -> Failure:
        if isinstance(error, AiRateLimited):
            return Failure.RATE_LIMITED
        if isinstance(error, AiUpstreamError):
            return classify_status(error.status)
        return Failure.RETRYABLE

    async def attempt(self, ai: Generates, contact: Contact, prompt: str
                      ) -> str | AiError | None:
        """One paced AI request and its text stored; the error when it failed; None when
        the campaign stops first."""
        await self.paced()
        if self.stopping:
            return None
        await self.db(self.store.start_generating(self.cid, contact.id))
        self.pacer.begin(trio.current_time())
        try:
            generated = await ai.generate(prompt)
        except AiError as exc:
            return exc
        finally:
            self.pacer.end(trio.current_time())
        self.tokens_used = await self.db(self.store.store_generated(
            self.cid, contact.id, generated.text, generated.tokens))
        return generated.text

    async def budget_ok(self) -> bool:
        """Wait until one more request fits in the token budget, and set its tokens aside
        (``ai_in_flight``, until ``release``): the check and the reservation are one step,
        so workers waiting together for the pace cannot all pass on the same figures."""
        budget = self.campaign.spec.max_tokens_total
        per = self.settings.reply_tokens
        while not budget_allows(self.tokens_used, self.ai_in_flight * per, per, budget):
            if self.ai_in_flight == 0:
                self.stop(CampaignStatus.FINISHED,
                          f"token budget reached ({self.tokens_used:,} of {budget:,} tokens)")
                return False
            await self.ai_done.wait()
        if self.stopping:
            return False
        self.ai_in_flight += 1
        return True

    def release(self) -> None:
        """A request set aside by ``budget_ok`` is over (its tokens, if any, counted)."""
        self.ai_in_flight -= 1
        self.ai_done.set()
        self.ai_done = trio.Event()

    # -- the whole run -----------------------------------------------------------------------
    async def run(self) -> None:
        self.counts = dict(await self.db(self.store.recipient_counts(self.cid)))
        self.report()
        for _ in range(3):  # a recipient left behind (a worker's deadline) gets another pass
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.watch)
                async with trio.open_nursery() as workers:
                    send, receive = trio.open_memory_channel[tuple[Recipient, Contact]](0)
                    workers.start_soon(self.produce, send)
                    for _ in range(self.campaign.spec.concurrency):
                        workers.start_soon(self.work, receive.clone())
                    await receive.aclose()
                nursery.cancel_scope.cancel()
            self.counts = dict(await self.db(self.store.recipient_counts(self.cid)))
            left = (self.counts.get(RecipientState.PENDING, 0)
                    + self.counts.get(RecipientState.GENERATING, 0))
            if self.stopping or left == 0:
                break
        await self.finish()

    async def finish(self) -> None:
        status = self.stop_status
        reason = self.stop_reason
        if status is None:
            status = CampaignStatus.FINISHED
        if status in (CampaignStatus.FINISHED, CampaignStatus.PAUSED):
            try:
                updated = await self.db(self.store.set_campaign_status(
                    self.cid, status, expected=(CampaignStatus.RUNNING, CampaignStatus.PAUSED),
                    stop_reason=reason))
                self.status = updated.status
                self.stop_reason = updated.stop_reason
            except Conflict:  # cancelled meanwhile
                current = await self.db(self.store.get_campaign(self.cid))
                if current is not None:
                    self.status = current.status
        else:
            self.status = status
        self.report()
        log.info("campaign %d: %s%s: %d sent in this run", self.cid, self.status,
                 f" ({self.stop_reason})" if self.stop_reason else "", self.sent_this_run)


async def run_campaign(store: Store, campaign_id: int, *, ai: Generates | None,
                       deliver: Deliver | None, owner: str, settings: RunSettings,
                       progress: Callable[[Progress], None] | None = None) -> RunOutcome:
    """Run the campaign until it finishes, is cancelled, pauses for a wrong upstream
    configuration, reaches its token budget or loses its lease (see the module docstring).
    Raise ``NotFound``/``Conflict`` when it cannot start, ``StorageError`` when the
    database fails (the campaign stays resumable). A prompt campaign needs ``ai``."""
    try:
        with trio.fail_after(settings.db_timeout):
            campaign = await claim(store, campaign_id, owner, settings.lease_seconds)
    except trio.TooSlowError:
        raise StorageError(f"campaign {campaign_id}: the database did not answer within "
                           f"{settings.db_timeout:g} s") from None
    if campaign.spec.kind is CampaignKind.PROMPT and ai is None:
        raise Conflict(f"campaign {campaign_id} is an AI prompt campaign: [ai] enabled = true "
                       "is needed to run it")
    run = _Run(store, campaign, ai=ai, deliver=deliver, owner=owner, settings=settings,
               progress=progress)
    try:
        if campaign.status is not CampaignStatus.RUNNING:
            campaign = await run.db(store.set_campaign_status(
                campaign_id, CampaignStatus.RUNNING, expected=RUNNABLE))
            run.campaign = campaign
        log.info("campaign %d: running (owner %s)", campaign_id, owner)
        await run.run()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(settings.db_timeout):
            try:
                await store.release_campaign(campaign_id, owner)
            except StorageError as exc:
                log.warning("campaign %d: could not release its lease: %s", campaign_id, exc)
    return RunOutcome(run.status, run.stop_reason, run.progress())
