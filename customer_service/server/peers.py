"""A live connection as the hub sees it, and the cache of conversation states."""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
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
    token_hash: str | None = None
    """The login token an agent socket was opened with (revoking it closes the socket)."""
    close_code: int = 1000
    close_reason: str = ""
    kicked: bool = False
    follows_queue: bool = False
    """An agent socket that receives the waiting queue's conversations and events."""
    on_slow: Callable[[], None] | None = None
    """Called when this peer is closed for not reading (metrics)."""
    address: str = ""
    """A visitor socket's client address (a block on its network closes it)."""
    farewell: str = ""
    """A last frame to send before the close (an ``error`` frame saying why)."""

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

    def kick(self, code: int, reason: str, farewell: str = "") -> None:
        """Close this connection with ``code`` (its handler does the closing), after
        sending ``farewell`` when given."""
        if not self.kicked:
            self.kicked = True
            self.close_code = code
            self.close_reason = reason
            self.farewell = farewell
            self.scope.cancel()


class ConversationCache:
    """The newest known state of recently active conversations, bounded (LRU).

    With several instances another one may change a conversation: the bus then says
    so and the entry is forgotten. A read from the database that started before such a
    change must not put its stale result back, so loads carry a stamp taken before the
    read (``stamp``/``put_loaded``) and lose to any ``forget`` that came after it.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._items: OrderedDict[int, Conversation] = OrderedDict()
        self._forgotten: OrderedDict[int, int] = OrderedDict()
        """conversation id → the stamp of its last ``forget`` (bounded like the cache)."""
        self._clock = 0
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

    def stamp(self) -> int:
        """Taken before reading a conversation from the database."""
        return self._clock

    def put_loaded(self, conversation: Conversation, stamp: int) -> None:
        """Cache what a read begun at ``stamp`` found, unless it was forgotten since."""
        if self._forgotten.get(conversation.id, -1) <= stamp:
            self.put(conversation)

    def forget(self, conversation_id: int) -> None:
        """Another instance changed it: the next use reads it again."""
        self._items.pop(conversation_id, None)
        self._clock += 1
        self._forgotten[conversation_id] = self._clock
        self._forgotten.move_to_end(conversation_id)
        while len(self._forgotten) > self.capacity:
            self._forgotten.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
