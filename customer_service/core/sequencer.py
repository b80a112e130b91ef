"""In-order delivery of each conversation's stored messages to this instance's sockets.

Messages reach an instance from two directions: its own commits (in commit order)
and the bus (other instances' commits, in their order, at most once). Between them a
conversation's messages can arrive out of order (B's seq 5 still on the wire when A
commits seq 6) or not at all (a publish lost while Redis restarted). The sequencer
sits in front of local delivery and keeps, per conversation, the newest ``seq`` it
handed on:

- the next ``seq`` is handed on at once, with any held ones that follow it;
- an older or repeated ``seq`` is dropped (it was handed on before);
- a ``seq`` beyond a gap is held (a bounded number per conversation) and the gap is
  reported; when the missing ones do not arrive within a short wait, the caller reads
  them from the database and offers them, which releases what was held.

The database is the source of truth: every ``seq`` the bus carries is committed, so
a held message may be dropped when too many pile up; the fill reads it again. An
unknown conversation starts at the first ``seq`` offered (nobody here can have seen
an earlier one), unless ``seed`` said where its sockets start.

Pure: no event loop; the caller passes the time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

EVICTION_TRIES = 8


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages ``after + 1 .. until`` of a conversation exist but were not handed on."""

    conversation_id: int
    after: int
    until: int


@dataclass(slots=True)
class _Track(Generic[T]):
    delivered: int
    """The newest seq handed on."""
    held: dict[int, T] = field(default_factory=dict)
    """Messages that arrived beyond a gap, by seq."""
    horizon: int = 0
    """The newest seq known to exist (held, dropped, or reported by a resync)."""
    since: float = 0.0
    """When the current gap opened (or was last retried)."""


class Sequencer(Generic[T]):
    def __init__(self, *, capacity: int = 100_000, max_held: int = 256,
                 pinned: Callable[[int], bool] = lambda _conversation_id: False) -> None:
        self._tracks: OrderedDict[int, _Track[T]] = OrderedDict()
        self._gapped: dict[int, _Track[T]] = {}
        self.capacity = capacity
        self.max_held = max_held
        self._pinned = pinned
        """Conversations never forgotten while true (a local visitor socket follows them)."""

    def __len__(self) -> int:
        return len(self._tracks)

    @property
    def gapped(self) -> bool:
        """Whether some conversation has a gap open."""
        return bool(self._gapped)

    def delivered(self, conversation_id: int) -> int | None:
        track = self._tracks.get(conversation_id)
        return None if track is None else track.delivered

    def seed(self, conversation_id: int, seq: int) -> None:
        """Where a conversation starts when nothing of it was handed on yet (a socket just
        replayed up to ``seq``); a known conversation keeps its position."""
        if conversation_id not in self._tracks:
            self._add(conversation_id, _Track(delivered=seq))

    def offer(self, conversation_id: int, seq: int, item: T, now: float) -> list[T]:
        """What to hand on now, in order, given a message with ``seq`` arrived."""
        track = self._tracks.get(conversation_id)
        if track is None:
            self._add(conversation_id, _Track(delivered=seq))
            return [item]
        self._tracks.move_to_end(conversation_id)
        if seq <= track.delivered:
            return []
        if seq == track.delivered + 1:
            track.delivered = seq
            out = [item]
            if track.held or conversation_id in self._gapped:
                self._release(conversation_id, track, out)
            return out
        if track.horizon <= track.delivered:
            track.since = now
            self._gapped[conversation_id] = track
        track.horizon = max(track.horizon, seq)
        if len(track.held) < self.max_held:
            track.held[seq] = item
        return []

    def _release(self, conversation_id: int, track: _Track[T], out: list[T]) -> None:
        """Hand on the held messages that follow ``delivered`` without a gap."""
        while True:
            following = track.held.pop(track.delivered + 1, None)
            if following is None:
                break
            track.delivered += 1
            out.append(following)
        if track.horizon <= track.delivered:
            track.held.clear()
            self._gapped.pop(conversation_id, None)

    def note_horizon(self, conversation_id: int, seq: int, now: float) -> None:
        """Messages up to ``seq`` exist (a resync read it from the database): a known
        conversation behind it gets a gap, due at once."""
        track = self._tracks.get(conversation_id)
        if track is None or seq <= max(track.delivered, track.horizon):
            return
        if track.horizon <= track.delivered:
            self._gapped[conversation_id] = track
        track.horizon = seq
        track.since = float("-inf")

    def due(self, now: float, wait: float) -> list[Gap]:
        """Gaps open for at least ``wait`` seconds: read them from the database."""
        return [Gap(cid, track.delivered, track.horizon) for cid, track in self._gapped.items()
                if now - track.since >= wait]

    def next_due(self, wait: float) -> float | None:
        """When the oldest open gap becomes due (None: no gap)."""
        if not self._gapped:
            return None
        return min(track.since for track in self._gapped.values()) + wait

    def retry_later(self, conversation_id: int, now: float, delay: float) -> None:
        """A fill failed (the database did not answer): the gap is due again ``delay``
        seconds after it would normally be."""
        track = self._gapped.get(conversation_id)
        if track is not None:
            track.since = now + delay

    def abandon_gap(self, conversation_id: int) -> None:
        """Stop waiting: the database ends where delivery stands. What the bus announced
        beyond it (held messages, the horizon) was not real and is dropped."""
        track = self._gapped.pop(conversation_id, None)
        if track is None:
            return
        track.held.clear()
        track.horizon = track.delivered

    def forget(self, conversation_id: int) -> None:
        """A conversation the database does not know (announced by mistake): drop it."""
        self._gapped.pop(conversation_id, None)
        self._tracks.pop(conversation_id, None)

    def _add(self, conversation_id: int, track: _Track[T]) -> None:
        self._tracks[conversation_id] = track
        if len(self._tracks) <= self.capacity:
            return
        # Forget the least recently used conversation that nothing depends on; a pinned
        # or gapped one goes to the back instead. A few tries at most: when every old
        # one is pinned the map stays a little over capacity rather than scanning it all.
        for _ in range(EVICTION_TRIES):
            oldest = next(iter(self._tracks))
            if oldest in self._gapped or oldest == conversation_id or self._pinned(oldest):
                self._tracks.move_to_end(oldest)
                continue
            del self._tracks[oldest]
            return
