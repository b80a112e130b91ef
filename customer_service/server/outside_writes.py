"""Delivering messages that another process committed.

``campaigns run`` in a shell commits campaign messages straight to the database. With a
bus it also publishes them and every instance delivers them at once; but a publish can
fail (Redis down for a moment), and without a bus there is none. So the server also
looks for them here: while a campaign runs under another owner, the conversations
changed in the last moments are read every ``interval`` seconds, and each one this
instance follows (a visitor online, a known position in the sequencer) gets its new
``last_seq`` as a horizon. The sequencer opens a gap, and the gap filler (``server.sync``)
reads the missing messages from the database and delivers them in order, as it does for
a publish lost on the bus. Messages the bus already delivered change nothing (the
sequencer is past them).

When no campaign runs elsewhere (almost always) this costs one small query a second.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import trio

from customer_service.core.models import CampaignStatus
from customer_service.errors import CustomerServiceError
from customer_service.server.hub import Hub
from customer_service.storage.base import Store

log = logging.getLogger(__name__)

INTERVAL = 1.0
LOOK_BACK = 3.0
"""Seconds before the previous look that a look reaches back: commits in flight, and the
writer's clock a little behind ours."""
RECENT = 10.0
"""Seconds after a campaign's last change during which the server still looks."""
PAGE = 5000
DEADLINE = 5.0


async def serve_outside_writes(hub: Hub, store: Store, owner: str, *,
                               interval: float = INTERVAL,
                               task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                               ) -> None:
    task_status.started()
    last_look: datetime | None = None
    failing = False
    while True:
        await trio.sleep(interval)
        try:
            with trio.fail_after(DEADLINE):
                now = datetime.now(UTC)
                if not await _campaign_running_elsewhere(store, owner, now):
                    last_look = None
                    continue
                since = (last_look or now) - timedelta(seconds=LOOK_BACK + interval)
                changed = await store.conversations_updated_since(since, PAGE)
                last_look = now
        except (CustomerServiceError, trio.TooSlowError) as exc:
            if not failing:
                log.warning("could not look for messages other processes wrote (%s); "
                            "trying again every %.0f s", exc or "no answer in time", interval)
            failing = True
            continue
        if failing:
            log.info("looking for messages other processes wrote works again")
            failing = False
        opened = 0
        clock = trio.current_time()
        for conversation in changed:
            cid = conversation.id
            hub.context_stale(cid, conversation.last_seq)  # cached AI context behind it
            if hub.sequencer.delivered(cid) is None:
                continue  # nobody here follows it: its sockets replay from the store
            hub.sequencer.note_horizon(cid, conversation.last_seq, clock)
            cached = hub.conversations.get(cid)
            if cached is not None and cached.last_seq < conversation.last_seq:
                hub.conversations.forget(cid)
            opened += 1
        if opened:
            hub.sync.gaps()


async def _campaign_running_elsewhere(store: Store, owner: str, now: datetime) -> bool:
    """A campaign runs under another owner, or one changed moments ago (a run that began
    and ended between two looks, or whose last messages came after the previous look)."""
    recent = now - timedelta(seconds=RECENT)
    return any((campaign.status is CampaignStatus.RUNNING and campaign.lease_owner != owner)
               or campaign.updated_at >= recent
               for campaign in await store.list_campaigns())
