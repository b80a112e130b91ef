"""The hub: every live connection of this instance, and fan-out to them.

Each connection is a ``Peer`` whose session takes frames without waiting: written
straight to the socket when it can, else queued in a bounded backlog that a
short-lived flush task drains. Fan-out never waits: a frame that does not fit in
a peer's backlog closes that peer (1008, "slow consumer") instead of letting
memory grow.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import trio

from customer_service.core.models import Conversation

log = logging.getLogger(__name__)

Outbound = tuple[int, int, str]
"""(conversation_id, seq, frame text); seq 0 for frames that are not stored messages."""

_peer_numbers = itertools.count(1)


@dataclass(eq=False, slots=True)
class Peer:
    role: str
    identity: int
    """The visitor's or the agent's id."""
    deliver: Callable[[Outbound], bool]
    """Takes a frame without waiting (writes or queues it); False when it could not."""
    scope: trio.CancelScope
    conn_id: str = field(default_factory=lambda: f"c{next(_peer_numbers)}")
    conversation_id: int | None = None
    close_code: int = 1000
    close_reason: str = ""
    kicked: bool = False
    follows_queue: bool = False
    """An agent socket that receives the waiting queue's conversations and events."""
    on_slow: Callable[[], None] | None = None
    """Called when this peer is closed for not reading (metrics)."""

    def push(self, item: Outbound) -> bool:
        """Hand a frame to the session without waiting. False when it was not taken."""
        if self.kicked:
            return False
        return self.deliver(item)

    def slow(self) -> None:
        """The peer let its backlog fill up: close it rather than grow memory."""
        log.warning("[%s] %s %s does not read its frames; closing it", self.conn_id,
                    self.role, self.identity)
        self.kick(1008, "slow consumer: outbound queue full")
        if self.on_slow is not None:
            self.on_slow()

    def kick(self, code: int, reason: str) -> None:
        """Close this connection with ``code`` (its handler does the closing)."""
        if not self.kicked:
            self.kicked = True
            self.close_code = code
            self.close_reason = reason
            self.scope.cancel()


class ConversationCache:
    """The newest known state of recently active conversations, bounded (LRU)."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._items: OrderedDict[int, Conversation] = OrderedDict()
        self.capacity = capacity

    def get(self, conversation_id: int) -> Conversation | None:
        found = self._items.get(conversation_id)
        if found is not None:
            self._items.move_to_end(conversation_id)
        return found

    def put(self, conversation: Conversation) -> None:
        self._items[conversation.id] = conversation
        self._items.move_to_end(conversation.id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Hub:
    def __init__(self) -> None:
        self.visitors: dict[int, set[Peer]] = {}
        """conversation id → the visitor's open sockets (one per tab)."""
        self.agents: dict[int, set[Peer]] = {}
        """agent id → that agent's open sockets."""
        self.watchers: dict[int, set[int]] = {}
        """conversation id → agents who opened it without being assigned."""
        self.queue: dict[int, int] = {}
        """agent id → how many of its sockets follow the waiting queue (only those > 0)."""
        self._watching: dict[int, set[int]] = {}
        """agent id → the conversations it watches (to forget them when it leaves)."""
        self.conversations = ConversationCache()
        self.sessions: set[Peer] = set()
        """Every accepted socket, registered or not yet (before hello): shutdown reaches all."""
        self.draining = False

    # ---- membership ------------------------------------------------------
    def track(self, peer: Peer) -> None:
        self.sessions.add(peer)
        if self.draining:
            peer.kick(1001, "server going away; reconnect")

    def untrack(self, peer: Peer) -> None:
        self.sessions.discard(peer)

    def add_visitor(self, peer: Peer, conversation_id: int) -> bool:
        """Register; True when this is the visitor's first open socket."""
        peer.conversation_id = conversation_id
        peers = self.visitors.setdefault(conversation_id, set())
        peers.add(peer)
        return len(peers) == 1

    def remove_visitor(self, peer: Peer) -> bool:
        """Unregister; True when the visitor has no open socket left."""
        if peer.conversation_id is None:
            return False
        peers = self.visitors.get(peer.conversation_id)
        if peers is None:
            return False
        peers.discard(peer)
        if not peers:
            del self.visitors[peer.conversation_id]
            return True
        return False

    def add_agent(self, peer: Peer, follows_queue: bool = True) -> None:
        self.agents.setdefault(peer.identity, set()).add(peer)
        peer.follows_queue = follows_queue
        if follows_queue:
            self.queue[peer.identity] = self.queue.get(peer.identity, 0) + 1

    def remove_agent(self, peer: Peer) -> None:
        peers = self.agents.get(peer.identity)
        if peers is None:
            return
        if peer not in peers:
            return
        peers.discard(peer)
        if peer.follows_queue:
            left = self.queue[peer.identity] - 1
            if left:
                self.queue[peer.identity] = left
            else:
                del self.queue[peer.identity]
        if not peers:
            del self.agents[peer.identity]
            for conversation_id in self._watching.pop(peer.identity, ()):
                watchers = self.watchers.get(conversation_id)
                if watchers is not None:
                    watchers.discard(peer.identity)
                    if not watchers:
                        del self.watchers[conversation_id]

    def watch(self, conversation_id: int, agent_id: int) -> None:
        """An online agent follows a conversation until its last socket closes."""
        if agent_id not in self.agents:
            return
        self.watchers.setdefault(conversation_id, set()).add(agent_id)
        self._watching.setdefault(agent_id, set()).add(conversation_id)

    def visitor_online(self, conversation_id: int) -> bool:
        return conversation_id in self.visitors

    def connection_count(self) -> int:
        return sum(len(p) for p in self.visitors.values()) + sum(
            len(p) for p in self.agents.values())

    # ---- fan-out -----------------------------------------------------------
    def to_visitor(self, conversation_id: int, item: Outbound) -> int:
        sent = 0
        for peer in tuple(self.visitors.get(conversation_id, ())):
            sent += peer.push(item)
        return sent

    def to_agents(self, agent_ids: Iterable[int], item: Outbound) -> int:
        sent = 0
        for agent_id in agent_ids:
            for peer in tuple(self.agents.get(agent_id, ())):
                sent += peer.push(item)
        return sent

    def close_all(self, code: int, reason: str) -> None:
        """Ask every connection to close with ``code`` (their handlers close them)."""
        self.draining = True
        for peer in tuple(self.sessions):
            peer.kick(code, reason)
