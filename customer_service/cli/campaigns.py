"""``customer-service campaigns ...``: create, preview, run, watch and stop campaigns.

Creating checks everything it can before storing anything (see
``campaigns.create``); ``run`` is ``campaigns.runner.run_campaign`` in the foreground
with a progress bar (``campaign_run``).
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from customer_service.cli.common import (
    console,
    current_config,
    echo_json,
    esc,
    json_option,
    print_table,
    short_time,
    ts,
    with_store,
)
from customer_service.core.models import CampaignStatus, RecipientState
from customer_service.errors import Conflict, NotFound

if TYPE_CHECKING:
    from customer_service.core.models import Campaign, Recipient
    from customer_service.storage.base import Store

REPORT_PAGE = 1000


@click.group()
def campaigns() -> None:
    """Send contacts a message: a template, or an AI prompt answered once per contact."""


# --- create ---------------------------------------------------------------------------------

PACE_WINDOW = 60.0
"""Seconds of recent work ``status`` measures the pace over."""


@dataclass(frozen=True, slots=True)
class Pace:
    per_second: float
    window: float
    eta: float | None
    """Seconds left at this pace (None: nothing done in the window, no pace to go by)."""


def pace_of(done: int, window: float, remaining: int) -> Pace:
    """A running campaign's pace from the recipients done in the last ``window`` seconds."""
    per_second = done / window if window > 0 else 0.0
    eta = remaining / per_second if per_second > 0 else (0.0 if remaining == 0 else None)
    return Pace(per_second, window, eta)


def campaign_dict(campaign: Campaign, counts: dict[RecipientState, int] | None) -> dict[str, Any]:
    spec = campaign.spec
    data: dict[str, Any] = {
        "id": campaign.id, "name": spec.name, "status": str(campaign.status),
        "kind": str(spec.kind), "sender": {"role": str(spec.sender_role), "id": spec.sender_id,
                                           "name": spec.sender_name},
        "audience": spec.audience, "concurrency": spec.concurrency, "rate": spec.rate,
        "scheduled_at": ts(spec.scheduled_at), "fallback": spec.fallback,
        "max_tokens_total": spec.max_tokens_total, "tokens_used": campaign.tokens_used,
        "stop_reason": campaign.stop_reason, "lease_owner": campaign.lease_owner,
        "created_at": ts(campaign.created_at), "started_at": ts(campaign.started_at),
        "finished_at": ts(campaign.finished_at)}
    if counts is not None:
        data["recipients"] = {str(state): counts.get(state, 0) for state in RecipientState}
        data["total"] = sum(counts.values())
    return data


async def _get(store: Store, campaign_id: int) -> Campaign:
    campaign = await store.get_campaign(campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id} (see 'campaigns list')")
    return campaign


@campaigns.command("status")
@click.argument("campaign_id", metavar="ID", type=int)
@json_option
def status(campaign_id: int, as_json: bool) -> None:
    """A campaign's figures (also while another shell runs it)."""
    async def work(store: Store) -> tuple[Campaign, dict[RecipientState, int], Pace | None]:
        campaign = await _get(store, campaign_id)
        counts = await store.recipient_counts(campaign_id)
        pace = None
        if campaign.status is CampaignStatus.RUNNING and campaign.started_at is not None:
            now = datetime.now(UTC)
            window = min(PACE_WINDOW, (now - campaign.started_at).total_seconds())
            done = await store.recipients_done_since(
                campaign_id, now - timedelta(seconds=window))
            pace = pace_of(done, window, counts[RecipientState.PENDING]
                           + counts[RecipientState.GENERATING])
        return campaign, counts, pace

    campaign, counts, pace = with_store(current_config(), work)
    data = campaign_dict(campaign, counts)
    data["per_second"] = None if pace is None else round(pace.per_second, 2)
    data["eta_seconds"] = None if pace is None or pace.eta is None else round(pace.eta)
    if as_json:
        echo_json(data)
        return
    out = console()
    total = data["total"]
    done = sum(counts.get(s, 0) for s in (RecipientState.SENT, RecipientState.FAILED,
                                           RecipientState.SKIPPED))
    out.print(f"Campaign {campaign.id} '{esc(campaign.spec.name)}': {campaign.status}"
              + (f" ({esc(campaign.stop_reason)})" if campaign.stop_reason else ""))
    out.print(f"  {done:,} of {total:,} done: " + ", ".join(
        f"{counts.get(s, 0):,} {s}" for s in RecipientState))
    budget = campaign.spec.max_tokens_total
    out.print(f"  tokens used: {campaign.tokens_used:,}"
              + (f" of {budget:,}" if budget else ""))
    if campaign.spec.scheduled_at and campaign.status is CampaignStatus.SCHEDULED:
        out.print(f"  scheduled for {short_time(campaign.spec.scheduled_at)} UTC")
    if pace is not None:
        eta = "unknown" if pace.eta is None else str(timedelta(seconds=round(pace.eta)))
        out.print(f"  {pace.per_second:,.1f} recipients/s over the last "
                  f"{pace.window:.0f} s; time left: {eta}")
    if campaign.lease_owner:
        out.print(f"  run by {esc(campaign.lease_owner)}")


@campaigns.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Every campaign, newest first."""
    async def work(store: Store) -> list[tuple[Campaign, dict[RecipientState, int]]]:
        return [(c, await store.recipient_counts(c.id)) for c in await store.list_campaigns()]

    found = with_store(current_config(), work)
    if as_json:
        echo_json([campaign_dict(c, counts) for c, counts in found])
        return
    if not found:
        console().print("No campaigns.")
        return
    from rich.table import Table

    table = Table(title=f"{len(found)} campaign(s)")
    for column in ("ID", "Name", "Status", "Kind", "Recipients", "Sent", "Created"):
        table.add_column(column)
    for campaign, counts in found:
        table.add_row(str(campaign.id), esc(campaign.spec.name), str(campaign.status),
                      str(campaign.spec.kind), f"{sum(counts.values()):,}",
                      f"{counts.get(RecipientState.SENT, 0):,}",
                      short_time(campaign.created_at))
    print_table(table)


# --- pause, resume, cancel ------------------------------------------------------------------

def _change(campaign_id: int, wanted: CampaignStatus, allowed: tuple[CampaignStatus, ...],
            reason: str | None = None) -> Campaign:
    async def work(store: Store) -> Campaign:
        current = await _get(store, campaign_id)
        target = wanted
        if wanted is CampaignStatus.RUNNING and current.started_at is None:
            target = (CampaignStatus.SCHEDULED if current.spec.scheduled_at is not None
                      else CampaignStatus.READY)
        if current.status not in allowed:
            raise Conflict(f"campaign {campaign_id} is {current.status}")
        return await store.set_campaign_status(campaign_id, target, expected=allowed,
                                               stop_reason=reason)

    return with_store(current_config(), work)


@campaigns.command("pause")
@click.argument("campaign_id", metavar="ID", type=int)
def pause(campaign_id: int) -> None:
    """Stop sending (the requests in flight finish); 'resume' continues."""
    _change(campaign_id, CampaignStatus.PAUSED,
            (CampaignStatus.READY, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING))
    console().print(f"Paused campaign {campaign_id}.")


@campaigns.command("resume")
@click.argument("campaign_id", metavar="ID", type=int)
def resume(campaign_id: int) -> None:
    """Continue a paused campaign."""
    campaign = _change(campaign_id, CampaignStatus.RUNNING, (CampaignStatus.PAUSED,), "")
    if campaign.status is CampaignStatus.RUNNING and campaign.spec.scheduled_at is not None:
        console().print(f"Resumed campaign {campaign_id}: its runner continues; with none "
                        "left, a server with \\[campaigns] scheduler = true takes it, or run "
                        f"'campaigns run {campaign_id}'.")
    elif campaign.status is CampaignStatus.RUNNING:  # the scheduler leaves it to the shell
        console().print(f"Resumed campaign {campaign_id}: its runner continues; with none "
                        f"left, run 'campaigns run {campaign_id}'.")
    else:
        console().print(f"Resumed campaign {campaign_id}: {campaign.status} again.")


@campaigns.command("cancel")
@click.argument("campaign_id", metavar="ID", type=int)
def cancel(campaign_id: int) -> None:
    """Stop for good: recipients not reached stay pending and get nothing."""
    _change(campaign_id, CampaignStatus.CANCELLED,
            (CampaignStatus.READY, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING,
             CampaignStatus.PAUSED), "cancelled")
    console().print(f"Cancelled campaign {campaign_id}.")


# --- report ---------------------------------------------------------------------------------

REPORT_COLUMNS = ("external_id", "contact_id", "state", "attempts", "error",
                  "conversation_id", "message_seq", "updated_at")


def recipient_row(recipient: Recipient) -> dict[str, Any]:
    return {"external_id": recipient.external_id, "contact_id": recipient.contact_id,
            "state": str(recipient.state), "attempts": recipient.attempts,
            "error": recipient.error, "conversation_id": recipient.conversation_id,
            "message_seq": recipient.message_seq, "updated_at": ts(recipient.updated_at)}


def _open_csv(path: Path) -> TextIO:
    try:
        return path.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot write {path}: {exc.strerror}",
                                 param_hint="'--csv'") from None


@campaigns.command("report")
@click.argument("campaign_id", metavar="ID", type=int)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every recipient to this CSV file.")
@json_option
def report(campaign_id: int, csv_path: Path | None, as_json: bool) -> None:
    """Per contact: state, attempts, error, and the message (conversation and seq).

    Without --csv or --json, prints the recipients that did not get the message."""
    import json

    out = console()
    shown: list[Recipient] = []

    async def work(store: Store) -> dict[RecipientState, int]:
        await _get(store, campaign_id)
        writer: Any = None
        handle = _open_csv(csv_path) if csv_path else None
        try:
            if handle is not None:
                writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
                writer.writeheader()
            first = True
            if as_json:
                click.echo("[")
            after = 0
            while page := await store.recipients_page(campaign_id, after, REPORT_PAGE):
                after = page[-1].contact_id
                for recipient in page:
                    row = recipient_row(recipient)
                    if writer is not None:
                        writer.writerow(row)
                    if as_json:
                        click.echo(("" if first else ",\n") + "  "
                                   + json.dumps(row, ensure_ascii=False), nl=False)
                        first = False
                    elif recipient.state is not RecipientState.SENT and len(shown) < 50:
                        shown.append(recipient)
            if as_json:
                click.echo("\n]")
        finally:
            if handle is not None:
                handle.close()
        return await store.recipient_counts(campaign_id)

    counts = with_store(current_config(), work)
    if as_json:
        return
    out.print(f"Campaign {campaign_id}: " + ", ".join(
        f"{counts.get(s, 0):,} {s}" for s in RecipientState) + ".")
    if csv_path is not None:
        out.print(f"Wrote {sum(counts.values()):,} recipients to {esc(str(csv_path))}.")
    if shown:
        from rich.table import Table

        table = Table(title="Not sent" + (" (first 50)" if len(shown) == 50 else ""))
        for column in ("External id", "State", "Attempts", "Error"):
            table.add_column(column)
        for r in shown:
            table.add_row(esc(r.external_id), str(r.state), str(r.attempts), esc(r.error))
        print_table(table, out)


def _register() -> None:
    from customer_service.cli.campaign_create import create
    from customer_service.cli.campaign_run import preview, run

    campaigns.add_command(create)
    campaigns.add_command(run)
    campaigns.add_command(preview)


_register()
