"""Where an AI reply's history comes from: the session-state cache, else the store.

The edge around ``core.context_cache``. A miss reads the conversation's newest
``CONTEXT_MESSAGES`` messages from the store once; from then on the hub keeps the
window current (``Hub.on_delivered``: every message this instance hands on, in ``seq``
order, whether committed here, by another instance over the bus, or read from the
database to fill a gap) and tells it what may be stale (``Hub.on_context_stale``: a
message held behind a gap, a resynchronisation after lost batches, messages another
process wrote straight to the database).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from customer_service.config import AiConfig
from customer_service.core import frames
from customer_service.core.ai_context import CONTEXT_MESSAGES, ContextMessage
from customer_service.core.bus_events import MessageEvent
from customer_service.core.context_cache import MB, ContextCache, WindowMessage
from customer_service.core.models import Role
from customer_service.server.hub import Hub
from customer_service.server.metrics import Metrics
from customer_service.storage.base import Store

log = logging.getLogger(__name__)

_message_decoder = msgspec.json.Decoder(frames.MessageOut)


class ContextWindows:
    def __init__(self, config: AiConfig, store: Store, hub: Hub, metrics: Metrics) -> None:
        self.store = store
        self.cache: ContextCache | None = None
        if config.context_cache_mb > 0:
            self.cache = ContextCache(max_entries=config.context_cache_entries,
                                      max_bytes=config.context_cache_mb * MB)
            metrics.watch_context_cache(self.cache.stats)
            hub.on_delivered = self.on_delivered
            hub.on_context_stale = self.on_stale

    async def history(self, conversation_id: int) -> Sequence[ContextMessage]:
        """The conversation's newest messages, oldest first (use before the next await)."""
        cache = self.cache
        if cache is None:
            return await self.store.messages_before(conversation_id, None, CONTEXT_MESSAGES)
        window = cache.get(conversation_id)
        if window is not None:
            return window
        token = cache.begin_fill(conversation_id)
        read = False
        try:
            rows = await self.store.messages_before(conversation_id, None, CONTEXT_MESSAGES)
            read = True
        finally:
            if not read:  # failed or cancelled: nothing to keep
                cache.abandon_fill(conversation_id, token)
        # Kept unless something spoiled it meanwhile (see ``ContextCache.finish_fill``).
        cache.finish_fill(conversation_id, token,
                          [WindowMessage.of(m.seq, m.sender_role, m.content) for m in rows])
        return rows

    def on_delivered(self, event: MessageEvent) -> None:
        """A message handed on in ``seq`` order (read only for conversations cached)."""
        cache = self.cache
        if cache is None or not cache.follows(event.conversation_id):
            return
        try:
            out = _message_decoder.decode(event.text)
            role = Role(out.sender.role)
        except (msgspec.DecodeError, ValueError):
            log.warning("[conv %s] message %s not understood; its cached context is dropped",
                        event.conversation_id, event.seq)
            cache.drop(event.conversation_id)
            return
        cache.note(event.conversation_id, WindowMessage.of(out.seq, role, out.content))

    def on_stale(self, conversation_id: int | None, upto: int | None) -> None:
        """A conversation's window (all of them for None) may miss messages up to
        ``upto`` (any for None)."""
        cache = self.cache
        if cache is None:
            return
        if conversation_id is None:
            log.info("context cache cleared: messages may have been lost (%d windows)",
                     len(cache))
            cache.clear()
        else:
            cache.drop(conversation_id, upto=upto)
