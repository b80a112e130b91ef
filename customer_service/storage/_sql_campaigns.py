"""Units of work on campaigns: the campaign row and its lease, the recipients, delivery.

Each function runs inside one transaction (a ``Tx``) that the backend opened;
see ``_sql`` for the conventions. What several runners (MySQL: several
processes) rely on:

- the lease: ``claim_campaign`` reads the campaign row ``FOR UPDATE`` and decides
  under that lock, so of two claimants exactly one wins;
- exactly once: ``deliver`` locks the recipient row first and does nothing when it
  is sent already; the message's ``client_id`` (``campaign:<id>:<contact>``) is the
  second guard (the messages' unique dedupe key). The lock order is recipient,
  contact, visitor, conversation (``_sql_contacts`` and ``_sql_chat`` follow it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from customer_service.core import webhooks as hooks
from customer_service.core.models import (
    Campaign,
    CampaignDelivery,
    CampaignKind,
    CampaignSpec,
    CampaignStatus,
    Contact,
    ConversationStatus,
    NewMessage,
    Recipient,
    RecipientState,
    Role,
)
from customer_service.errors import Conflict, NotFound
from customer_service.storage import _sql_webhooks as webhooks_sql
from customer_service.storage._sql import (
    Row,
    Tx,
    chunks,
    from_ms,
    now_ms,
    placeholders,
    to_ms,
)
from customer_service.storage._sql_chat import append_messages
from customer_service.storage._sql_contacts import (
    CONTACT_COLUMNS,
    CONTACT_WIDTH,
    contact_conversation,
    contact_visitor,
    contacts_from,
    decode_json,
    encode_json,
    new_conversation,
    use_index,
)

CAMPAIGN_COLUMNS = ("g.id, g.name, g.status, g.kind, g.body, g.sender_role, g.sender_id,"
                    " g.sender_name, g.audience, g.concurrency, g.rate, g.scheduled_at,"
                    " g.fallback, g.max_tokens_total, g.tokens_used, g.stop_reason,"
                    " g.lease_owner, g.lease_until, g.created_at, g.updated_at, g.started_at,"
                    " g.finished_at")
RECIPIENT_COLUMNS = ("r.campaign_id, r.contact_id, k.external_id, r.state, r.attempts,"
                     " r.error, r.text, r.tokens, r.conversation_id, r.message_seq,"
                     " r.updated_at")
RECIPIENT_WIDTH = 11

TERMINAL = (CampaignStatus.FINISHED, CampaignStatus.CANCELLED)
TO_SEND = (RecipientState.PENDING, RecipientState.GENERATING)

ALREADY_SENT = "already sent"
UNSUBSCRIBED = "unsubscribed"
FREQUENCY_CAP = "frequency cap"


def _ms(value: Any) -> datetime | None:
    return None if value is None else from_ms(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def campaign_from(row: Row) -> Campaign:
    spec = CampaignSpec(
        name=row[1], kind=CampaignKind(row[3]), body=row[4], sender_role=Role(row[5]),
        sender_id=_int(row[6]), sender_name=row[7], audience=decode_json(row[8]),
        concurrency=int(row[9]), rate=float(row[10]), scheduled_at=_ms(row[11]),
        fallback=row[12], max_tokens_total=_int(row[13]))
    return Campaign(
        id=int(row[0]), spec=spec, status=CampaignStatus(row[2]), tokens_used=int(row[14]),
        stop_reason=row[15], lease_owner=row[16], lease_until=_ms(row[17]),
        created_at=from_ms(row[18]), updated_at=from_ms(row[19]), started_at=_ms(row[20]),
        finished_at=_ms(row[21]))


def recipient_from(row: Row) -> Recipient:
    return Recipient(
        campaign_id=int(row[0]), contact_id=int(row[1]), external_id=row[2],
        state=RecipientState(row[3]), attempts=int(row[4]), error=row[5], text=row[6],
        tokens=int(row[7]), conversation_id=_int(row[8]), message_seq=_int(row[9]),
        updated_at=from_ms(row[10]))


# --- campaigns --------------------------------------------------------------

def create_campaign(tx: Tx, spec: CampaignSpec, status: CampaignStatus) -> Campaign:
    moment = now_ms()
    campaign_id = tx.insert(
        "INSERT INTO campaigns (name, status, kind, body, sender_role, sender_id, sender_name,"
        " audience, concurrency, rate, scheduled_at, fallback, max_tokens_total, tokens_used,"
        " stop_reason, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', ?, ?)",
        (spec.name, status.value, spec.kind.value, spec.body, spec.sender_role.value,
         spec.sender_id, spec.sender_name, encode_json(spec.audience), spec.concurrency,
         spec.rate, None if spec.scheduled_at is None else to_ms(spec.scheduled_at),
         spec.fallback, spec.max_tokens_total, moment, moment))
    return _existing(tx, campaign_id)


def get_campaign(tx: Tx, campaign_id: int, *, lock: bool = False) -> Campaign | None:
    suffix = tx.dialect.for_update if lock else ""
    row = tx.one(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns g WHERE g.id = ?{suffix}",
                 (campaign_id,))
    return None if row is None else campaign_from(row)


def _existing(tx: Tx, campaign_id: int, *, lock: bool = False) -> Campaign:
    campaign = get_campaign(tx, campaign_id, lock=lock)
    if campaign is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    return campaign


def list_campaigns(tx: Tx) -> list[Campaign]:
    return [campaign_from(row) for row in
            tx.all(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns g ORDER BY g.id DESC")]


def set_campaign_status(tx: Tx, campaign_id: int, status: CampaignStatus,
                        expected: Sequence[CampaignStatus] | None,
                        stop_reason: str | None) -> Campaign:
    """Stamps ``started_at`` on the first RUNNING and ``finished_at`` on a terminal
    status, which also drops the lease (nobody runs it any more)."""
    campaign = _existing(tx, campaign_id, lock=True)
    if expected is not None and campaign.status not in expected:
        raise Conflict(f"campaign {campaign_id} is {campaign.status.value}, not "
                       + " or ".join(s.value for s in expected))
    moment = now_ms()
    assignments = ["status = ?", "updated_at = ?"]
    params: list[Any] = [status.value, moment]
    if status is CampaignStatus.RUNNING and campaign.started_at is None:
        assignments.append("started_at = ?")
        params.append(moment)
    if status in TERMINAL:
        assignments += ["finished_at = ?", "lease_owner = NULL", "lease_until = NULL"]
        params.append(moment)
    if stop_reason is not None:
        assignments.append("stop_reason = ?")
        params.append(stop_reason)
    tx.execute(f"UPDATE campaigns SET {', '.join(assignments)} WHERE id = ?",
               [*params, campaign_id])
    changed = _existing(tx, campaign_id)
    if status is CampaignStatus.FINISHED and campaign.status is not CampaignStatus.FINISHED:
        webhooks_sql.enqueue_events(tx, hooks.campaign_finished(
            campaign, changed, recipient_counts(tx, campaign_id)))
    return changed


def claim_campaign(tx: Tx, campaign_id: int, owner: str, *, lease_seconds: float,
                   now: datetime, force: bool) -> Campaign | None:
    """Compare and set under the row lock: two claimants read the lease one after the
    other, and the second sees the first's."""
    campaign = _existing(tx, campaign_id, lock=True)
    moment = to_ms(now)
    held_by_other = (campaign.lease_owner is not None and campaign.lease_owner != owner
                     and campaign.lease_until is not None
                     and to_ms(campaign.lease_until) > moment)
    if held_by_other and not force:
        return None
    tx.execute("UPDATE campaigns SET lease_owner = ?, lease_until = ? WHERE id = ?",
               (owner, moment + round(lease_seconds * 1000), campaign_id))
    return _existing(tx, campaign_id)


def release_campaign(tx: Tx, campaign_id: int, owner: str) -> None:
    tx.execute("UPDATE campaigns SET lease_owner = NULL, lease_until = NULL"
               " WHERE id = ? AND lease_owner = ?", (campaign_id, owner))


def due_campaigns(tx: Tx, now: datetime) -> list[Campaign]:
    """Two range reads of the ``(status, scheduled_at)`` index rather than one OR."""
    moment = to_ms(now)
    rows = tx.all(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns g WHERE g.status = ?"
                  " AND g.scheduled_at <= ?", (CampaignStatus.SCHEDULED.value, moment))
    rows += tx.all(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns g WHERE g.status = ?"
                   " AND (g.lease_until IS NULL OR g.lease_until <= ?)",
                   (CampaignStatus.RUNNING.value, moment))
    return sorted((campaign_from(row) for row in rows), key=lambda c: c.id)


# --- recipients -------------------------------------------------------------

def add_recipients(tx: Tx, campaign_id: int, contact_ids: Sequence[int]) -> int:
    """Contacts deleted meanwhile and recipients already there are left out."""
    _existing(tx, campaign_id)
    wanted = sorted(set(contact_ids))
    added = 0
    moment = now_ms()
    for chunk in chunks(wanted):
        marks = placeholders(len(chunk))
        present = {int(row[0]) for row in tx.all(
            f"SELECT contact_id FROM campaign_recipients WHERE campaign_id = ?"
            f" AND contact_id IN ({marks})", [campaign_id, *chunk])}
        existing = {int(row[0]) for row in tx.all(
            f"SELECT id FROM contacts WHERE id IN ({marks})", chunk)}
        new = [cid for cid in chunk if cid in existing and cid not in present]
        if new:
            tx.execute("INSERT INTO campaign_recipients (campaign_id, contact_id, state,"
                       " attempts, error, tokens, updated_at) VALUES "
                       + ", ".join(["(?, ?, ?, 0, '', 0, ?)"] * len(new)),
                       [value for cid in new for value in
                        (campaign_id, cid, RecipientState.PENDING.value, moment)])
            added += len(new)
    return added


def recipients_to_send(tx: Tx, campaign_id: int, after_contact_id: int,
                       limit: int) -> list[tuple[Recipient, Contact]]:
    """One ordered range of ``(campaign_id, state, contact_id)`` per state, merged: a
    single ``state IN (...)`` would read and sort every remaining row for each page."""
    rows: list[Row] = []
    for state in TO_SEND:
        rows += tx.all(
            f"SELECT {RECIPIENT_COLUMNS}, {CONTACT_COLUMNS} FROM campaign_recipients r"
            f"{use_index(tx, 'campaign_recipients_state')} JOIN contacts k ON k.id = r.contact_id"
            " WHERE r.campaign_id = ? AND r.state = ?"
            " AND r.contact_id > ? ORDER BY r.contact_id LIMIT ?",
            (campaign_id, state.value, after_contact_id, max(0, limit)))
    rows.sort(key=lambda row: int(row[1]))
    rows = rows[:max(0, limit)]
    contacts = contacts_from(tx, [row[RECIPIENT_WIDTH:RECIPIENT_WIDTH + CONTACT_WIDTH]
                                  for row in rows])
    return [(recipient_from(row), contact) for row, contact in zip(rows, contacts, strict=True)]


def recipients_page(tx: Tx, campaign_id: int, after_contact_id: int,
                    limit: int) -> list[Recipient]:
    rows = tx.all(f"SELECT {RECIPIENT_COLUMNS} FROM campaign_recipients r"
                  " JOIN contacts k ON k.id = r.contact_id"
                  " WHERE r.campaign_id = ? AND r.contact_id > ? ORDER BY r.contact_id LIMIT ?",
                  (campaign_id, after_contact_id, max(0, limit)))
    return [recipient_from(row) for row in rows]


def recipient_counts(tx: Tx, campaign_id: int) -> dict[RecipientState, int]:
    counts = dict.fromkeys(RecipientState, 0)
    for state, count in tx.all("SELECT state, COUNT(*) FROM campaign_recipients"
                               " WHERE campaign_id = ? GROUP BY state", (campaign_id,)):
        counts[RecipientState(state)] = int(count)
    return counts


def recipients_done_since(tx: Tx, campaign_id: int, since: datetime) -> int:
    row = tx.one("SELECT COUNT(*) FROM campaign_recipients WHERE campaign_id = ?"
                 " AND state IN (?, ?, ?) AND updated_at >= ?",
                 (campaign_id, RecipientState.SENT.value, RecipientState.FAILED.value,
                  RecipientState.SKIPPED.value, to_ms(since)))
    return 0 if row is None else int(row[0])


def _recipient_row(tx: Tx, campaign_id: int, contact_id: int) -> Row:
    row = tx.one("SELECT state, attempts FROM campaign_recipients"
                 f" WHERE campaign_id = ? AND contact_id = ?{tx.dialect.for_update}",
                 (campaign_id, contact_id))
    if row is None:
        raise NotFound(f"contact {contact_id} is no recipient of campaign {campaign_id}")
    return row


def start_generating(tx: Tx, campaign_id: int, contact_id: int) -> int:
    """Counts an attempt of a recipient still to send; one sent, failed or skipped is
    left as it is (its attempts are returned)."""
    state, attempts = _recipient_row(tx, campaign_id, contact_id)
    if RecipientState(state) not in TO_SEND:
        return int(attempts)
    tx.execute("UPDATE campaign_recipients SET state = ?, attempts = attempts + 1,"
               " updated_at = ? WHERE campaign_id = ? AND contact_id = ?",
               (RecipientState.GENERATING.value, now_ms(), campaign_id, contact_id))
    return int(attempts) + 1


def store_generated(tx: Tx, campaign_id: int, contact_id: int, text: str, tokens: int) -> int:
    _recipient_row(tx, campaign_id, contact_id)
    tx.execute("UPDATE campaign_recipients SET text = ?, tokens = tokens + ?, updated_at = ?"
               " WHERE campaign_id = ? AND contact_id = ?",
               (text, tokens, now_ms(), campaign_id, contact_id))
    tx.execute("UPDATE campaigns SET tokens_used = tokens_used + ? WHERE id = ?",
               (tokens, campaign_id))
    row = tx.one("SELECT tokens_used FROM campaigns WHERE id = ?", (campaign_id,))
    if row is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    return int(row[0])


def finish_recipient(tx: Tx, campaign_id: int, contact_id: int, state: RecipientState,
                     error: str) -> None:
    if state not in (RecipientState.FAILED, RecipientState.SKIPPED):
        raise ValueError(f"finish_recipient takes failed or skipped, not {state.value}")
    _recipient_row(tx, campaign_id, contact_id)
    tx.execute("UPDATE campaign_recipients SET state = ?, error = ?, updated_at = ?"
               " WHERE campaign_id = ? AND contact_id = ? AND state <> ?",
               (state.value, error, now_ms(), campaign_id, contact_id,
                RecipientState.SENT.value))


# --- delivery ---------------------------------------------------------------

def campaign_client_id(campaign_id: int, contact_id: int) -> str:
    return f"campaign:{campaign_id}:{contact_id}"


def deliver(tx: Tx, campaign_id: int, contact_id: int, content: str, *,
            min_gap_seconds: float, now: datetime) -> CampaignDelivery:
    """See ``Store.deliver_campaign_message``: all of it in this one transaction."""
    state, _attempts = _recipient_row(tx, campaign_id, contact_id)
    if RecipientState(state) is RecipientState.SENT:
        return CampaignDelivery(None, skipped=ALREADY_SENT)
    # Both locks before the first plain read: on MySQL that read fixes the snapshot
    # every later plain read sees, so it must come after another runner's commit.
    row = tx.one(f"SELECT {CONTACT_COLUMNS} FROM contacts k WHERE k.id = ?"
                 f"{tx.dialect.for_update}", (contact_id,))
    if row is None:
        raise NotFound(f"no contact with id {contact_id}")
    campaign = _existing(tx, campaign_id)
    (contact,) = contacts_from(tx, [row])
    moment = to_ms(now)
    reason = ""
    if contact.unsubscribed:
        reason = UNSUBSCRIBED
    elif (contact.last_campaign_at is not None
          and moment - to_ms(contact.last_campaign_at) < min_gap_seconds * 1000):
        reason = FREQUENCY_CAP
    if reason:
        tx.execute("UPDATE campaign_recipients SET state = ?, error = ?, updated_at = ?"
                   " WHERE campaign_id = ? AND contact_id = ?",
                   (RecipientState.SKIPPED.value, reason, now_ms(), campaign_id, contact_id))
        return CampaignDelivery(None, skipped=reason)

    conversation = contact_conversation(tx, contact.id)
    conversation_id = (conversation.id if conversation is not None
                       else new_conversation(tx, contact_visitor(tx, contact), contact.id,
                                        ConversationStatus.CLOSED).id)
    spec = campaign.spec
    (result,) = append_messages(tx, [NewMessage(
        conversation_id=conversation_id, sender_role=spec.sender_role,
        sender_id=spec.sender_id, sender_name=spec.sender_name, content=content,
        client_id=campaign_client_id(campaign_id, contact_id), campaign_id=campaign_id)])
    tx.execute("UPDATE campaign_recipients SET state = ?, error = '', conversation_id = ?,"
               " message_seq = ?, updated_at = ? WHERE campaign_id = ? AND contact_id = ?",
               (RecipientState.SENT.value, result.message.conversation_id, result.message.seq,
                now_ms(), campaign_id, contact_id))
    tx.execute("UPDATE contacts SET last_campaign_at = ? WHERE id = ?", (moment, contact.id))
    return CampaignDelivery(result)
