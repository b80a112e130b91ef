"""``campaigns run`` (the runner in the foreground, with a progress bar) and ``preview``."""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from customer_service.cli.common import console, current_config, esc
from customer_service.core.models import CampaignKind, CampaignStatus
from customer_service.errors import Conflict, NotFound

if TYPE_CHECKING:
    from customer_service.campaigns.runner import Progress, RunOutcome


class _Bar:
    """The rich progress bar: sent, failed, skipped, rate, ETA."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}"), TimeRemainingColumn(),
            console=console(), transient=False, refresh_per_second=4)
        self.task: Any = None

    def update(self, p: Progress) -> None:
        figures = (f"sent {p.sent:,} · failed {p.failed:,} · skipped {p.skipped:,} · "
                   f"{p.per_second:,.1f}/s · {p.status}")
        if self.task is None:
            self.task = self.progress.add_task(f"campaign {p.campaign_id}", total=p.total,
                                               completed=p.done, figures=figures)
        else:
            self.progress.update(self.task, total=p.total, completed=p.done, figures=figures)


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C: trio raises the ``KeyboardInterrupt`` in whichever task runs, so inside the
    runner's nurseries it comes wrapped in exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return isinstance(exc, KeyboardInterrupt)


@click.command("run")
@click.argument("campaign_id", metavar="ID", type=int)
@click.option("--quiet", is_flag=True, help="No progress bar (the summary only).")
def run(campaign_id: int, quiet: bool) -> None:
    """Send the campaign now, in the foreground (Ctrl-C stops; run it again to continue).

    Exits 0 when the campaign finished, 1 when it stopped before its end (paused,
    cancelled, its lease taken by another runner)."""
    import os

    import trio

    from customer_service.campaigns.ai_edge import open_campaign_ai
    from customer_service.campaigns.lease import owner_id
    from customer_service.campaigns.publish import open_bus_publisher
    from customer_service.campaigns.runner import run_campaign, settings_for
    from customer_service.logs import configure_logging
    from customer_service.storage import open_store

    config = current_config()
    configure_logging(config.log)
    settings = settings_for(config)
    owner = owner_id()
    bar = None if quiet else _Bar()

    async def main() -> RunOutcome:
        async with open_store(config) as store:
            await store.migrate()
            campaign = await store.get_campaign(campaign_id)
            if campaign is None:
                raise NotFound(f"no campaign {campaign_id} (see 'campaigns list')")
            prompt = campaign.spec.kind is CampaignKind.PROMPT
            if prompt and not config.ai.enabled:
                raise Conflict(f"campaign {campaign_id} is an AI prompt campaign: set "
                               "[ai] enabled = true to run it")

            async def go(ai: Any, deliver: Any) -> RunOutcome:
                return await run_campaign(store, campaign_id, ai=ai, deliver=deliver,
                                          owner=owner, settings=settings,
                                          progress=bar.update if bar else None)

            async def with_ai(deliver: Any) -> RunOutcome:
                if not prompt:
                    return await go(None, deliver)
                async with open_campaign_ai(config.ai, campaign.spec.concurrency) as ai:
                    return await go(ai, deliver)

            if not config.bus.redis_url:
                return await with_ai(None)
            deployment = await store.deployment_token()
            async with open_bus_publisher(config.bus, deployment,
                                          f"cli-{os.getpid()}") as publisher:
                return await with_ai(publisher.deliver)

    try:
        if bar is not None:
            with bar.progress:
                outcome = trio.run(main)
        else:
            outcome = trio.run(main)
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        if not interrupted(exc):
            raise
        console(stderr=True).print(f"Interrupted. 'campaigns run {campaign_id}' continues "
                                   "where it stopped.")
        sys.exit(130)
    p = outcome.progress
    summary = (f"Campaign {campaign_id}: {outcome.status}"
               + (f" ({esc(outcome.stop_reason)})" if outcome.stop_reason else "")
               + f". {p.sent:,} sent, {p.failed:,} failed, {p.skipped:,} skipped, "
               f"{p.pending:,} pending; {p.sent_this_run:,} sent in {p.elapsed:,.1f} s "
               f"({p.per_second:,.1f}/s), {p.tokens_used:,} tokens used; AI requests in flight: "
               f"max {p.max_in_flight}, avg {p.avg_in_flight:.1f}.")
    console().print(summary)
    if outcome.status is not CampaignStatus.FINISHED:
        sys.exit(1)


@click.command("preview")
@click.argument("campaign_id", metavar="ID", type=int)
@click.option("--sample", type=click.IntRange(1, 50), default=5, show_default=True,
              help="How many recipients to render (the first ones).")
def preview(campaign_id: int, sample: int) -> None:
    """Render (or generate, for a prompt) a few messages: nothing is stored or sent."""
    import trio

    from customer_service.campaigns.ai_edge import open_campaign_ai
    from customer_service.core.campaign_template import MissingField, parse_template, render
    from customer_service.errors import AiError
    from customer_service.storage import open_store

    config = current_config()
    out = console()

    async def main() -> None:
        async with open_store(config) as store:
            await store.migrate()
            campaign = await store.get_campaign(campaign_id)
            if campaign is None:
                raise NotFound(f"no campaign {campaign_id} (see 'campaigns list')")
            template = parse_template(campaign.spec.body)
            contacts = [c for _, c in await store.recipients_to_send(campaign_id, 0, sample)]
            if not contacts:
                page = await store.recipients_page(campaign_id, 0, sample)
                contacts = [c for r in page
                            if (c := await store.get_contact(r.contact_id)) is not None]
            prompt = campaign.spec.kind is CampaignKind.PROMPT
            if prompt and not config.ai.enabled:
                raise Conflict("this is an AI prompt campaign: set [ai] enabled = true")
            out.print(f"Campaign {campaign_id} '{esc(campaign.spec.name)}' "
                      f"({campaign.spec.kind}, from {esc(campaign.spec.sender_name)}): "
                      f"{len(contacts)} sample(s); nothing is stored or sent.")
            async with open_campaign_ai(config.ai, len(contacts) or 1) as ai:
                for contact in contacts:
                    label = f"{contact.name or '(no name)'} <{contact.external_id}>"
                    try:
                        text = render(template, contact)
                        if prompt:
                            out.print(f"[dim]prompt: {esc(text)}[/dim]")
                            text = (await ai.generate(text)).text
                    except (MissingField, AiError) as exc:
                        text = f"[failed: {exc.message}]"
                    out.rule(esc(label))
                    out.print(esc(text))

    trio.run(main)
