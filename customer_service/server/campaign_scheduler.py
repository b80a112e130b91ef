"""Running scheduled campaigns (``campaigns create --at``) in the server when they are due.

Every few seconds each instance asks the store for due campaigns: scheduled ones whose
time has come, and running ones whose runner's lease expired (an instance died in the
middle: the run continues where it stopped) or whose runner was a process of this host
that is gone (a server killed and restarted takes over at once). Any instance may try; the campaign's lease
(a compare-and-set on its row, ``claim_campaign``) lets exactly one run it, even with
several instances on one database. A campaign created without ``--at`` is run by
``campaigns run`` in a shell and never taken over here: stopping that command with
Ctrl-C must stop the campaign.

Messages go out through ``ChatService.on_committed`` like any other committed message:
to the contact's sockets on this instance, and over the bus to the others.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import trio

from customer_service.campaigns.ai_edge import open_campaign_ai
from customer_service.campaigns.lease import holder_is_dead
from customer_service.campaigns.runner import run_campaign, settings_for
from customer_service.config import Config
from customer_service.core.models import AppendResult, Campaign, CampaignKind, CampaignStatus
from customer_service.errors import CustomerServiceError
from customer_service.server.service import ChatService

log = logging.getLogger(__name__)

INTERVAL = 2.0
"""Seconds between looks for due campaigns (plus up to a second of jitter, so that
instances started together do not all ask at once)."""
LOOK_DEADLINE = 10.0
RETRY_REFUSED = 30.0


def _ended(running: set[int], refused: dict[int, float], campaign_id: int,
           was_refused: bool) -> None:
    running.discard(campaign_id)
    if was_refused:
        refused[campaign_id] = trio.current_time()
    else:
        refused.pop(campaign_id, None)


async def serve_campaign_scheduler(service: ChatService, config: Config, owner: str, *,
                                   interval: float = INTERVAL,
                                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                                   ) -> None:
    running: set[int] = set()
    refused: dict[int, float] = {}
    """Campaigns not run here on the last try (another instance runs it, no AI configured
    here): tried again after ``RETRY_REFUSED`` seconds, not at every look."""
    failing = False
    async with trio.open_nursery() as nursery:
        task_status.started()
        while True:
            try:
                with trio.fail_after(LOOK_DEADLINE):
                    due = await _due(service, datetime.now(UTC))
            except (CustomerServiceError, trio.TooSlowError) as exc:
                if not failing:
                    log.warning("could not look for due campaigns (%s); trying again",
                                exc or "no answer in time")
                failing = True
                due = []
            else:
                failing = False
            now = trio.current_time()
            for campaign in due:
                if (campaign.id in running or campaign.spec.scheduled_at is None
                        or now < refused.get(campaign.id, -RETRY_REFUSED) + RETRY_REFUSED):
                    continue
                running.add(campaign.id)
                nursery.start_soon(_run_one, service, config, owner, campaign,
                                   partial(_ended, running, refused, campaign.id))
            await trio.sleep(interval + random.random())


async def _due(service: ChatService, now: datetime) -> list[Campaign]:
    """Due campaigns, and running ones whose runner was a process of this host that is gone
    (a server killed and restarted): those need not wait for their lease to expire."""
    due = await service.store.due_campaigns(now)
    known = {campaign.id for campaign in due}
    due += [campaign for campaign in await service.store.list_campaigns()
            if campaign.status is CampaignStatus.RUNNING and campaign.id not in known
            and campaign.lease_owner and holder_is_dead(campaign.lease_owner)]
    return due


async def _run_one(service: ChatService, config: Config, owner: str, campaign: Campaign,
                   done: Callable[[bool], None]) -> None:
    async def deliver(result: AppendResult) -> None:
        service.on_committed([result])

    settings = settings_for(config)
    was_refused = False
    try:
        if campaign.spec.kind is CampaignKind.PROMPT and config.ai.enabled:
            async with open_campaign_ai(config.ai, campaign.spec.concurrency) as ai:
                outcome = await run_campaign(service.store, campaign.id, ai=ai,
                                             deliver=deliver, owner=owner,
                                             settings=settings)
        else:
            outcome = await run_campaign(service.store, campaign.id, ai=None,
                                         deliver=deliver, owner=owner, settings=settings)
        log.info("campaign %d: run ended here: %s%s (%d sent by this run)", campaign.id,
                 outcome.status, f" ({outcome.stop_reason})" if outcome.stop_reason else "",
                 outcome.progress.sent_this_run)
    except CustomerServiceError as exc:
        # Another instance holds it (Conflict), it was cancelled meanwhile, the database
        # failed: it stays as it is, and the next look tries again if it is still due.
        log.info("campaign %d: not run here: %s", campaign.id, exc.message)
        was_refused = True
    finally:
        done(was_refused)
