"""AI replies inside conversations: when to answer, streaming deltas, storing the result.

A visitor message that the mode routes to the AI starts one reply task in the
responder's nursery (the conversations' scope, not the visitor's socket: a
visitor who disconnects still gets the reply stored). Deltas go out as
``ai_delta`` frames to everyone who follows the conversation; the whole reply
is then stored as one ``message`` (role ``ai``) with the same ``stream_id``.

- An agent accepting the conversation cancels its live reply at once; what had
  been streamed is stored (it is what the visitor saw), nothing more is sent.
- A visitor message that arrives while a reply streams is queued: the reply
  finishes, then one follow-up reply answers everything the visitor added.
- A reply that fails, finishes with no visible text, or is cut off by the server's
  shutdown stores what it had streamed, then a system message
  (``[ai] unavailable_message``), and flags the conversation for agents
  (``core.ai_outcome`` decides).
- Deltas go out only once the reply has visible text (leading whitespace waits for
  it), so every ``stream_id`` a client sees ends in a stored message.

Several instances: only the instance that committed a visitor message starts its
reply, so each message is answered once. The owner tells the others over the bus
(``AiEvent``): ``live`` while it streams (their conversation frames show
``ai_streaming``, and a visitor message committed elsewhere meanwhile is sent to the
owner as ``more`` instead of starting a second reply), ``done`` once it is stored.
An agent accepting on another instance publishes ``stop``; the owner cancels at
once, and the accepting instance waits (bounded) for ``done`` so that the agent's
"joined" note comes after the partial reply, as the visitor saw it.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from customer_service.ai.client import AiClient, open_ai_client
from customer_service.ai.context_windows import ContextWindows
from customer_service.config import Config
from customer_service.core import frames
from customer_service.core.ai_context import build_context
from customer_service.core.ai_outcome import (
    CUT_AT_LENGTH,
    EMPTY_REPLY,
    SHUTDOWN,
    ReplyEnd,
    reply_end,
)
from customer_service.core.bus_events import AiEvent
from customer_service.core.models import Conversation, NewMessage, Role
from customer_service.core.text import visible
from customer_service.errors import AiError, CustomerServiceError

if TYPE_CHECKING:
    from customer_service.server.service import ChatService

log = logging.getLogger(__name__)

STORE_DEADLINE = 5.0
"""Seconds to store a reply's outcome, even while the server shuts down."""
FINISHED_REMEMBERED = 1000
TAKEOVER_CLAIM = 60.0
"""Seconds the claim to answer again for a dead instance's reply is held."""


@dataclass(eq=False, slots=True)
class LiveReply:
    conversation_id: int
    stream_id: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    parts: list[str] = field(default_factory=list)
    size: int = 0
    shown: bool = False
    """Deltas have gone out (the text so far has more than whitespace)."""
    stopped_by: str | None = None
    finish_reason: str | None = None
    stored: trio.Event = field(default_factory=trio.Event)
    """Set once the reply's outcome is stored (or storing gave up)."""
    ended: bool = False
    """The stream is over (its outcome may still be being stored): no longer streaming."""


class AiResponder:
    def __init__(self, config: Config, client: AiClient, service: ChatService,
                 nursery: trio.Nursery) -> None:
        self.config = config.ai
        self.client = client
        self.service = service
        self._nursery = nursery
        self.live: dict[int, LiveReply] = {}
        """Replies streaming on this instance."""
        self.remote_live: dict[int, tuple[str, str]] = {}
        """conversation id → (stream id, instance) of a reply streaming on another instance."""
        self._remote_done: dict[int, trio.Event] = {}
        self._follow_up: set[int] = set()
        self._finished: OrderedDict[str, int] = OrderedDict()
        """Stream ids of the replies this instance ran lately (a ``more`` may come late)."""
        self._max_chars = config.ai.max_reply_tokens * 16
        self.windows = ContextWindows(config.ai, service.store, service.hub, service.metrics)
        """Each conversation's history, cached (the session-state cache)."""
        service.hub.on_ai_event = self.on_remote_event
        service.hub.on_origin_gone = self.on_origin_gone

    @property
    def status(self) -> str:
        return self.client.status

    def wants(self, conversation: Conversation) -> bool:
        """Does the mode route this conversation's visitor messages to the AI?"""
        if self.config.mode == "always":
            return True
        if self.config.mode == "when_no_agent":
            return conversation.assigned_to is None
        return False

    def streaming(self, conversation_id: int) -> bool:
        """Whether a reply streams in this conversation, here or on another instance."""
        reply = self.live.get(conversation_id)
        return (reply is not None and not reply.ended) or conversation_id in self.remote_live

    def visitor_wrote(self, conversation: Conversation) -> None:
        """A visitor message was stored: answer it, or queue a follow-up if a reply streams."""
        if self.wants(conversation):
            self._answer(conversation.id)

    def visitor_wrote_in(self, conversation_id: int) -> None:
        """``visitor_wrote`` for a conversation not in the cache: read it first."""
        self._nursery.start_soon(self._answer_if_wanted, conversation_id)

    def _answer(self, conversation_id: int) -> None:
        """Start a reply, or have the one streaming (here or elsewhere) followed up."""
        if conversation_id in self.live:
            self._follow_up.add(conversation_id)
            return
        remote = self.remote_live.get(conversation_id)
        if remote is not None:
            self.service.hub.ai(AiEvent(conversation_id, remote[0], "more"))
            return
        self._start(conversation_id)

    def on_remote_event(self, origin: str, event: AiEvent) -> None:
        """Another instance's AI reply: streaming, done, to be stopped, or to be followed up."""
        cid = event.conversation_id
        if event.state == "live":
            self.remote_live[cid] = (event.stream_id, origin)
        elif event.state == "done":
            if self.remote_live.get(cid, ("",))[0] == event.stream_id:
                del self.remote_live[cid]
            waiter = self._remote_done.pop(cid, None)
            if waiter is not None:
                waiter.set()
        elif event.state == "stop":
            if self.cancel(cid, "an agent took over") is not None:
                log.info("[conv %s] AI reply stopped: an agent took over on another instance",
                         cid)
        else:  # "more": only for the instance that runs (or just ran) that reply
            reply = self.live.get(cid)
            if reply is not None and reply.stream_id == event.stream_id:
                self._follow_up.add(cid)
            elif self._finished.get(event.stream_id) == cid:
                self._nursery.start_soon(self._answer_if_wanted, cid)

    def on_origin_gone(self, origin: str) -> None:
        """An instance died: its live replies will never end. Forget them, and answer
        their conversations again, once (whoever claims it first on the bus)."""
        for cid, (stream_id, owner) in list(self.remote_live.items()):
            if owner != origin:
                continue
            del self.remote_live[cid]
            waiter = self._remote_done.pop(cid, None)
            if waiter is not None:
                waiter.set()
            self._nursery.start_soon(self._take_over, cid, stream_id)

    async def _take_over(self, conversation_id: int, stream_id: str) -> None:
        if not await self.service.hub.claim(f"ai-takeover:{stream_id}", TAKEOVER_CLAIM):
            return
        log.warning("[conv %s] the instance streaming AI reply %s is gone; answering again",
                    conversation_id, stream_id)
        await self._answer_if_wanted(conversation_id)

    async def _answer_if_wanted(self, conversation_id: int) -> None:
        """Answer a visitor message once the conversation is read (it was not cached, or
        a follow-up was asked for after our reply ended, or the replying instance died)."""
        with trio.move_on_after(STORE_DEADLINE):
            try:
                conversation = await self.service.conversation(conversation_id)
            except CustomerServiceError as exc:
                log.warning("[conv %s] AI answer skipped: %s", conversation_id, exc)
                return
            if self.wants(conversation):
                self._answer(conversation_id)

    def cancel(self, conversation_id: int, reason: str) -> LiveReply | None:
        """Stop a live reply now (an agent took over); its streamed part is stored."""
        self._follow_up.discard(conversation_id)
        reply = self.live.get(conversation_id)
        if reply is not None:
            reply.stopped_by = reason
            reply.scope.cancel()
        return reply

    async def stop(self, conversation_id: int, reason: str, timeout: float = 2.0) -> None:
        """Cancel a live reply and wait (bounded) until its part is stored, so that what
        is recorded next (an agent joining) comes after it, as the visitor saw it."""
        reply = self.cancel(conversation_id, reason)
        if reply is not None:
            with trio.move_on_after(timeout):
                await reply.stored.wait()
            return
        # Another instance may be streaming it (even if we missed its ``live``): ask it to
        # stop, and wait for its ``done`` when we know it streams.
        remote = self.remote_live.get(conversation_id)
        self.service.hub.ai(AiEvent(conversation_id, remote[0] if remote else "", "stop"))
        if remote is not None:
            done = self._remote_done.setdefault(conversation_id, trio.Event())
            with trio.move_on_after(timeout):
                await done.wait()

    def _start(self, conversation_id: int) -> None:
        reply = LiveReply(conversation_id, f"ai-{conversation_id}-{secrets.token_hex(6)}")
        self.live[conversation_id] = reply
        self.service.hub.ai(AiEvent(conversation_id, reply.stream_id, "live"))
        self._nursery.start_soon(self._run, reply)

    async def _run(self, reply: LiveReply) -> None:
        cid = reply.conversation_id
        metrics = self.service.metrics
        failure: CustomerServiceError | None = None
        metrics.ai_streams.inc()
        try:
            with reply.scope:
                history = await self.windows.history(cid)
                context = build_context(self.config.system_prompt, history,
                                        self.config.max_context_tokens)
                reply.finish_reason = await self.client.stream_reply(
                    context, lambda text: self._delta(reply, text))
        except AiError as exc:
            failure = exc
            log.warning("[conv %s] AI reply %s failed: %s", cid, reply.stream_id, exc)
        except CustomerServiceError as exc:
            failure = exc
            log.warning("[conv %s] AI reply %s could not start: %s", cid, reply.stream_id, exc)
        except Exception:
            log.exception("[conv %s] AI reply %s failed unexpectedly", cid, reply.stream_id)
            failure = AiError("internal error while streaming the reply")
        finally:
            metrics.ai_streams.dec()
        reply.ended = True  # the events sent while storing the outcome say so
        end = reply_end(failed=failure is not None, stopped_by=reply.stopped_by,
                        text="".join(reply.parts), finish_reason=reply.finish_reason)
        if end.empty:
            metrics.ai_errors.labels(EMPTY_REPLY).inc()
            log.warning("[conv %s] AI reply %s finished with no text (finish_reason %s)",
                        cid, reply.stream_id, reply.finish_reason)
        metrics.ai_replies.labels(end.outcome).inc()
        log.info("[conv %s] AI reply %s %s (%d characters%s)", cid, reply.stream_id,
                 end.outcome, reply.size, f"; {reply.stopped_by}" if reply.stopped_by else "")
        with trio.CancelScope(shield=True), trio.move_on_after(STORE_DEADLINE):
            try:
                await self._store_outcome(reply, end)
            finally:
                reply.stored.set()
                if self.live.get(cid) is reply:
                    del self.live[cid]
                self._finished[reply.stream_id] = cid
                while len(self._finished) > FINISHED_REMEMBERED:
                    self._finished.popitem(last=False)
                self.service.hub.ai(AiEvent(cid, reply.stream_id, "done"))
        if cid in self._follow_up and end.follow_up:
            self._follow_up.discard(cid)
            conversation = self.service.hub.conversations.get(cid)
            if conversation is not None and self.wants(conversation):
                self._start(cid)
        self._follow_up.discard(cid)

    def _delta(self, reply: LiveReply, text: str) -> None:
        if reply.size + len(text) > self._max_chars:
            log.warning("[conv %s] AI reply %s passed %d characters; cut there",
                        reply.conversation_id, reply.stream_id, self._max_chars)
            reply.stopped_by = CUT_AT_LENGTH
            reply.scope.cancel()
            return
        reply.parts.append(text)
        reply.size += len(text)
        if not reply.shown:
            if not visible(text):
                return  # nothing to see yet: held until text comes (or never shown)
            reply.shown = True
            text = "".join(reply.parts)
        frame = frames.encode(frames.AiDeltaOut(conversation_id=reply.conversation_id,
                                                stream_id=reply.stream_id, delta=text))
        self.service.to_conversation_id(reply.conversation_id, frame)

    async def _store_outcome(self, reply: LiveReply, end: ReplyEnd) -> None:
        cid = reply.conversation_id
        if await self.service.hub.claimed(f"ai-takeover:{reply.stream_id}"):
            # This instance was counted gone (paused, cut off) and another one answered
            # the conversation again meanwhile: one answer is enough.
            log.warning("[conv %s] AI reply %s not stored: another instance answered in its "
                        "place while this one was unreachable", cid, reply.stream_id)
            return
        try:
            if end.store_text:
                await self.service.post(NewMessage(cid, Role.AI, None, self.config.name,
                                                   "".join(reply.parts),
                                                   stream_id=reply.stream_id))
            if end.alert:
                await self.service.post(NewMessage(cid, Role.SYSTEM, None, "system",
                                                   self.config.unavailable_message))
                flagged = await self.service.store.set_needs_agent(cid, True)
                self.service.hub.conversations.put(flagged)
                if flagged.needs_agent:
                    await self.service.announce(flagged, changed=True)
        except CustomerServiceError as exc:
            log.error("[conv %s] could not store the AI reply %s: %s", cid, reply.stream_id, exc)


@asynccontextmanager
async def open_ai_responder(config: Config, service: ChatService
                            ) -> AsyncIterator[AiResponder | None]:
    """The responder (None when the AI is off).

    At exit live replies are cancelled, not cancelled *into*: each stores what it
    streamed, the unavailable note and the ``needs_agent`` flag (within
    ``STORE_DEADLINE``) before the committer behind it closes, so that an agent
    follows up after the restart.
    """
    if not config.ai.enabled or config.ai.mode == "off":
        yield None
        return
    async with open_ai_client(config.ai, service.metrics) as client, \
            trio.open_nursery() as nursery:
        prewarming = trio.CancelScope()

        async def prewarm() -> None:
            with prewarming:
                await client.prewarm()

        nursery.start_soon(prewarm)
        responder = AiResponder(config, client, service, nursery)
        try:
            yield responder
        finally:
            prewarming.cancel()
            for cid in list(responder.live):
                responder.cancel(cid, SHUTDOWN)
