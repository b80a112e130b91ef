"""Webhooks, decided without I/O: events, checks, signatures, retries, ordering.

Everything the outbox and its sender decide lives here, as plain functions of their
inputs (the clock and the random draw are passed in), so they are tested without an
event loop (``tests/unit/test_webhooks_core.py``):

- the event names (``EVENT_TYPES``) and the checks on what ``webhooks add`` is given
  (URL, events, secret);
- an event's body (the exact bytes sent, made once when the change commits) and its
  signature: ``v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``, checked in
  constant time with a replay window (``verify``; the docs show the same in Python and
  Node.js);
- the retry schedule: exponential backoff with full jitter, capped, for ``retry_hours``
  after the event was queued; ``Retry-After`` (seconds or an HTTP date) honoured;
- what an attempt's outcome means (``decide``): delivered, retry at a time, or a dead
  letter;
- which pending deliveries may go now (``deliverable``): per webhook, only the oldest
  pending event of each conversation, so one conversation's events arrive in order.

The store runs the same ordering rule in SQL (``storage/_sql_webhooks.py``); the
contract tests check it against ``deliverable``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import msgspec

from customer_service.core.breaker import retry_after
from customer_service.core.models import (
    Campaign,
    CampaignStatus,
    Conversation,
    ConversationStatus,
    RecipientState,
    Role,
    StoredMessage,
    format_ts,
)
from customer_service.errors import BadRequest

_encode = msgspec.json.Encoder().encode

MESSAGE_CREATED = "message.created"
CONVERSATION_CREATED = "conversation.created"
CONVERSATION_ASSIGNED = "conversation.assigned"
CONVERSATION_CLOSED = "conversation.closed"
CAMPAIGN_FINISHED = "campaign.finished"
PING = "ping"

EVENT_TYPES: tuple[str, ...] = (MESSAGE_CREATED, CONVERSATION_CREATED, CONVERSATION_ASSIGNED,
                                CONVERSATION_CLOSED, CAMPAIGN_FINISHED)
"""What a webhook may subscribe to (``ping`` is only sent by ``webhooks test``)."""

SIGNATURE_VERSION = "v1"
REPLAY_WINDOW_SECONDS = 300
"""Receivers should reject a timestamp further than this from their clock (the docs' examples do)."""
MAX_URL_LENGTH = 2048
MAX_SECRET_LENGTH = 256
ATTEMPTS_KEPT = 20
"""Attempts logged per delivery; older ones are deleted as new ones are written."""
ERROR_TEXT_LIMIT = 500
"""Characters of an error (or of a receiver's answer) kept in the outbox."""


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


# --- records ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A change to report, built inside the transaction that makes it."""

    type: str
    conversation_id: int | None
    """The ordering key: events of one conversation go to a webhook in order. None: none."""
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    at: datetime
    status: int | None
    """The receiver's HTTP status; None when there was no answer (``error`` says why)."""
    error: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event for one webhook: a row of the outbox."""

    id: int
    webhook_id: int
    event_id: str
    event_type: str
    conversation_id: int | None
    body: bytes
    created_at: datetime
    queued_at: datetime
    """When it was queued (or replayed): retries end ``retry_hours`` after it."""
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str
    delivered_at: datetime | None
    url: str = ""
    secret: str = ""
    log: tuple[WebhookAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What the sender writes back after one attempt (``decide`` made it)."""

    state: DeliveryState
    next_attempt_at: datetime
    at: datetime
    status: int | None
    error: str
    duration_ms: int


# --- checks -----------------------------------------------------------------

def check_url(url: str, option: str = "URL") -> str:
    """An http(s) URL with a host; else ``BadRequest`` naming ``option``."""
    text = url.strip()
    if not text:
        raise BadRequest(f"{option}: a webhook needs a URL, e.g. https://example.com/hooks")
    if len(text) > MAX_URL_LENGTH:
        raise BadRequest(f"{option}: longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadRequest(f"{option}: {text!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"{option}: {text!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise BadRequest(f"{option}: {text!r} has no host")
    if port == 0:
        raise BadRequest(f"{option}: {text!r} has port 0")
    if any(ch.isspace() for ch in text):
        raise BadRequest(f"{option}: {text!r} contains spaces")
    if any(not ch.isprintable() for ch in text):
        raise BadRequest(f"{option}: {text!r} contains control characters")
    if "@" in parts.netloc:
        raise BadRequest(f"{option}: {text!r} has a user name or password, which 'webhooks "
                         "list' would show; the receiver checks X-Webhook-Signature instead")
    if "#" in text:
        raise BadRequest(f"{option}: {text!r} has a #fragment, which is never sent")
    return text


def parse_events(text: str | Iterable[str], option: str = "--events") -> tuple[str, ...]:
    """Comma-separated event names, checked, without repeats, in ``EVENT_TYPES`` order."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [item.strip() for item in items if item.strip()]
    if not names:
        raise BadRequest(f"{option}: name at least one event: {', '.join(EVENT_TYPES)}")
    unknown = [name for name in names if name not in EVENT_TYPES]
    if unknown:
        raise BadRequest(f"{option}: unknown event {unknown[0]!r}; the events are "
                         + ", ".join(EVENT_TYPES))
    return tuple(name for name in EVENT_TYPES if name in names)


def check_secret(secret: str, option: str = "--secret") -> str:
    if not secret or not secret.strip():
        raise BadRequest(f"{option}: the secret must not be empty (leave the option out to "
                         "get a generated one)")
    if len(secret) > MAX_SECRET_LENGTH:
        raise BadRequest(f"{option}: longer than {MAX_SECRET_LENGTH} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise BadRequest(f"{option}: the secret must not contain spaces or control characters")
    return secret


def printable(text: str) -> str:
    """A receiver's words made safe to keep and print: each control character (ESC of a
    terminal sequence that would recolour, erase or move the operator's lines, a newline)
    written as its escape, ``\\x1b``."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def subscribed(events: Iterable[str], event_type: str) -> bool:
    return event_type in events


# --- the events of the chat's changes -----------------------------------------

def reported(message: StoredMessage) -> bool:
    """Whether a stored message is a ``message.created`` event: every role but ``system``
    (the server's own notices: welcome, away and closed texts, AI failure notices)."""
    return message.sender_role is not Role.SYSTEM


def message_created(message: StoredMessage, visitor_id: int | None = None,
                    contact_id: int | None = None) -> WebhookEvent:
    """The conversation's visitor and contact ride along (read with the conversation's row,
    which the append locks anyway), so a receiver needs no mapping of its own."""
    return WebhookEvent(MESSAGE_CREATED, message.conversation_id, {
        "conversation_id": message.conversation_id, "visitor_id": visitor_id,
        "contact_id": contact_id, "seq": message.seq,
        "role": message.sender_role.value, "sender_id": message.sender_id,
        "sender_name": message.sender_name, "text": message.content,
        "client_id": message.client_id, "campaign_id": message.campaign_id,
        "created_at": iso(message.created_at)})


def conversation_created(conversation: Conversation, contact_id: int | None) -> WebhookEvent:
    return WebhookEvent(CONVERSATION_CREATED, conversation.id, {
        "conversation_id": conversation.id, "visitor_id": conversation.visitor_id,
        "contact_id": contact_id, "status": conversation.status.value,
        "created_at": iso(conversation.created_at)})


def state_events(before: Conversation, after: Conversation, agent_name: str = ""
                 ) -> list[WebhookEvent]:
    """``conversation.assigned`` when the assignee changes to an agent (an accept, a
    transfer, auto-assignment), ``conversation.closed`` when the status becomes closed.
    ``agent_name`` is the display name of ``after.assigned_to`` ("" for none)."""
    events: list[WebhookEvent] = []
    if after.assigned_to is not None and after.assigned_to != before.assigned_to:
        events.append(WebhookEvent(CONVERSATION_ASSIGNED, after.id, {
            "conversation_id": after.id, "visitor_id": after.visitor_id,
            "agent_id": after.assigned_to, "agent_name": agent_name,
            "previous_agent_id": before.assigned_to, "status": after.status.value}))
    if (after.status is ConversationStatus.CLOSED
            and before.status is not ConversationStatus.CLOSED):
        events.append(WebhookEvent(CONVERSATION_CLOSED, after.id, {
            "conversation_id": after.id, "visitor_id": after.visitor_id,
            "agent_id": after.assigned_to,
            "agent_name": agent_name if after.assigned_to is not None else "",
            "last_seq": after.last_seq}))
    return events


def campaign_finished(before: Campaign, after: Campaign,
                      counts: Mapping[RecipientState, int]) -> list[WebhookEvent]:
    """``campaign.finished`` when a campaign's status becomes finished, with its counts."""
    if after.status is not CampaignStatus.FINISHED or before.status is CampaignStatus.FINISHED:
        return []
    return [WebhookEvent(CAMPAIGN_FINISHED, None, {
        "campaign_id": after.id, "name": after.spec.name, "status": after.status.value,
        "recipients": {state.value: int(counts.get(state, 0)) for state in RecipientState},
        "tokens_used": after.tokens_used, "stop_reason": after.stop_reason,
        "started_at": None if after.started_at is None else iso(after.started_at),
        "finished_at": None if after.finished_at is None else iso(after.finished_at)})]


# --- bodies and signatures --------------------------------------------------

def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z`` (the protocol's ``ts``, cached)."""
    return format_ts(moment)


def event_body(event_id: str, event_type: str, created_at: datetime,
               data: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, UTF-8."""
    return _encode({"id": event_id, "type": event_type, "created_at": iso(created_at),
                    "data": data})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``X-Webhook-Signature``: ``v1=`` and the hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes,
                   version: str) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "User-Agent": f"customer-service/{version}",
            "X-Webhook-Id": event_id,
            "X-Webhook-Timestamp": str(timestamp),
            "X-Webhook-Signature": sign(secret, timestamp, body)}


def verify(secret: str, signature: str, timestamp: str, body: bytes, now: float, *,
           tolerance: float = REPLAY_WINDOW_SECONDS) -> bool:
    """What a receiver does: the timestamp within ``tolerance`` of ``now`` and one of the
    header's space-separated ``v1=`` signatures equal (constant time) to ours."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs(now - stamp) > tolerance:
        return False
    expected = sign(secret, stamp, body)
    return any(hmac.compare_digest(expected, candidate)
               for candidate in signature.split() if candidate.startswith("v1="))


# --- retries ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 5.0
    """Seconds: the first retry waits up to this (full jitter), each next one up to twice."""
    cap: float = 3600.0
    """Seconds: no wait longer than this (``Retry-After`` included)."""
    hours: float = 24.0
    """Retries end this long after the event was queued; then it is a dead letter."""


def backoff(attempts: int, policy: RetryPolicy, draw: float) -> float:
    """Seconds before the next try after ``attempts`` failed tries (1 or more): full jitter,
    ``draw`` (0 to 1) times ``min(cap, base * 2 ** (attempts - 1))``."""
    ceiling = min(policy.cap, policy.base * 2.0 ** min(max(attempts, 1) - 1, 60))
    return max(0.0, min(1.0, draw)) * ceiling


RETRIED_STATUSES = frozenset({408, 429})


def retryable(status: int | None) -> bool:
    """No answer (timeout, connection error), 408, 429 and 5xx are tried again."""
    return status is None or status in RETRIED_STATUSES or 500 <= status <= 599


def decide(*, status: int | None, error: str, retry_after_header: str | None, attempts: int,
           queued_at: datetime, now: datetime, duration_ms: int, policy: RetryPolicy,
           draw: float) -> AttemptResult:
    """The outcome of one attempt (``attempts`` counts it): 2xx delivered; a retryable
    failure tried again after the backoff (or ``Retry-After``, capped) while that is before
    ``queued_at + hours``; anything else (other 4xx, 3xx: redirects are not followed) a
    dead letter at once."""
    if status is not None and 200 <= status <= 299:
        return AttemptResult(DeliveryState.DELIVERED, now, now, status, "", duration_ms)
    reason = error or (f"HTTP {status}" if status is not None else "no answer")
    if not retryable(status):
        return AttemptResult(DeliveryState.DEAD, now, now, status, reason[:ERROR_TEXT_LIMIT],
                             duration_ms)
    delay = backoff(attempts, policy, draw)
    asked = None if status is None else retry_after(status, retry_after_header, now)
    if asked is not None:
        delay = min(policy.cap, asked)
    deadline = queued_at + timedelta(hours=policy.hours)
    # Past the deadline is a dead letter whatever the wait: a day past it is as good as
    # any, and keeps a huge wait (a cap of 1e12 s) from overflowing the datetime.
    delay = min(delay, max(0.0, (deadline - now).total_seconds()) + 86400.0)
    when = now + timedelta(seconds=delay)
    if when > deadline:
        return AttemptResult(DeliveryState.DEAD, now, now, status,
                             f"gave up after {policy.hours:g} h: {reason}"[:ERROR_TEXT_LIMIT],
                             duration_ms)
    return AttemptResult(DeliveryState.PENDING, when, now, status, reason[:ERROR_TEXT_LIMIT],
                         duration_ms)


# --- ordering ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Pending:
    """What ordering needs of a pending outbox row."""

    id: int
    webhook_id: int
    conversation_id: int | None
    next_attempt_at: datetime
    claimed_until: datetime | None


def deliverable(pending: Sequence[Pending], now: datetime) -> list[int]:
    """Ids that may be sent now, oldest first: due, not claimed (or the claim lapsed), and
    the oldest pending row of its (webhook, conversation). Rows without a conversation
    wait for nothing. A claimed or not yet due head blocks the rows after it."""
    heads: set[tuple[int, int]] = set()
    chosen: list[int] = []
    for row in sorted(pending, key=lambda p: p.id):
        if row.conversation_id is not None:
            key = (row.webhook_id, row.conversation_id)
            if key in heads:
                continue
            heads.add(key)
        if row.next_attempt_at > now:
            continue
        if row.claimed_until is not None and row.claimed_until >= now:
            continue
        chosen.append(row.id)
    return chosen
