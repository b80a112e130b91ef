"""What instances tell each other over the bus, and how a receiver notices what it missed.

Each instance publishes ``Batch``es on one channel: its id (``origin``), a number
that grows by one per batch, and the events gathered since the last one. Events
carry what a receiving hub needs to deliver to its own sockets without asking
anyone: the frame text as the publisher encoded it, and the routing inputs (who the
conversation is assigned to) as the publisher saw them when it committed. The
database stays the source of truth; the bus only carries.

Redis pub/sub delivers at most once, so ``Streams`` numbers what each origin sent:
a batch number that skips ahead means batches were lost (a publish failed, the
subscriber reconnected), and the receiver resynchronises from the database. An
origin that falls silent for too long is gone (killed, or cut off).

Encoded with msgpack (frame texts travel as raw strings, with no JSON escaping),
one msgspec call per batch. Pure: no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import msgspec


class _Event(msgspec.Struct, array_like=True, tag_field="k"):
    pass


class MessageEvent(_Event, tag="m"):
    """A stored message: handed on in ``seq`` order (see ``core.sequencer``)."""

    conversation_id: int
    seq: int
    assigned_to: int | None
    routed: bool
    """False when the publisher did not know the conversation's state: queue followers."""
    text: str


class FrameEvent(_Event, tag="f"):
    """A frame that is not stored (typing, read marks, AI deltas)."""

    conversation_id: int
    assigned_to: int | None
    routed: bool
    text: str
    to_visitor: bool
    to_agents: bool
    except_agent: int
    """An agent who must not receive it (its sender), 0 for none."""


class ConversationEvent(_Event, tag="c"):
    """A conversation changed (or its visitor came or went): the agents it concerns get
    ``text`` (a ``conversation`` frame); ``changed`` drops cached copies of its state."""

    conversation_id: int
    assigned_to: int | None
    was_assigned_to: int | None
    was_waiting: bool
    changed: bool
    text: str


class PresenceEvent(_Event, tag="p"):
    """An agent (``key`` = agent id) or a visitor (``key`` = conversation id) got its first
    socket on the publishing instance, or lost its last."""

    kind: Literal["agent", "visitor"]
    key: int
    online: bool


class RevokeEvent(_Event, tag="r"):
    """Close an agent's sockets opened with this token (``token_hash``), or all of the
    agent's sockets (``None``: the agent was disabled)."""

    agent_id: int
    token_hash: str | None


class WatchEvent(_Event, tag="w"):
    """An agent asked for a conversation's history: its live messages follow the agent."""

    agent_id: int
    conversation_id: int


class AiEvent(_Event, tag="a"):
    """The AI reply of a conversation: ``live`` (streaming on the origin), ``done``
    (stored, or given up), ``stop`` (an agent took over: the owner cancels it), ``more``
    (the visitor wrote again: the owner answers once its reply is done)."""

    conversation_id: int
    stream_id: str
    state: Literal["live", "done", "stop", "more"]


class BlockEvent(_Event, tag="b"):
    """A block was added (``removed`` False: every instance applies it to its list and
    closes the matching visitor sockets) or removed; what the store holds, so no receiver
    needs to read it back."""

    block_id: int
    visitor_id: int | None
    network: str | None
    expires_at: int
    """Milliseconds since the epoch (UTC); 0 for a block without expiry."""
    removed: bool


class StatusEvent(_Event, tag="s"):
    """An agent's status (online, away, offline: ``core/assignment.py``) as stored on its
    row: set by the agent, or read when it signed in on the publisher. Receivers note it
    for auto-assignment and the widget's team status, and tell their dashboards (``text``,
    an ``agent_status`` frame) when it changed what they knew."""

    agent_id: int
    status: str
    text: str


BusEvent = (MessageEvent | FrameEvent | ConversationEvent | PresenceEvent | RevokeEvent
            | WatchEvent | AiEvent | BlockEvent | StatusEvent)


class Batch(msgspec.Struct, array_like=True):
    deployment: str
    """The database's deployment token: batches of another deployment that shares the
    Redis namespace by mistake are ignored."""
    origin: str
    number: int
    events: list[BusEvent]
    final: bool = False
    """The origin's last batch: it is shutting down cleanly (nothing to catch up on)."""
    heartbeat: float = 0.0
    """The origin's ``[bus] heartbeat_interval``: it counts as silent only after missing a
    few of its own heartbeats, whatever the receiver's settings."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(payload: bytes) -> Batch:
    """Raise ``ValueError`` for anything that is not a batch of this version."""
    try:
        return _decoder.decode(payload)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ValueError(f"not a bus batch: {exc}") from None


class Arrival(Enum):
    NEW = "new"
    """The first batch seen from this origin (an instance that just started, or one we
    had given up on)."""
    NEXT = "next"
    """The batch that follows the last one: nothing was missed."""
    LOST = "lost"
    """Batches in between are missing."""
    STALE = "stale"
    """An old or repeated number: ignore the batch."""


@dataclass(slots=True)
class _Origin:
    number: int
    seen: float
    """When the last batch arrived from it."""
    heartbeat: float = 0.0


class Streams:
    """The batch numbers each origin sent, to notice lost batches and silent origins."""

    def __init__(self, remember_gone: int = 1000) -> None:
        self._origins: dict[str, _Origin] = {}
        self._gone: OrderedDict[str, float] = OrderedDict()
        """Origins counted gone, with when they were last heard: one that comes back
        (it was cut off, not dead) missed nothing of ours, but we missed its batches."""
        self._remember_gone = remember_gone

    def __contains__(self, origin: str) -> bool:
        return origin in self._origins

    def __len__(self) -> int:
        return len(self._origins)

    def note(self, origin: str, number: int, now: float, heartbeat: float = 0.0
             ) -> tuple[Arrival, float]:
        """Classify a batch; also returns when the previous one from its origin came (the
        moment after which something may be missing), or ``now`` for a new origin."""
        known = self._origins.get(origin)
        if known is None:
            self._origins[origin] = _Origin(number, now, heartbeat)
            gone_since = self._gone.pop(origin, None)
            if gone_since is not None:
                return Arrival.LOST, gone_since
            return Arrival.NEW, now
        if number <= known.number:
            return Arrival.STALE, known.seen
        previous_seen = known.seen
        arrival = Arrival.NEXT if number == known.number + 1 else Arrival.LOST
        known.number = number
        known.seen = now
        known.heartbeat = heartbeat
        return arrival, previous_seen

    def leave(self, origin: str) -> None:
        """The origin shut down cleanly: forget it, with nothing missed."""
        self._origins.pop(origin, None)

    def silent(self, now: float, timeout: float, *, heard_since: float = 0.0
               ) -> list[tuple[str, float]]:
        """Forget origins that sent nothing for ``timeout`` seconds, counting from
        ``heard_since`` at the earliest (when this instance could hear anyone again after
        its own outage); returns them with the time they were last heard from."""
        gone = [(origin, known.seen) for origin, known in self._origins.items()
                if now - max(known.seen, heard_since) >= max(timeout, 3 * known.heartbeat)]
        for origin, seen in gone:
            del self._origins[origin]
            self._gone[origin] = seen
            while len(self._gone) > self._remember_gone:
                self._gone.popitem(last=False)
        return gone
