"""The team's availability now: business hours on the service's clock, agents, the AI.

``GET /api/v1/widget`` and the visitor's ``availability`` frame say it; the auto-replies
(``server/auto_replies.py``) decide on it. The decisions are ``core/hours.py`` and
``core/auto_replies.py``; this edge only gathers their inputs: ``service.clock`` (tests give
the server a fixed one), ``hub.agents_available()`` and whether an AI answers.

Visitors connected here hear of a change within ``WATCH_INTERVAL``: a task compares the
status with the one last told and, when it differs, hands every local visitor socket an
``availability`` frame (one encoding, no waiting). Each instance does this for its own
sockets from the presence it knows, so nothing crosses the bus.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

import trio

from customer_service.core import frames
from customer_service.core.auto_replies import Status, TeamState, availability
from customer_service.core.hours import Schedule, parse_schedule
from customer_service.core.models import Conversation

if TYPE_CHECKING:
    from customer_service.server.service import ChatService

log = logging.getLogger(__name__)

WATCH_INTERVAL = 10.0
"""Seconds between two looks at the availability for the sockets connected here."""


class Availability:
    def __init__(self, service: ChatService) -> None:
        self.service = service
        hours = service.config.hours
        self.schedule: Schedule | None = (
            parse_schedule(hours.timezone, hours.open, hours.holidays) if hours.enabled
            else None)
        """None when ``[hours]`` is off: always open."""
        self.told: str | None = None
        """The status last sent to this instance's visitor sockets."""

    def agents_available(self) -> bool:
        """An agent can take a conversation now: online, with status online (not away or
        offline), here or on another instance."""
        return bool(self.service.hub.agents_available())

    def state(self, conversation: Conversation | None = None) -> TeamState:
        """The team's state now; ``conversation``: whether the AI answers that one (else a
        new conversation)."""
        now = self.service.clock()
        schedule = self.schedule
        hours_open = schedule is None or schedule.is_open(now)
        ai = self.service.ai
        ai_answers = ai is not None and (conversation is None or ai.wants(conversation))
        return TeamState(
            hours_open=hours_open, agents_available=self.agents_available(),
            ai_answers=ai_answers,
            back_at=None if hours_open or schedule is None else schedule.next_opening(now))

    def now_status(self) -> tuple[Status, datetime | None]:
        """(``online`` | ``away`` | ``closed``, the next opening when closed)."""
        state = self.state()
        status = availability(state)
        return status, state.back_at if status == "closed" else None

    def frame(self) -> frames.AvailabilityOut:
        status, back_at = self.now_status()
        return frames.AvailabilityOut(status=status, back_at=iso(back_at))

    def tell_visitors(self) -> None:
        """Send the status to this instance's visitor sockets when it changed."""
        frame = self.frame()
        if frame.status == self.told:
            return
        previous, self.told = self.told, frame.status
        if previous is None:
            return  # the first look: every socket got the status with its welcome
        text = frames.encode(frame)
        hub = self.service.hub
        count = 0
        for conversation_id, peers in list(hub.visitors.items()):
            for peer in list(peers):
                if peer.push((conversation_id, 0, text)):
                    count += 1
        log.info("[availability] %s → %s; told %s visitor sockets", previous, frame.status,
                 count)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Tell this instance's visitors when the availability changes (until cancelled)."""
        task_status.started()
        while True:
            self.tell_visitors()
            await trio.sleep(WATCH_INTERVAL)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with the offset (``2026-12-07T09:00:00+01:00``); None stays None."""
    return None if moment is None else moment.isoformat(timespec="seconds")
