"""``campaigns create``: check everything, then create the campaign and its recipients."""

# ruff: noqa: PLC0415

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import click

from customer_service.cli.common import console, current_config, esc, with_store
from customer_service.core.models import CampaignKind, Role
from customer_service.errors import Conflict, NotFound

if TYPE_CHECKING:
    from customer_service.core.models import Campaign
    from customer_service.storage.base import Store

MAX_NAME = 255
"""The campaign name's column (MySQL: VARCHAR(255))."""
MAX_TOKENS_TOTAL = 10**12


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


@click.command("create")
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
