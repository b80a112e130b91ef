"""Who runs a campaign: its lease, held by one runner at a time across processes.

A runner is named ``host:pid:random`` (``owner_id``); a lease held by a process of this
host that no longer exists (``kill -9``, a server killed and restarted) is taken over at
once instead of waiting for it to expire (``holder_is_dead``). Another host's holder
cannot be checked: its lease must expire.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import UTC, datetime

from customer_service.core.models import Campaign, CampaignStatus
from customer_service.errors import Conflict, NotFound
from customer_service.storage.base import Store

log = logging.getLogger(__name__)

RUNNABLE = (CampaignStatus.READY, CampaignStatus.SCHEDULED, CampaignStatus.RUNNING)


def _now() -> datetime:
    return datetime.now(UTC)


def owner_id() -> str:
    """``host:pid:random``: who holds a lease, and whether it still lives (``holder_is_dead``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_is_dead(owner: str) -> bool:
    """True when ``owner`` (an ``owner_id()``) is a process of this host that is gone."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False



async def claim(store: Store, campaign_id: int, owner: str, lease_seconds: float) -> Campaign:
    """Take the campaign's lease (from a dead local holder too); raise ``NotFound`` or
    ``Conflict`` naming who holds it."""
    current = await store.get_campaign(campaign_id)
    if current is None:
        raise NotFound(f"no campaign {campaign_id}")
    if current.status not in RUNNABLE:
        hint = (f"; 'campaigns resume {campaign_id}' first"
                if current.status is CampaignStatus.PAUSED else "")
        raise Conflict(f"campaign {campaign_id} is {current.status}{hint}")
    claimed = await store.claim_campaign(campaign_id, owner, lease_seconds, _now())
    if claimed is None:  # the holder may have claimed it since the first read
        current = await store.get_campaign(campaign_id) or current
    if claimed is None and current.lease_owner and holder_is_dead(current.lease_owner):
        log.info("campaign %d: its runner %s is gone; taking over", campaign_id,
                 current.lease_owner)
        claimed = await store.claim_campaign(campaign_id, owner, lease_seconds, _now(),
                                             force=True)
    if claimed is None:
        until = current.lease_until
        raise Conflict(f"campaign {campaign_id} is being run by {current.lease_owner}"
                       + (f" (lease until {until:%H:%M:%S} UTC)" if until else ""))
    return claimed
