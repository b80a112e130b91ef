"""Webhooks in SQL, for both dialects (see ``_sql``): subscriptions, the outbox, attempts.

``enqueue_events`` is called INSIDE the transactions that make the changes it reports
(``append_messages``, conversation creation, state changes, a campaign finishing): the
outbox rows commit or roll back with the change, so a crash between the change and the
delivery loses nothing. It reads the subscriptions once per call (one small indexed
``SELECT``) and writes nothing when no webhook wants the events.

The sender claims rows with a lease: ``UPDATE ... SET claimed_by, claim_until WHERE id = ?
AND state = 'pending' AND (claim_until IS NULL OR claim_until < now)``, checked by its
rowcount, so of several instances exactly one sends each row (a crashed holder's lease
lapses and another takes the row over). Which rows may go is the ordering rule of
``core.webhooks.deliverable``: per webhook, only the oldest pending row of a conversation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from customer_service.core.webhooks import (
    ATTEMPTS_KEPT,
    ERROR_TEXT_LIMIT,
    AttemptResult,
    DeliveryState,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    event_body,
    new_event_id,
)
from customer_service.errors import NotFound
from customer_service.storage._sql import Row, Tx, chunks, from_ms, now_ms, placeholders, to_ms

_WEBHOOK_COLUMNS = "w.id, w.url, w.events, w.secret, w.created_at, w.disabled"
_DELIVERY_COLUMNS = ("d.id, d.webhook_id, d.event_id, d.event_type, d.conversation_id, d.body,"
                     " d.created_at, d.queued_at, d.state, d.attempts, d.next_attempt_at,"
                     " d.last_status, d.last_error, d.delivered_at, w.url, w.secret")


def _webhook_from(row: Row) -> Webhook:
    return Webhook(id=int(row[0]), url=row[1], events=tuple(e for e in row[2].split(",") if e),
                   secret=row[3], created_at=from_ms(row[4]), disabled=bool(row[5]))


def _delivery_from(row: Row) -> WebhookDelivery:
    return WebhookDelivery(
        id=int(row[0]), webhook_id=int(row[1]), event_id=row[2], event_type=row[3],
        conversation_id=None if row[4] is None else int(row[4]), body=bytes(row[5]),
        created_at=from_ms(row[6]), queued_at=from_ms(row[7]), state=DeliveryState(row[8]),
        attempts=int(row[9]), next_attempt_at=from_ms(row[10]),
        last_status=None if row[11] is None else int(row[11]), last_error=row[12] or "",
        delivered_at=None if row[13] is None else from_ms(row[13]),
        url=row[14] or "", secret=row[15] or "")


# --- subscriptions ----------------------------------------------------------

def add_webhook(tx: Tx, url: str, events: Sequence[str], secret: str) -> Webhook:
    created = now_ms()
    webhook_id = tx.insert("INSERT INTO webhooks (url, events, secret, created_at, disabled)"
                           " VALUES (?, ?, ?, ?, 0)", (url, ",".join(events), secret, created))
    return Webhook(id=webhook_id, url=url, events=tuple(events), secret=secret,
                   created_at=from_ms(created))


def list_webhooks(tx: Tx) -> list[Webhook]:
    return [_webhook_from(row) for row in
            tx.all(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks w ORDER BY w.id")]


def get_webhook(tx: Tx, webhook_id: int) -> Webhook | None:
    row = tx.one(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = ?", (webhook_id,))
    return None if row is None else _webhook_from(row)


def remove_webhook(tx: Tx, webhook_id: int) -> Webhook:
    """The webhook and its outbox (pending, delivered, dead) and attempts."""
    found = get_webhook(tx, webhook_id)
    if found is None:
        raise NotFound(f"no webhook with id {webhook_id}")
    tx.execute("DELETE FROM webhook_attempts WHERE delivery_id IN"
               " (SELECT id FROM webhook_deliveries WHERE webhook_id = ?)", (webhook_id,))
    tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
    tx.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
    return found


# --- the outbox -------------------------------------------------------------

def enqueue_events(tx: Tx, events: Iterable[WebhookEvent]) -> int:
    """Queue each event for every enabled webhook subscribed to its type, in this
    transaction; return the rows written. One ``SELECT`` (none for an empty sequence);
    no write when nobody subscribes. ``events`` may be a generator: with no webhook it is
    never run, so the message path builds no event body for nobody."""
    if isinstance(events, Sequence) and not events:
        return 0
    hooks = [(int(row[0]), frozenset(str(row[1]).split(",")))
             for row in tx.all("SELECT id, events FROM webhooks WHERE disabled = 0")]
    if not hooks:
        return 0
    created = now_ms()
    moment = from_ms(created)
    rows: list[tuple[object, ...]] = []
    for event in events:
        wanted = [hook_id for hook_id, types in hooks if event.type in types]
        if not wanted:
            continue
        event_id = new_event_id()
        body = event_body(event_id, event.type, moment, event.data)
        rows += [(hook_id, event_id, event.type, event.conversation_id, body, created, created,
                  created) for hook_id in wanted]
    for chunk in chunks(rows):
        tx.execute("INSERT INTO webhook_deliveries (webhook_id, event_id, event_type,"
                   " conversation_id, body, created_at, queued_at, next_attempt_at) VALUES "
                   + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                   [value for row in chunk for value in row])
    return len(rows)


_DELIVERABLE = (
    "d.state = 'pending' AND d.next_attempt_at <= ?"
    " AND (d.claim_until IS NULL OR d.claim_until < ?)"
    " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.webhook_id = d.webhook_id"
    " AND p.conversation_id = d.conversation_id AND p.state = 'pending' AND p.id < d.id)")


def any_deliverable(tx: Tx, now: datetime) -> bool:
    moment = to_ms(now)
    return tx.one(f"SELECT 1 FROM webhook_deliveries d WHERE {_DELIVERABLE} LIMIT 1",
                  (moment, moment)) is not None


def claim_deliveries(tx: Tx, owner: str, now: datetime, lease_seconds: float,
                     limit: int, *, share: int | None = None,
                     busy: Mapping[int, int] | None = None) -> list[WebhookDelivery]:
    """Claim up to ``limit`` deliverable rows for ``owner`` until ``now + lease``; a row
    another instance claimed meanwhile (its UPDATE changes no row here) is left out.

    With ``share``, while more than one webhook is enabled, no webhook gets more than
    ``share`` rows counting the ``busy`` ones (its rows ``owner`` still sends): a receiver
    that hangs cannot hold every slot of the sender while other receivers wait."""
    moment = to_ms(now)
    until = to_ms(now + timedelta(seconds=lease_seconds))
    held = dict(busy or {})
    capped: list[int] = []
    if share is not None:
        enabled = tx.one("SELECT COUNT(*) FROM webhooks WHERE disabled = 0")
        if enabled is None or int(enabled[0]) <= 1:
            share = None
        else:
            capped = sorted(hook for hook, count in held.items() if count >= share)
    skip = f" AND d.webhook_id NOT IN ({placeholders(len(capped))})" if capped else ""
    rows = tx.all(
        f"SELECT d.id, d.webhook_id FROM webhook_deliveries d WHERE {_DELIVERABLE}{skip}"
        " ORDER BY d.next_attempt_at, d.id LIMIT ?",
        (moment, moment, *capped, max(0, limit) * (1 if share is None else 4)))
    candidates: list[int] = []
    for row in rows:
        hook = int(row[1])
        if share is not None and held.get(hook, 0) >= share:
            continue
        held[hook] = held.get(hook, 0) + 1
        candidates.append(int(row[0]))
        if len(candidates) >= limit:
            break
    claimed: list[int] = []
    for delivery_id in sorted(candidates):
        changed = tx.execute(
            "UPDATE webhook_deliveries SET claimed_by = ?, claim_until = ? WHERE id = ?"
            " AND state = 'pending' AND (claim_until IS NULL OR claim_until < ?)",
            (owner, until, delivery_id, moment))
        if changed == 1:
            claimed.append(delivery_id)
    return _deliveries(tx, claimed)


def _deliveries(tx: Tx, ids: Sequence[int]) -> list[WebhookDelivery]:
    found: list[WebhookDelivery] = []
    for chunk in chunks(list(ids)):
        found += [_delivery_from(row) for row in tx.all(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w"
            f" ON w.id = d.webhook_id WHERE d.id IN ({placeholders(len(chunk))})", chunk)]
    found.sort(key=lambda d: d.id)
    return found


def record_attempts(tx: Tx, owner: str,
                    results: Sequence[tuple[int, AttemptResult]]) -> list[bool]:
    """Write each attempt's outcome while ``owner`` still holds the row's claim (True); else
    (the lease lapsed and another instance took the row) only log the attempt; a row that
    is gone (its webhook removed) gets nothing (False)."""
    written: dict[int, bool] = {}
    # In id order, as claims lock them: two instances' transactions never wait in a circle.
    for delivery_id, result in sorted(results, key=lambda item: item[0]):
        error = result.error[:ERROR_TEXT_LIMIT]
        delivered = to_ms(result.at) if result.state is DeliveryState.DELIVERED else None
        changed = tx.execute(
            "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1,"
            " next_attempt_at = ?, claimed_by = NULL, claim_until = NULL, last_status = ?,"
            " last_error = ?, delivered_at = ? WHERE id = ? AND claimed_by = ?"
            " AND state = 'pending'",
            (result.state.value, to_ms(result.next_attempt_at), result.status, error,
             delivered, delivery_id, owner))
        row = tx.one("SELECT webhook_id, conversation_id FROM webhook_deliveries WHERE id = ?",
                     (delivery_id,))
        if row is None:
            written[delivery_id] = False
            continue
        if changed == 1 and result.state is DeliveryState.PENDING and row[1] is not None:
            # The rows queued behind it wait as long: a look at the queue does not step
            # over them one by one while a receiver is down.
            tx.execute("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE webhook_id = ?"
                       " AND conversation_id = ? AND state = 'pending' AND id > ?"
                       " AND next_attempt_at < ?",
                       (to_ms(result.next_attempt_at), row[0], row[1], delivery_id,
                        to_ms(result.next_attempt_at)))
        tx.execute("INSERT INTO webhook_attempts (delivery_id, at, status, error, duration_ms)"
                   " VALUES (?, ?, ?, ?, ?)",
                   (delivery_id, to_ms(result.at), result.status, error, result.duration_ms))
        if result.state is not DeliveryState.DELIVERED or changed == 0:
            old = tx.all("SELECT id FROM webhook_attempts WHERE delivery_id = ?"
                         " ORDER BY id DESC", (delivery_id,))[ATTEMPTS_KEPT:]
            if old:
                tx.execute("DELETE FROM webhook_attempts WHERE delivery_id = ? AND id <= ?",
                           (delivery_id, int(old[0][0])))
        written[delivery_id] = changed == 1
    return [written[delivery_id] for delivery_id, _ in results]


def list_deliveries(tx: Tx, *, failed: bool, webhook_id: int | None,
                    limit: int) -> list[WebhookDelivery]:
    """Newest first, with their attempts (newest first). ``failed``: dead letters and pending
    rows that failed at least once."""
    conditions: list[str] = []
    params: list[object] = []
    if failed:
        conditions.append("(d.state = 'dead' OR (d.state = 'pending' AND d.attempts > 0))")
    if webhook_id is not None:
        conditions.append("d.webhook_id = ?")
        params.append(webhook_id)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = tx.all(f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhooks w"
                  f" ON w.id = d.webhook_id {where} ORDER BY d.id DESC LIMIT ?",
                  [*params, max(0, limit)])
    deliveries = [_delivery_from(row) for row in rows]
    logs: dict[int, list[WebhookAttempt]] = {}
    for chunk in chunks([d.id for d in deliveries]):
        for row in tx.all("SELECT delivery_id, at, status, error, duration_ms FROM"
                          f" webhook_attempts WHERE delivery_id IN ({placeholders(len(chunk))})"
                          " ORDER BY id DESC", chunk):
            logs.setdefault(int(row[0]), []).append(WebhookAttempt(
                at=from_ms(row[1]), status=None if row[2] is None else int(row[2]),
                error=row[3] or "", duration_ms=int(row[4])))
    return [_with_log(d, tuple(logs.get(d.id, ()))) for d in deliveries]


def _with_log(delivery: WebhookDelivery, log: tuple[WebhookAttempt, ...]) -> WebhookDelivery:
    return replace(delivery, log=log)


def replay(tx: Tx, event_id: str | None, webhook_id: int | None) -> int:
    """Dead letters back to pending (due now, a new retry period from now); return how
    many. ``event_id`` None: every dead letter (of ``webhook_id`` when given). Raise
    ``NotFound`` for an event or webhook with no outbox row at all."""
    if webhook_id is not None and get_webhook(tx, webhook_id) is None:
        raise NotFound(f"no webhook with id {webhook_id}")
    conditions = ["state = 'dead'"]
    params: list[object] = []
    if event_id is not None:
        known = tx.one("SELECT 1 FROM webhook_deliveries WHERE event_id = ?"
                       + (" AND webhook_id = ?" if webhook_id is not None else ""),
                       (event_id,) if webhook_id is None else (event_id, webhook_id))
        if known is None:
            raise NotFound(f"no webhook event with id {event_id!r}")
        conditions.append("event_id = ?")
        params.append(event_id)
    if webhook_id is not None:
        conditions.append("webhook_id = ?")
        params.append(webhook_id)
    moment = now_ms()
    return tx.execute("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?,"
                      " queued_at = ?, claimed_by = NULL, claim_until = NULL"
                      f" WHERE {' AND '.join(conditions)}", [moment, moment, *params])


def prune_delivered(tx: Tx, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` delivered rows (and their attempts) delivered before
    ``before``; return how many."""
    ids = [int(row[0]) for row in tx.all(
        "SELECT id FROM webhook_deliveries WHERE state = 'delivered' AND delivered_at < ?"
        " ORDER BY id LIMIT ?", (to_ms(before), max(0, limit)))]
    for chunk in chunks(ids):
        tx.execute(f"DELETE FROM webhook_attempts WHERE delivery_id IN"
                   f" ({placeholders(len(chunk))})", chunk)
        tx.execute(f"DELETE FROM webhook_deliveries WHERE id IN ({placeholders(len(chunk))})",
                   chunk)
    return len(ids)
