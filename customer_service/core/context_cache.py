"""The session-state cache: each live conversation's AI context window, kept in memory.

An AI reply needs a conversation's newest ``CONTEXT_MESSAGES`` messages. Reading them
from the database for every reply costs a 200-row read in a long session; this cache
keeps them instead, per conversation, as the context builder needs them (sender role,
content; the content of messages the model never sees is not kept).

- A window is filled from the store on a miss (``begin_fill`` … ``finish_fill``: one read)
  and then kept up to date by ``note``, which the hub calls with every committed message
  of the conversation in ``seq`` order (local, from other instances, read to fill a gap).
- A message whose ``seq`` is not the next one (a gap: something was missed) drops the
  window; it is rebuilt from the store on the next miss. A message already in the
  window changes nothing. So a window never has a hole or a duplicate.
- Messages committed while a fill reads the store are kept aside and applied once the
  read is in, in the same way; a ``drop`` during a fill stops it being kept at all.
- Bounded by entries and by (approximate) bytes: least recently used windows go first.

Pure: no I/O, no event loop; ``ai.context_windows`` is the edge around it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from customer_service.core.ai_context import CONTEXT_MESSAGES, role_for
from customer_service.core.models import Role

MESSAGE_OVERHEAD = 120
"""Approximate bytes a kept message costs besides its text (object, tuple, deque slot)."""
MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class WindowMessage:
    """One message of a window: what ``core.ai_context.build_context`` reads."""

    seq: int
    sender_role: Role
    content: str

    @classmethod
    def of(cls, seq: int, sender_role: Role, content: str) -> WindowMessage:
        """A message as kept: the text only when the model sees it."""
        return cls(seq, sender_role, content if role_for(sender_role) is not None else "")

    @property
    def size(self) -> int:
        return MESSAGE_OVERHEAD + len(self.content)


@dataclass(slots=True)
class _Window:
    messages: deque[WindowMessage]
    size: int


@dataclass(slots=True)
class _Fill:
    token: int
    pending: list[WindowMessage] | None = field(default_factory=list)
    """Messages noted while the store is read; None once the fill is spoiled."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    invalidations: int
    entries: int
    bytes: int


class ContextCache:
    def __init__(self, *, max_entries: int, max_bytes: int,
                 window: int = CONTEXT_MESSAGES) -> None:
        if max_entries < 1 or max_bytes < 1 or window < 1:
            raise ValueError("max_entries, max_bytes and window must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.window = window
        self._windows: OrderedDict[int, _Window] = OrderedDict()
        self._fills: dict[int, _Fill] = {}
        self._tokens = 0
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        """Windows dropped to stay within the bounds."""
        self.invalidations = 0
        """Windows dropped because they may be stale (a gap, a resync, an outside write)."""

    def __len__(self) -> int:
        return len(self._windows)

    def __contains__(self, conversation_id: object) -> bool:
        return conversation_id in self._windows

    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, self.evictions, self.invalidations,
                          len(self._windows), self.bytes)

    def follows(self, conversation_id: int) -> bool:
        """Whether ``note`` would do anything for this conversation."""
        return conversation_id in self._windows or conversation_id in self._fills

    def get(self, conversation_id: int) -> Sequence[WindowMessage] | None:
        """The window (oldest first; valid until the cache is next changed), or None."""
        entry = self._windows.get(conversation_id)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._windows.move_to_end(conversation_id)
        return entry.messages

    # ---- filling on a miss ---------------------------------------------------
    def begin_fill(self, conversation_id: int) -> int:
        """A store read for this conversation starts; returns its token."""
        self._tokens += 1
        self._fills[conversation_id] = _Fill(self._tokens)
        return self._tokens

    def abandon_fill(self, conversation_id: int, token: int) -> None:
        fill = self._fills.get(conversation_id)
        if fill is not None and fill.token == token:
            del self._fills[conversation_id]

    def finish_fill(self, conversation_id: int, token: int,
                    messages: Iterable[WindowMessage]) -> None:
        """The store read ``messages`` (oldest first): keep them, plus what was noted
        meanwhile, unless the fill was spoiled or replaced by a newer one."""
        fill = self._fills.get(conversation_id)
        if fill is None or fill.token != token:
            return
        del self._fills[conversation_id]
        if fill.pending is None:
            return
        self._remove(conversation_id)
        kept: deque[WindowMessage] = deque(messages, maxlen=self.window)
        entry = _Window(kept, sum(m.size for m in kept))
        self._windows[conversation_id] = entry
        self.bytes += entry.size
        for message in fill.pending:
            if not self._append(conversation_id, entry, message):
                return
        self._bound()

    # ---- keeping windows up to date ------------------------------------------
    def note(self, conversation_id: int, message: WindowMessage) -> None:
        """A committed message, in ``seq`` order (duplicates allowed)."""
        fill = self._fills.get(conversation_id)
        if fill is not None and fill.pending is not None:
            if len(fill.pending) < self.window:
                fill.pending.append(message)
            else:
                fill.pending = None  # too much at once: read again next time
        entry = self._windows.get(conversation_id)
        if entry is not None and self._append(conversation_id, entry, message):
            self._bound()

    def drop(self, conversation_id: int, *, upto: int | None = None) -> None:
        """The window may be stale: forget it (only if it ends before ``upto``, when
        given), and do not keep what a fill in progress reads."""
        entry = self._windows.get(conversation_id)
        if entry is not None and (upto is None or not entry.messages
                                  or entry.messages[-1].seq < upto):
            self._remove(conversation_id)
            self.invalidations += 1
        fill = self._fills.get(conversation_id)
        if fill is not None:
            fill.pending = None

    def clear(self) -> None:
        """Everything may be stale (messages were lost on the bus)."""
        self.invalidations += len(self._windows)
        self._windows.clear()
        self.bytes = 0
        for fill in self._fills.values():
            fill.pending = None

    # ---- internals -----------------------------------------------------------
    def _append(self, conversation_id: int, entry: _Window, message: WindowMessage) -> bool:
        """Add the next message; False when the window was dropped (a gap)."""
        last = entry.messages[-1].seq if entry.messages else 0  # empty: seq 1 comes next
        if message.seq <= last:
            return True  # already there
        if message.seq != last + 1:
            self._remove(conversation_id)
            self.invalidations += 1
            return False
        if len(entry.messages) == self.window:
            gone = entry.messages[0].size
            entry.size -= gone
            self.bytes -= gone
        entry.messages.append(message)
        entry.size += message.size
        self.bytes += message.size
        return True

    def _remove(self, conversation_id: int) -> None:
        entry = self._windows.pop(conversation_id, None)
        if entry is not None:
            self.bytes -= entry.size

    def _bound(self) -> None:
        while self._windows and (len(self._windows) > self.max_entries
                                 or self.bytes > self.max_bytes):
            _cid, entry = self._windows.popitem(last=False)
            self.bytes -= entry.size
            self.evictions += 1
