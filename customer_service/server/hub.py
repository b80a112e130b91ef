"""The hub: this instance's live connections, and fan-out to them and to the other instances.

The chat service hands the hub what happened in a conversation (a stored message, a
transient frame, a change of state) as a bus event; the hub delivers it to its own
sockets, choosing recipients with ``core.routing``, and, when instances share a bus,
publishes the same event so that each of the others does the same for its sockets.
What the others publish comes back in through ``receive``. The service and the
sessions never learn whether a peer is local or remote.

Stored messages go through the ``Sequencer`` on the way in, local and remote alike,
so every socket sees a conversation's messages in ``seq`` order with no gap: a gap
(a publish lost on the bus) is filled from the database by the sync task
(``server.sync``), which the hub wakes through ``SyncRequests``.

Fan-out never waits: a frame that does not fit in a peer's backlog closes that peer
(1008, "slow consumer") instead of letting memory grow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import trio

from customer_service.core.assignment import StatusBoard, check_status
from customer_service.core.bus_events import (
    AiEvent,
    Arrival,
    BlockEvent,
    BusEvent,
    ConversationEvent,
    FrameEvent,
    MessageEvent,
    PresenceEvent,
    RevokeEvent,
    StatusEvent,
    Streams,
    WatchEvent,
)
from customer_service.core.presence import PresenceView
from customer_service.core.routing import agents_for_assignee, agents_for_change
from customer_service.core.sequencer import Sequencer
from customer_service.errors import BadRequest, BusError
from customer_service.server.peers import ConversationCache, Outbound, Peer

log = logging.getLogger(__name__)

NO_WATCHERS: frozenset[int] = frozenset()
LOG_EVERY = 30
MAX_DEFERRED = 10_000


class BusPort(Protocol):
    """What the hub needs of the bus (``bus.redis.RedisBus``)."""

    @property
    def instance(self) -> str: ...

    def publish(self, event: BusEvent) -> None:
        """Queue an event for the other instances; never waits (drops when full)."""

    async def claim(self, key: str, ttl: float) -> bool:
        """True for exactly one instance asking for ``key`` within ``ttl`` seconds; raises
        ``BusError`` when Redis does not answer."""

    async def claimed(self, key: str) -> bool:
        """Whether an instance claimed ``key``; raises ``BusError`` when Redis does not
        answer."""


class SyncRequests:
    """What the hub asks the sync task (``server.sync``) to do; the task waits on ``wake``."""

    def __init__(self) -> None:
        self.snapshots: set[str] = set()
        """Origins whose presence must be read from Redis."""
        self.resync_since: float | None = None
        """Earliest (wall clock) moment since which batches may have been lost."""
        self.wake = trio.Event()
        """Set when a snapshot or a resync is asked for."""
        self.gap_wake = trio.Event()
        """Set when a gap opened (or became due at once)."""
        self.reannounce: set[int] = set()
        """Conversations to show this instance's agents again."""
        self.resyncing = False
        """A resynchronisation is asked for or running: messages of conversations unknown
        here wait for it (it says where they start)."""

    def snapshot(self, origin: str) -> None:
        self.snapshots.add(origin)
        self.wake.set()

    def resync(self, since: float) -> None:
        if self.resync_since is None or since < self.resync_since:
            self.resync_since = since
        self.resyncing = True
        self.wake.set()

    def gaps(self) -> None:
        """A gap opened in some conversation."""
        self.gap_wake.set()

    def announce(self, conversation_ids: set[int]) -> None:
        """These conversations' visitors came or went without events (an instance went
        or came back): show agents here their new state."""
        if conversation_ids:
            self.reannounce |= conversation_ids
            self.wake.set()


class Hub:
    def __init__(self, *, max_held: int = 256, wall_clock: Callable[[], float] | None = None
                 ) -> None:
        self.visitors: dict[int, set[Peer]] = {}
        """conversation id → the visitor's open sockets here (one per tab)."""
        self.agents: dict[int, set[Peer]] = {}
        """agent id → that agent's open sockets here."""
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
        self.sequencer: Sequencer[MessageEvent] = Sequencer(
            max_held=max_held, pinned=self.visitors.__contains__)
        self.presence = PresenceView()
        """Who is online on the other instances."""
        self.streams = Streams()
        self.sync = SyncRequests()
        self.bus: BusPort | None = None
        self.on_ai_event: Callable[[str, AiEvent], None] | None = None
        """The AI responder's handler for other instances' AI events (origin, event)."""
        self.on_origin_gone: Callable[[str], None] | None = None
        """Told when another instance is gone (the AI responder takes over its replies)."""
        self.on_delivered: Callable[[MessageEvent], None] | None = None
        """Told of every message handed on, in ``seq`` order (the AI context cache)."""
        self.on_context_stale: Callable[[int | None, int | None], None] | None = None
        """Told that a conversation's messages (all, for None) up to a seq (any, for None)
        may not all have been handed on: cached AI context may be stale."""
        self.on_block: Callable[[BlockEvent], None] | None = None
        """The block guard's handler for blocks added or removed on other instances."""
        self.statuses = StatusBoard()
        """Agents' statuses (online, away, offline) as this instance knows them."""
        self.on_routing_change: Callable[[], None] | None = None
        """Told when auto-assignment may have something to do (``server.assigner``): a
        conversation began waiting or changed state, an agent came, went or changed
        status."""
        self._wall_clock = wall_clock or time.time
        self._started = self._wall_clock()
        self._lost_logged: dict[str, float] = {}
        self._deferred: list[MessageEvent] = []

    # ---- membership ------------------------------------------------------
    def track(self, peer: Peer) -> None:
        self.sessions.add(peer)
        if self.draining:
            peer.kick(1001, "server going away; reconnect")

    def untrack(self, peer: Peer) -> None:
        self.sessions.discard(peer)

    def add_visitor(self, peer: Peer, conversation_id: int) -> bool:
        """Register; True when this is the visitor's first open socket here."""
        peer.conversation_id = conversation_id
        peers = self.visitors.setdefault(conversation_id, set())
        peers.add(peer)
        if len(peers) == 1:
            self._publish(PresenceEvent("visitor", conversation_id, True))
            return True
        return False

    def remove_visitor(self, peer: Peer) -> bool:
        """Unregister; True when the visitor has no open socket left here."""
        if peer.conversation_id is None:
            return False
        peers = self.visitors.get(peer.conversation_id)
        if peers is None:
            return False
        peers.discard(peer)
        if not peers:
            del self.visitors[peer.conversation_id]
            self._publish(PresenceEvent("visitor", peer.conversation_id, False))
            return True
        return False

    def add_agent(self, peer: Peer, follows_queue: bool = True) -> None:
        peers = self.agents.setdefault(peer.identity, set())
        peers.add(peer)
        peer.follows_queue = follows_queue
        if follows_queue:
            self.queue[peer.identity] = self.queue.get(peer.identity, 0) + 1
        if len(peers) == 1:
            self._publish(PresenceEvent("agent", peer.identity, True))
            self._routing_changed()

    def remove_agent(self, peer: Peer) -> None:
        peers = self.agents.get(peer.identity)
        if peers is None or peer not in peers:
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
            self._publish(PresenceEvent("agent", peer.identity, False))
            self._routing_changed()
            for conversation_id in self._watching.pop(peer.identity, ()):
                watchers = self.watchers.get(conversation_id)
                if watchers is not None:
                    watchers.discard(peer.identity)
                    if not watchers:
                        del self.watchers[conversation_id]

    def watch(self, conversation_id: int, agent_id: int) -> None:
        """An agent follows a conversation until its last socket closes (on every instance
        where it has one)."""
        self._publish(WatchEvent(agent_id, conversation_id))
        self._watch_here(conversation_id, agent_id)

    def _watch_here(self, conversation_id: int, agent_id: int) -> None:
        if agent_id not in self.agents:
            return
        self.watchers.setdefault(conversation_id, set()).add(agent_id)
        self._watching.setdefault(agent_id, set()).add(conversation_id)

    def visitor_online(self, conversation_id: int) -> bool:
        """Whether the visitor has a socket open here or on another instance."""
        return conversation_id in self.visitors or self.presence.visitor_online(conversation_id)

    def agent_online(self, agent_id: int) -> bool:
        return agent_id in self.agents or self.presence.agent_online(agent_id)

    def online_agents(self) -> set[int]:
        """Agents with a socket open here or on another instance."""
        return set(self.agents) | self.presence.agents()

    def agents_available(self) -> set[int]:
        """Online agents whose status is online: who can take a conversation now (the
        widget's team status, auto-assignment)."""
        return self.statuses.available(self.online_agents())

    def local_presence(self) -> tuple[set[int], set[int]]:
        """(agents, conversations with a visitor) online here: this instance's snapshot."""
        return set(self.agents), set(self.visitors)

    def connection_count(self) -> int:
        return sum(len(p) for p in self.visitors.values()) + sum(
            len(p) for p in self.agents.values())

    # ---- fan-out: what the service calls ---------------------------------
    def message(self, event: MessageEvent) -> None:
        """A message was committed here: deliver it in order, and tell the others."""
        self._publish(event)
        self._sequence(event)
        if event.assigned_to is None:
            self._routing_changed()  # it may have begun waiting

    def frame(self, event: FrameEvent) -> None:
        """A transient frame (typing, read mark, AI delta) for a conversation's followers."""
        self._publish(event)
        self._deliver_frame(event)

    def conversation_event(self, event: ConversationEvent, *, local_only: bool = False) -> None:
        """A conversation changed, or its visitor came or went."""
        if not local_only:
            self._publish(event)
        self._deliver_conversation(event)
        if event.changed:
            self._routing_changed()

    def wants_conversation_event(self, assigned_to: int | None, was_assigned_to: int | None,
                                 was_waiting: bool, conversation_id: int, *,
                                 local_only: bool = False) -> bool:
        """Whether anybody may receive the event: always with other instances on a bus
        (their agents are not known here, and their caches must hear of changes), else
        when an agent here would."""
        if self.bus is not None and not local_only:
            return True
        return bool(self._event_recipients(assigned_to, was_assigned_to, was_waiting,
                                           conversation_id))

    def revoke(self, agent_id: int, token_hash: str | None) -> None:
        """Close an agent's sockets opened with a token (all of them for None), everywhere."""
        event = RevokeEvent(agent_id, token_hash)
        self._publish(event)
        self._revoke_here(event)

    def agent_status(self, event: StatusEvent) -> None:
        """An agent's status, set or read here: noted, told to the other instances, and to
        this instance's dashboards when it changed what this instance knew."""
        self._publish(event)
        self._note_status(event)

    def _note_status(self, event: StatusEvent) -> None:
        try:
            status = check_status(event.status)
        except BadRequest:  # a status this version does not know (a newer instance)
            return
        if self.statuses.note(event.agent_id, status):
            self.to_agents(tuple(self.agents), (0, 0, event.text))
            self._routing_changed()

    def _routing_changed(self) -> None:
        if self.on_routing_change is not None:
            self.on_routing_change()

    def block(self, event: BlockEvent) -> None:
        """Tell the other instances a block was added or removed (applied here already)."""
        self._publish(event)

    def ai(self, event: AiEvent) -> None:
        """Tell the other instances about an AI reply (its frames go through ``frame``)."""
        self._publish(event)

    async def claim(self, key: str, ttl: float) -> bool:
        """Whether this instance is the one to act on ``key`` (the first to ask, on the
        bus); alone, or when Redis does not answer, it is."""
        if self.bus is None:
            return True
        try:
            return await self.bus.claim(key, ttl)
        except BusError as exc:
            log.warning("could not claim %s on the bus (%s); acting alone", key, exc)
            return True

    async def claimed(self, key: str) -> bool:
        """Whether another instance claimed ``key`` (False alone, or when Redis is down)."""
        if self.bus is None:
            return False
        try:
            return await self.bus.claimed(key)
        except BusError:
            return False

    def close_all(self, code: int, reason: str) -> None:
        """Ask every connection to close with ``code`` (their handlers close them)."""
        self.draining = True
        for peer in tuple(self.sessions):
            peer.kick(code, reason)

    # ---- from the other instances ----------------------------------------
    def receive(self, origin: str, number: int, events: Iterable[BusEvent], *,
                final: bool = False, heartbeat: float = 0.0) -> None:
        """A batch published by another instance (number 0: a one-off from a command, such
        as ``agents disable`` or ``campaigns run``, that is not an instance's stream)."""
        if number == 0:
            for event in events:
                if isinstance(event, RevokeEvent | ConversationEvent | MessageEvent
                              | BlockEvent):
                    self._apply_remote(origin, event)
            return
        now = self._wall_clock()
        arrival, previous = self.streams.note(origin, number, now, heartbeat)
        if arrival is Arrival.STALE:
            return
        if arrival is Arrival.NEW:
            log.info("instance %s joined the bus", origin)
            self.sync.snapshot(origin)
            if number > 1:
                # It published before we heard of it: what concerns our sockets can only
                # date from our own start.
                self.sync.resync(self._started)
                self.context_stale(None)
        elif arrival is Arrival.LOST:
            if now - self._lost_logged.get(origin, -LOG_EVERY) >= LOG_EVERY:
                self._lost_logged[origin] = now
                log.warning("missed batches from instance %s; resynchronising from the "
                            "database (logged once every %d s)", origin, LOG_EVERY)
            self.sync.snapshot(origin)
            self.sync.resync(previous)
            self.context_stale(None)
        for event in events:
            self._apply_remote(origin, event)
        if final:
            log.info("instance %s left the bus", origin)
            self.streams.leave(origin)
            self.sync.announce({cid for cid in self.presence.drop(origin)
                                if cid not in self.visitors})
            if self.on_origin_gone is not None:
                self.on_origin_gone(origin)

    def _apply_remote(self, origin: str, event: BusEvent) -> None:
        match event:
            case MessageEvent():
                self._sequence(event)
            case FrameEvent():
                self._deliver_frame(event)
            case ConversationEvent():
                if event.changed:
                    self.conversations.forget(event.conversation_id)
                    self._routing_changed()
                self._deliver_conversation(event)
            case PresenceEvent():
                self.presence.apply(origin, event)
                if event.kind == "agent":
                    self._routing_changed()
            case StatusEvent():
                self._note_status(event)
            case RevokeEvent():
                self._revoke_here(event)
            case WatchEvent(agent_id=agent_id, conversation_id=conversation_id):
                self._watch_here(conversation_id, agent_id)
            case AiEvent():
                if self.on_ai_event is not None:
                    self.on_ai_event(origin, event)
            case BlockEvent():
                if self.on_block is not None:
                    self.on_block(event)

    def forget_origin(self, origin: str, last_seen: float) -> None:
        """An instance fell silent: its agents and visitors are offline, and what it
        committed just before may never have reached us."""
        log.warning("instance %s is silent; counting it gone", origin)
        self.sync.announce({cid for cid in self.presence.drop(origin)
                            if cid not in self.visitors})
        self.sync.resync(last_seen)
        self.context_stale(None)
        if self.on_origin_gone is not None:
            self.on_origin_gone(origin)

    def context_stale(self, conversation_id: int | None, upto: int | None = None) -> None:
        """Messages of a conversation (of any, for None), up to ``upto`` (any, for None),
        may have been committed without reaching this instance yet."""
        if self.on_context_stale is not None:
            self.on_context_stale(conversation_id, upto)

    # ---- delivery to this instance's sockets -----------------------------
    def fill(self, event: MessageEvent) -> None:
        """A message read from the database to close a gap (not published again)."""
        self._sequence(event)

    def release_deferred(self) -> None:
        """The resynchronisation is over: hand on the messages that waited for it."""
        self.sync.resyncing = False
        waiting, self._deferred = self._deferred, []
        for event in waiting:
            self._sequence(event)

    def _sequence(self, event: MessageEvent) -> None:
        if (self.sync.resyncing and len(self._deferred) < MAX_DEFERRED
                and self.sequencer.delivered(event.conversation_id) is None):
            # A conversation new to this instance while batches were lost: its first
            # messages may be among the lost ones. The resynchronisation reads where it
            # starts; until then its messages wait, in order.
            self._deferred.append(event)
            self.context_stale(event.conversation_id)
            return
        ready = self.sequencer.offer(event.conversation_id, event.seq, event, trio.current_time())
        if not ready:
            if (self.sequencer.delivered(event.conversation_id) or 0) < event.seq:
                self.context_stale(event.conversation_id)  # held behind a gap
            if self.sequencer.gapped:
                self.sync.gaps()
            return
        for message in ready:
            self._deliver_message(message)

    def _deliver_message(self, event: MessageEvent) -> None:
        cid = event.conversation_id
        if self.on_delivered is not None:
            self.on_delivered(event)
        item = (cid, event.seq, event.text)
        self.to_visitor(cid, item)
        if event.routed:
            recipients: Iterable[int] = agents_for_assignee(
                event.assigned_to, self.agents, self.watchers.get(cid, NO_WATCHERS), self.queue)
        else:
            recipients = tuple(self.queue)
        self.to_agents(recipients, item)

    def _deliver_frame(self, event: FrameEvent) -> None:
        cid = event.conversation_id
        item = (cid, 0, event.text)
        if event.to_visitor:
            self.to_visitor(cid, item)
        if not event.to_agents:
            return
        if event.routed:
            recipients = agents_for_assignee(event.assigned_to, self.agents,
                                             self.watchers.get(cid, NO_WATCHERS), self.queue)
        else:
            recipients = set(self.queue)
        recipients.discard(event.except_agent)
        self.to_agents(recipients, item)

    def _event_recipients(self, assigned_to: int | None, was_assigned_to: int | None,
                          was_waiting: bool, conversation_id: int) -> set[int]:
        return agents_for_change(assigned_to, self.agents, self.queue,
                                 self.watchers.get(conversation_id, NO_WATCHERS),
                                 was_assigned_to=was_assigned_to, was_waiting=was_waiting)

    def _deliver_conversation(self, event: ConversationEvent) -> None:
        if not event.text:
            return
        recipients = self._event_recipients(event.assigned_to, event.was_assigned_to,
                                            event.was_waiting, event.conversation_id)
        self.to_agents(recipients, (event.conversation_id, 0, event.text))

    def _revoke_here(self, event: RevokeEvent) -> None:
        for peer in tuple(self.agents.get(event.agent_id, ())):
            if event.token_hash is None or peer.token_hash == event.token_hash:
                log.info("[%s] agent %s: token revoked or agent disabled; closing",
                         peer.conn_id, event.agent_id)
                peer.kick(1008, "token revoked or agent disabled")

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

    def _publish(self, event: BusEvent) -> None:
        if self.bus is not None:
            self.bus.publish(event)

