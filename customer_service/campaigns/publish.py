"""Live delivery from ``campaigns run`` (a process that is not a server): the bus.

Each delivered message becomes a ``MessageEvent`` (the ``message`` frame as a server
sends it); the events are gathered for ``FLUSH_EVERY`` seconds and published as
one-off batches (number 0) through the bus's ``CommandPublisher`` (one Redis client).
The servers also look in the database for messages a campaign running elsewhere
commits (``server.outside_writes``, about once a second), so without a bus, or when
Redis fails, the message still arrives a second later: a failed publish is logged,
not fatal. The queue is bounded: a full one drops events (the database
fallback again).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from customer_service.bus.connection import open_command_publisher
from customer_service.config import BusConfig
from customer_service.core import frames
from customer_service.core.bus_events import BusEvent, MessageEvent
from customer_service.core.models import AppendResult, StoredMessage
from customer_service.errors import BusError

log = logging.getLogger(__name__)

FLUSH_EVERY = 0.05
QUEUE = 10_000
BATCH = 500


def message_frame_text(message: StoredMessage) -> str:
    """The ``message`` frame of a stored message, as the server encodes it."""
    return frames.encode(frames.message_out(message))


class BusPublisher:
    """``deliver`` for the runner: queue the message's event, never wait for Redis."""

    def __init__(self) -> None:
        self._send, self.receive = trio.open_memory_channel[BusEvent](QUEUE)
        self.published = 0
        self.dropped = 0

    async def deliver(self, result: AppendResult) -> None:
        message = result.message
        event = MessageEvent(message.conversation_id, message.seq, result.assigned_to, True,
                             message_frame_text(message))
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1

    async def close(self) -> None:
        await self._send.aclose()


async def _pump(publisher: BusPublisher, config: BusConfig, deployment: str,
                origin: str) -> None:
    try:
        async with open_command_publisher(config, deployment, origin) as bus:
            async for first in publisher.receive:
                events: list[BusEvent] = [first]
                await trio.sleep(FLUSH_EVERY)
                while len(events) < BATCH:
                    try:
                        events.append(publisher.receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                try:
                    await bus.publish(events)
                    publisher.published += len(events)
                except BusError as exc:
                    log.warning("campaign messages: bus publish of %d failed (%s); the "
                                "servers find them in the database", len(events), exc)
    except BusError as exc:
        log.warning("campaign messages: the bus is unavailable (%s); the servers find "
                    "them in the database", exc)


@asynccontextmanager
async def open_bus_publisher(config: BusConfig, deployment: str, origin: str
                             ) -> AsyncIterator[BusPublisher]:
    """A publisher whose queue is flushed (within twice the bus's command timeout) at exit."""
    publisher = BusPublisher()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump, publisher, config, deployment, origin)
        try:
            yield publisher
        finally:
            await publisher.close()  # the pump publishes what is queued, then ends
            nursery.cancel_scope.deadline = trio.current_time() + 2 * config.command_timeout
