"""Keeping this instance's sockets complete when the bus loses something.

Three jobs, each a task run by ``serve_sync``:

- **gap filling**: a conversation whose messages arrived with a gap (``core.sequencer``)
  waits ``[bus] gap_wait`` for the missing ones to come over the bus; then they are
  read from the database and handed to the hub, which releases what was held behind
  them. A database that does not answer is asked again later.
- **resynchronisation** after missed batches (an origin's batch numbers skipped, or an
  origin went silent): the conversations changed since the last good batch are read
  from the database; their cached state is replaced, the sequencer learns how far they
  go (so gaps open and get filled), and this instance's agents get their new state.
  Presence is re-read from the other instance's hash in Redis.
- **silent origins**: an instance that stopped sending heartbeats is gone.

Every database and Redis call here has a deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import trio

from customer_service.config import Config
from customer_service.core import frames
from customer_service.core.bus_events import MessageEvent
from customer_service.core.sequencer import Gap
from customer_service.errors import CustomerServiceError, NotFound
from customer_service.server.hub import Hub
from customer_service.server.service import ChatService

log = logging.getLogger(__name__)

FILL_PAGE = 500
FILL_DEADLINE = 5.0
"""Seconds one gap fill (all its pages) may take before it is tried again later."""
FILL_RETRY = 1.0
MIN_WAIT = 0.001
IDLE_WAIT = 3600.0
RESYNC_MARGIN = 60.0
"""Seconds before the last good batch a resync looks back, for clock skew between
instances (each stamps ``updated_at`` with its own clock) and batches in flight."""
RESYNC_LIMIT = 10_000
RESYNC_ANNOUNCE = 500
"""At most this many changed conversations are re-announced to this instance's agents."""
RESYNC_DEADLINE = 30.0
RETRY_DELAY = 1.0
SNAPSHOT_ATTEMPTS = 3
GATHER = 0.2
"""Seconds the resync task waits after a first request for others to join it."""


class PresenceReader(Protocol):
    """What the sync task needs of the bus (``bus.redis.RedisBus``)."""

    @property
    def status(self) -> str:
        """``ok`` or ``degraded``."""

    async def read_presence(self, instance: str) -> tuple[list[int], list[int]]:
        """Another instance's online agents and visitors; ``BusError`` when Redis fails."""


async def serve_sync(hub: Hub, service: ChatService, config: Config, *,
                     presence_reader: PresenceReader | None = None,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Run gap filling (always) and, with a bus, resynchronisation and silence checks."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_fill_gaps, hub, service, config.bus.gap_wait)
        if presence_reader is not None:
            nursery.start_soon(_resync_loop, hub, service, presence_reader)
            nursery.start_soon(_watch_silence, hub,
                               lambda: presence_reader.status == "ok",
                               config.bus.heartbeat_interval, config.bus.instance_timeout)
        task_status.started()


async def _fill_gaps(hub: Hub, service: ChatService, wait: float) -> None:
    sequencer = hub.sequencer
    while True:
        hub.sync.gap_wake = trio.Event()  # before looking, so no new gap goes unnoticed
        now = trio.current_time()
        gaps = sequencer.due(now, wait)
        if gaps:
            for gap in gaps:
                await _fill(hub, service, gap)
            await trio.lowlevel.checkpoint()
            continue
        due_at = sequencer.next_due(wait)
        wake_at = now + IDLE_WAIT if due_at is None else max(due_at, now + MIN_WAIT)
        with trio.move_on_at(wake_at):
            await hub.sync.gap_wake.wait()


async def _fill(hub: Hub, service: ChatService, gap: Gap) -> None:
    cid = gap.conversation_id
    if gap.after >= gap.until:  # nothing is missing after all
        hub.sequencer.abandon_gap(cid)
        return
    read = 0
    try:
        with trio.fail_after(FILL_DEADLINE):
            # Fresh from the database, not the cache: whatever made us miss messages may
            # have made us miss a change of assignee too.
            conversation = await service.store.get_conversation(cid)
            if conversation is None:
                raise NotFound(f"no conversation {cid}")
            after = gap.after
            while after < gap.until:
                page = await service.store.messages_after(cid, after, FILL_PAGE)
                for message in page:
                    hub.fill(MessageEvent(cid, message.seq, conversation.assigned_to, True,
                                          frames.encode(frames.message_out(message))))
                read += len(page)
                if len(page) < FILL_PAGE:
                    break
                after = page[-1].seq
    except NotFound:
        log.warning("[conv %s] the bus announced messages of a conversation the database "
                    "does not have; ignoring it", cid)
        hub.sequencer.forget(cid)
        return
    except (CustomerServiceError, trio.TooSlowError) as exc:
        log.warning("[conv %s] could not read messages %s..%s to fill a gap (%s); retrying",
                    cid, gap.after + 1, gap.until, exc or "no answer in time")
        hub.sequencer.retry_later(cid, trio.current_time(), FILL_RETRY)
        return
    finally:
        service.metrics.bus_gap_fills.inc(read)
    delivered = hub.sequencer.delivered(cid) or 0
    if delivered < gap.until:
        # The bus announced messages the database does not have: not real (a forged
        # publish on Redis?). Go on from what the database has.
        log.error("[conv %s] the bus announced message %s but the database ends at %s; "
                  "ignoring what lies beyond", cid, gap.until, delivered)
        hub.sequencer.abandon_gap(cid)
    else:
        log.debug("[conv %s] filled messages %s..%s from the database", cid, gap.after + 1,
                  gap.until)


async def _resync_loop(hub: Hub, service: ChatService, reader: PresenceReader) -> None:
    requests = hub.sync
    failures: dict[str, int] = {}
    while True:
        await requests.wake.wait()
        # Gather: an outage makes every origin's next batch ask for the same resync.
        await trio.sleep(GATHER)
        requests.wake = trio.Event()
        origins, requests.snapshots = requests.snapshots, set()
        since, requests.resync_since = requests.resync_since, None
        retry = False
        for origin in origins:
            if origin not in hub.streams:
                continue  # gone meanwhile
            try:
                agents, visitors = await reader.read_presence(origin)
            except CustomerServiceError as exc:
                failures[origin] = failures.get(origin, 0) + 1
                if failures[origin] < SNAPSHOT_ATTEMPTS:
                    requests.snapshots.add(origin)
                    retry = True
                else:
                    log.warning("could not read the presence of instance %s (%s); going by "
                                "its events alone", origin, exc)
                    del failures[origin]
                continue
            failures.pop(origin, None)
            if origin in hub.streams:
                requests.reannounce |= {cid for cid in hub.presence.replace(origin, agents, visitors)
                                        if cid not in hub.visitors}
        if since is not None:
            if await _resync(hub, service, since):
                if requests.resync_since is None:
                    hub.release_deferred()
            else:
                requests.resync(since)
                await trio.sleep(RETRY_DELAY)
        if requests.reannounce:
            await _reannounce(hub, service)
        if retry:
            await trio.sleep(RETRY_DELAY)
            requests.wake.set()


async def _reannounce(hub: Hub, service: ChatService) -> None:
    """Show this instance's agents conversations whose visitor came or went unseen."""
    pending, hub.sync.reannounce = hub.sync.reannounce, set()
    with trio.move_on_after(RESYNC_DEADLINE):
        for cid in sorted(pending)[:RESYNC_ANNOUNCE]:
            try:
                await service.announce(await service.conversation(cid), local_only=True)
            except CustomerServiceError as exc:
                log.warning("[conv %s] could not show agents its visitor's presence: %s",
                            cid, exc)


async def _resync(hub: Hub, service: ChatService, since: float) -> bool:
    """Catch up with conversations changed since ``since`` (wall clock); False to retry."""
    service.metrics.bus_resyncs.inc()
    cache = hub.conversations
    start = datetime.fromtimestamp(since - RESYNC_MARGIN, UTC)
    try:
        with trio.fail_after(RESYNC_DEADLINE):
            stamp = cache.stamp()
            changed = await service.store.conversations_updated_since(start, RESYNC_LIMIT)
            now = trio.current_time()
            for conversation in changed:
                cache.put_loaded(conversation, stamp)
                if conversation.created_at >= start:
                    # Begun while we heard nothing: its sockets here start at seq 1. (An
                    # older one unknown here has nobody here who saw any of it.)
                    hub.sequencer.seed(conversation.id, 0)
                hub.sequencer.note_horizon(conversation.id, conversation.last_seq, now)
                hub.context_stale(conversation.id, conversation.last_seq)
            hub.sync.gaps()
            for conversation in changed[:RESYNC_ANNOUNCE]:
                await service.announce(conversation, local_only=True)
    except (CustomerServiceError, trio.TooSlowError) as exc:
        log.warning("resynchronising from the database failed (%s); retrying",
                    exc or "no answer in time")
        return False
    log.info("resynchronised %d conversations changed since %s", len(changed),
             start.isoformat(timespec="seconds"))
    return True


async def _watch_silence(hub: Hub, bus_ok: Callable[[], bool], interval: float,
                         timeout: float) -> None:
    """Count an instance gone when nothing came from it for ``timeout`` seconds, while
    this instance could hear: during its own outage, Redis is the one at fault."""
    heard_since = time.time()
    hearing = True
    while True:
        await trio.sleep(interval)
        if not bus_ok():
            hearing = False
            continue
        if not hearing:
            hearing = True
            heard_since = time.time()
        for origin, last_seen in hub.streams.silent(time.time(), timeout,
                                                    heard_since=heard_since):
            hub.forget_origin(origin, last_seen)
