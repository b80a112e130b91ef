"""The blocks this instance enforces: an in-memory list the hello path asks, kept fresh.

The hello path never queries the database for blocks: it asks ``BlockGuard.refusal``,
a few dictionary lookups on ``core.blocks.BlockList`` (expiry is checked against the
clock there, so an expired block stops applying at once, whenever it was loaded). The
list is loaded before the server listens and reloaded every ``REFRESH_INTERVAL``
seconds under a deadline (a block added by ``blocks add`` without a bus, a bus event
that was lost); a failed reload keeps the list it has. A block added or removed through
this server (the dashboard) applies here at once and goes to the other instances as a
``BlockEvent``; ``blocks add`` publishes the same event when a bus is configured.

A block that is new to this instance, however it arrived, closes the matching visitor
sockets here: an ``error`` frame with code ``blocked``, then close 1008 ``blocked``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import trio

from customer_service.core.blocks import (
    Block,
    BlockList,
    address_key,
    refusal_message,
)
from customer_service.core.bus_events import BlockEvent
from customer_service.core.frames import error_frame
from customer_service.core.models import utc_now
from customer_service.errors import Blocked, CustomerServiceError, Unavailable
from customer_service.server.hub import Hub
from customer_service.storage.base import Store

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 5.0
"""Seconds between reloads of the active blocks from the database."""
CLOSE_REASON = "blocked"


def block_event(block: Block, *, removed: bool = False) -> BlockEvent:
    expires = 0 if block.expires_at is None else round(block.expires_at.timestamp() * 1000)
    return BlockEvent(block.id, block.visitor_id, block.network, expires, removed)


class BlockGuard:
    def __init__(self, store: Store, hub: Hub, timeout: float) -> None:
        self.store = store
        self.hub = hub
        self.timeout = timeout
        """The deadline of one reload."""
        self.blocks = BlockList()
        self._wake = trio.Event()
        self._meanwhile: list[tuple[Block, bool]] | None = None
        """While a reload reads the database: the blocks added (False) or removed (True)
        meanwhile, applied again to what it read (the read may predate them)."""
        hub.on_block = self.on_event

    # ---- the hello path ---------------------------------------------------
    def refusal(self, visitor_id: int | None, address: str) -> Blocked | None:
        """The error to refuse this visitor (or, before it is known, this address) with;
        None when no active block applies."""
        if not self.blocks:
            return None
        found = self.blocks.match(visitor_id, address_key(address), utc_now())
        return None if found is None else Blocked(refusal_message(found))

    # ---- changes ------------------------------------------------------------
    def added(self, block: Block) -> None:
        """A block stored by this instance: apply it here and tell the other instances."""
        self._apply(block)
        self.hub.block(block_event(block))

    def removed(self, block: Block) -> None:
        self._lift(block)
        self.hub.block(block_event(block, removed=True))

    def on_event(self, event: BlockEvent) -> None:
        """A block added or removed on another instance (or by ``blocks add``)."""
        if event.removed:
            self._lift(Block(event.block_id, event.visitor_id, event.network, "", "",
                             utc_now(), None))
            return
        expires = (datetime.fromtimestamp(event.expires_at / 1000, UTC) if event.expires_at
                   else None)
        self._apply(Block(event.block_id, event.visitor_id, event.network, "", "",
                          utc_now(), expires))

    def _lift(self, block: Block) -> None:
        self.blocks.remove(block.id)
        if self._meanwhile is not None:
            self._meanwhile.append((block, True))

    def _apply(self, block: Block) -> None:
        if self._meanwhile is not None:
            self._meanwhile.append((block, False))
        if block.id in self.blocks or not block.active(utc_now()):
            return
        self.blocks.add(block)
        self._close_sockets(block)

    def _close_sockets(self, block: Block) -> None:
        """Close the visitor sockets here that ``block`` names, with the reason (one
        address parse per socket: ~1 µs, so 10,000 sockets take ~15 ms)."""
        one = BlockList([block])
        now = utc_now()
        text = ""
        for peers in tuple(self.hub.visitors.values()):
            for peer in tuple(peers):
                if peer.kicked or one.match(peer.identity, address_key(peer.address),
                                            now) is None:
                    continue
                log.info("[%s] visitor %s (%s): blocked by block %s; closing", peer.conn_id,
                         peer.identity, peer.address, block.id)
                text = text or error_frame(Blocked(refusal_message(block)))
                peer.kick(1008, CLOSE_REASON, text)

    def refresh_soon(self) -> None:
        self._wake.set()

    # ---- reloading ----------------------------------------------------------
    async def load(self, now: datetime | None = None) -> None:
        """Bring the list up to the active blocks in the database (closing the sockets
        of blocks new here); raise ``Unavailable`` when they cannot be read in time."""
        self._meanwhile = []
        try:
            with trio.fail_after(self.timeout):
                found = await self.store.list_blocks(now or utc_now())
        except trio.TooSlowError:
            raise Unavailable(
                f"the blocks could not be read within {self.timeout:g} s") from None
        finally:
            meanwhile, self._meanwhile = self._meanwhile, None
        # Applied as a change to the index (building it anew costs ~8 ms of the event
        # loop for 1,000 blocks; a reload usually finds nothing new).
        fresh = [block for block in found if block.id not in self.blocks]
        kept = {block.id for block in found}
        kept.update(block.id for block, removed in meanwhile if not removed)
        for block in self.blocks.blocks():
            if block.id not in kept:
                self.blocks.remove(block.id)
        for block in fresh:
            self.blocks.add(block)
        for block, removed in meanwhile:
            if removed:
                self.blocks.remove(block.id)
        for block in fresh:
            if block.id in self.blocks:
                self._close_sockets(block)

    async def serve(self, interval: float = REFRESH_INTERVAL, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the blocks, report started, then reload every ``interval`` seconds (or
        when asked to)."""
        await self._reload()
        task_status.started()
        while True:
            with trio.move_on_after(interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._reload()

    async def _reload(self) -> None:
        try:
            await self.load()
        except CustomerServiceError as exc:
            log.warning("could not reload the blocks (keeping the %d known): %s",
                        len(self.blocks), exc)
