"""Who is online on the other instances, as this instance knows it.

Each instance tells the others when an agent gets its first socket there or loses
its last one, and the same for a visitor (keyed by conversation). Events can be
lost, so a receiver also replaces an instance's whole set from a snapshot (read
from Redis when it first hears of that instance, or after it missed batches) and
drops an instance that went silent. Queries are answered from memory: a
``conversation`` frame built for 400 conversations asks 400 times.

Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from customer_service.core.bus_events import PresenceEvent


class _Sets:
    __slots__ = ("agents", "visitors")

    def __init__(self) -> None:
        self.agents: set[int] = set()
        self.visitors: set[int] = set()


class PresenceView:
    def __init__(self) -> None:
        self._by_origin: dict[str, _Sets] = {}
        self._agents: Counter[int] = Counter()
        """agent id → on how many other instances it is online."""
        self._visitors: Counter[int] = Counter()
        """conversation id → on how many other instances its visitor is online."""

    def agent_online(self, agent_id: int) -> bool:
        return agent_id in self._agents

    def visitor_online(self, conversation_id: int) -> bool:
        return conversation_id in self._visitors

    def agents(self) -> set[int]:
        """Agents online on any other instance."""
        return set(self._agents)

    def origins(self) -> list[str]:
        return list(self._by_origin)

    def apply(self, origin: str, event: PresenceEvent) -> None:
        sets = self._by_origin.setdefault(origin, _Sets())
        if event.kind == "agent":
            _change(sets.agents, self._agents, event.key, event.online)
        else:
            _change(sets.visitors, self._visitors, event.key, event.online)

    def replace(self, origin: str, agents: Iterable[int], visitors: Iterable[int]) -> set[int]:
        """An origin's whole presence, from a snapshot. Returns the conversations whose
        visitor came or went by it (their ``online`` changed)."""
        before = {cid for cid in self._by_origin.get(origin, _Sets()).visitors}
        was_online = {cid for cid in before if self.visitor_online(cid)}
        self.drop(origin)
        sets = self._by_origin.setdefault(origin, _Sets())
        for agent_id in agents:
            _change(sets.agents, self._agents, agent_id, True)
        for conversation_id in visitors:
            _change(sets.visitors, self._visitors, conversation_id, True)
        candidates = before | sets.visitors
        return {cid for cid in candidates
                if (cid in was_online) != self.visitor_online(cid)}

    def drop(self, origin: str) -> set[int]:
        """An origin is gone: nobody is online there any more. Returns the conversations
        whose visitor is now offline everywhere else too."""
        sets = self._by_origin.pop(origin, None)
        if sets is None:
            return set()
        for agent_id in sets.agents:
            _decrement(self._agents, agent_id)
        for conversation_id in sets.visitors:
            _decrement(self._visitors, conversation_id)
        return {cid for cid in sets.visitors if cid not in self._visitors}


def _change(members: set[int], totals: Counter[int], key: int, online: bool) -> None:
    if online and key not in members:
        members.add(key)
        totals[key] += 1
    elif not online and key in members:
        members.discard(key)
        _decrement(totals, key)


def _decrement(totals: Counter[int], key: int) -> None:
    left = totals[key] - 1
    if left > 0:
        totals[key] = left
    else:
        del totals[key]
