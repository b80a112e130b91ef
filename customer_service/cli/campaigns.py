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
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
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
from customer_service.core.models import CampaignKind, CampaignStatus, RecipientState, Role
from customer_service.errors import Conflict, NotFound

if TYPE_CHECKING:
    from customer_service.core.models import Campaign, Recipient
    from customer_service.storage.base import Store

REPORT_PAGE = 1000
MAX_NAME = 255
"""The campaign name's column (MySQL: VARCHAR(255))."""
MAX_TOKENS_TOTAL = 10**12


@click.group()
def campaigns() -> None:
    """Send contacts a message: a template, or an AI prompt answered once per contact."""


# --- create ---------------------------------------------------------------------------------

def _zone(name: str | None) -> tzinfo | None:
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone {name!r} (e.g. Europe/Paris, UTC)",
                                 param_hint="'--tz'") from None


def parse_at(text: str, zone_name: str | None, now: datetime) -> datetime:
    """``--at`` with its time zone (in the text, or ``--tz``), in the future. A local time
    that does not exist in ``--tz`` (the hour skipped when clocks go forward) is refused
    rather than moved by an hour."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. "
                                 "2025-03-01T03:00+01:00)", param_hint="'--at'") from None
    zone = _zone(zone_name)
    try:
        if moment.tzinfo is None:
            if zone is None:
                raise click.BadParameter(f"{text!r} has no time zone: add one "
                                         "(2025-03-01T03:00+01:00) or give --tz",
                                         param_hint="'--at'")
            local = moment
            moment = moment.replace(tzinfo=zone)
            if moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
                raise click.BadParameter(
                    f"{text!r} does not exist in {zone_name} (the clocks skip that hour)",
                    param_hint="'--at'")
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise click.BadParameter(f"{text!r} is out of range", param_hint="'--at'") from None
    if moment <= now:
        raise click.BadParameter(f"{moment:%Y-%m-%d %H:%M} UTC is in the past",
                                 param_hint="'--at'")
    return moment


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of requests per second")
    return value


def read_option_file(path: Path, option: str) -> str:
    """A UTF-8 text file given to ``option`` (a byte-order mark is dropped); one line
    naming the option when it cannot be read or is not text."""
    try:
        return path.read_text("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{path} is not UTF-8 text (byte {exc.start + 1})",
                                 param_hint=f"'{option}'") from None
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}",
                                 param_hint=f"'{option}'") from None


def _body(template: str | None, prompt: str | None, template_file: Path | None,
          prompt_file: Path | None) -> tuple[CampaignKind, str]:
    given = [(kind, value) for kind, value in (
        (CampaignKind.TEMPLATE, template),
        (CampaignKind.PROMPT, prompt),
        (CampaignKind.TEMPLATE,
         read_option_file(template_file, "--template-file") if template_file else None),
        (CampaignKind.PROMPT,
         read_option_file(prompt_file, "--prompt-file") if prompt_file else None),
    ) if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --template, --prompt, --template-file, "
                               "--prompt-file")
    kind, text = given[0]
    if not text.strip():
        raise click.UsageError(f"the {kind} is empty")
    return kind, text


@campaigns.command("create")
@click.argument("name")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Contacts with this tag (repeat: with every one of them).")
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE",
              help="Contacts whose attribute KEY reads VALUE (repeatable; AND).")
@click.option("--audience-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="External ids, one a line (combined with --tag/--attr).")
@click.option("--template", help="The message, with {name}-style fields.")
@click.option("--prompt", help="An AI prompt template: each contact gets the AI's answer.")
@click.option("--template-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompt-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sender", default="ai", show_default=True, metavar="ai|agent:USERNAME",
              help="Who the visitor sees: the assistant ([ai] name) or an agent.")
@click.option("--agent", metavar="USERNAME", help="Same as --sender agent:USERNAME.")
@click.option("--concurrency", type=click.IntRange(1, 1000), default=16, show_default=True,
              help="Contacts handled at once.")
@click.option("--rate", type=click.FloatRange(0, 10_000, min_open=True), default=10.0,
              callback=_finite, show_default=True,
              help="AI requests per second at most (template: messages).")
@click.option("--at", "at_text", metavar="TIME",
              help="Run at this ISO 8601 time (with a zone, or --tz); the server runs it.")
@click.option("--tz", "tz_name", metavar="ZONE", help="Time zone of a --at without one.")
@click.option("--fallback", help="Message used when the AI fails for a contact (fields too).")
@click.option("--max-tokens-total", type=click.IntRange(1, MAX_TOKENS_TOTAL),
              help="Token budget of the campaign.")
def create(  # noqa: PLR0917 (click passes each option)
        name: str, tags: tuple[str, ...], attrs: tuple[str, ...],
           audience_file: Path | None, template: str | None, prompt: str | None,
           template_file: Path | None, prompt_file: Path | None, sender: str,
           agent: str | None, concurrency: int, rate: float, at_text: str | None,
           tz_name: str | None, fallback: str | None, max_tokens_total: int | None) -> None:
    """Create campaign NAME and choose its recipients (they are fixed now).

    \b
      campaigns create spring --tag newsletter --attr plan=pro \\
          --prompt "Write {name} two lines about our spring offer for {plan} users."
    """
    from customer_service.campaigns.create import Audience, Resolution, create_campaign
    from customer_service.core.campaign_audience import parse_attrs, parse_audience_lines
    from customer_service.core.campaign_template import parse_template
    from customer_service.core.models import CampaignSpec

    config = current_config()
    if not name.strip():
        raise click.BadParameter("the name is empty", param_hint="'NAME'")
    if len(name.strip()) > MAX_NAME:
        raise click.BadParameter(f"the name is longer than {MAX_NAME} characters",
                                 param_hint="'NAME'")
    kind, body = _body(template, prompt, template_file, prompt_file)
    if kind is CampaignKind.PROMPT and not config.ai.enabled:
        raise click.UsageError("--prompt needs the AI: set [ai] enabled = true (and its "
                               "base_url, model, api_key) in the config")
    longest = config.server.max_message_chars
    for what, text in ((f"--{kind}", body if kind is CampaignKind.TEMPLATE else None),
                       ("--fallback", fallback)):
        if text is not None and len(text) > longest:
            raise click.BadParameter(
                f"{len(text):,} characters: a message is at most {longest:,} "
                "([server] max_message_chars)", param_hint=f"'{what}'")
    reply = config.ai.max_reply_tokens
    if (kind is CampaignKind.PROMPT and max_tokens_total is not None
            and max_tokens_total < reply):
        raise click.BadParameter(
            f"{max_tokens_total:,} tokens cannot pay for one reply ([ai] max_reply_tokens "
            f"is {reply:,})", param_hint="'--max-tokens-total'")
    templates = [(str(kind), parse_template(body))]
    if fallback is not None:
        templates.append(("fallback", parse_template(fallback)))
    scheduled = parse_at(at_text, tz_name, datetime.now(UTC)) if at_text else None
    if tz_name and not at_text:
        raise click.UsageError("--tz goes with --at")
    username = agent
    if sender != "ai":
        role, _, username = sender.partition(":")
        if role != "agent" or not username or agent is not None:
            raise click.BadParameter(f"{sender!r}: expected 'ai' or 'agent:USERNAME'",
                                     param_hint="'--sender'")
    audience = Audience(
        tags=tuple(dict.fromkeys(t.strip() for t in tags if t.strip())),
        attrs=parse_attrs(attrs),
        external_ids=(parse_audience_lines(
            read_option_file(audience_file, "--audience-file").splitlines())
            if audience_file else None),
        file=str(audience_file) if audience_file else None)

    async def work(store: Store) -> tuple[Campaign, int]:
        sender_role, sender_id, sender_name = Role.AI, None, config.ai.name
        if username is not None:
            found = await store.get_agent_by_username(username)
            if found is None:
                raise NotFound(f"no agent {username!r} (see 'agents list')")
            if found.disabled:
                raise Conflict(f"agent {username!r} is disabled")
            sender_role, sender_id, sender_name = Role.AGENT, found.id, found.name
        spec = CampaignSpec(
            name=name.strip(), kind=kind, body=body, sender_role=sender_role,
            sender_id=sender_id, sender_name=sender_name,
            audience={"tags": list(audience.tags), "attrs": audience.attrs,
                      "file": audience.file},
            concurrency=concurrency, rate=rate, scheduled_at=scheduled, fallback=fallback,
            max_tokens_total=max_tokens_total)
        return await create_campaign(store, spec, audience, templates, resolution)

    resolution = Resolution()
    campaign, total = with_store(config, work)
    console().print(f"Created campaign {campaign.id} '{esc(campaign.spec.name)}': "
                    f"{total:,} recipients.")
    if resolution.unknown_ids:
        console().print(f"Left out {resolution.unknown_ids:,} id(s) of "
                        f"{esc(str(audience_file))} that are no contact (the first "
                        f"{esc(repr(resolution.first_unknown))}).")
    if scheduled is not None:
        console().print(f"Scheduled for {scheduled:%Y-%m-%d %H:%M} UTC: the server runs it "
                        "then (\\[campaigns] scheduler).")
    else:
        console().print(f"Preview it with 'campaigns preview {campaign.id}', send it with "
                        f"'campaigns run {campaign.id}'.")


# --- status, list ---------------------------------------------------------------------------

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
    from customer_service.cli.campaign_run import preview, run

    campaigns.add_command(run)
    campaigns.add_command(preview)


_register()
