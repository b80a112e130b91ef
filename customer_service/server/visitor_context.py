"""Recording visitor context off the message path: hellos and page changes wait, coalesced
per conversation (``core.visitor_context.PendingContext``), and one task writes them in
one transaction every ``FLUSH_INTERVAL``. A burst of page changes is one write; a slow
or failing database costs the context of that moment (logged), never a message.

The page change itself reaches the agents at once (``page`` frame, see ``page_seen``),
through the hub and the bus like a typing frame.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Final

import trio

from customer_service.core import frames
from customer_service.core.models import Conversation, format_ts, utc_now
from customer_service.core.user_agent import UserAgents, clip
from customer_service.core.visitor_context import (
    PageSeen,
    PendingContext,
    VisitFacts,
    check_timezone,
    clean_title,
    trim_url,
)
from customer_service.errors import BadRequest, CustomerServiceError
from customer_service.storage.base import Store

if TYPE_CHECKING:
    from customer_service.server.service import ChatService

log = logging.getLogger(__name__)

FLUSH_INTERVAL: Final = 0.25
"""Seconds changes gather before they are written together."""
FINAL_FLUSH: Final = 2.0
"""Seconds the last batch may take at shutdown (at most: the write deadline holds too)."""
MAX_ADDRESS: Final = 64
USER_AGENTS: Final = UserAgents()
"""Summaries by User-Agent string, for the whole process (bounded): filled as visitors
arrive, read by ``GET /api/v1/conversations/{id}/context``."""


class ContextRecorder:
    def __init__(self, store: Store, deadline: float) -> None:
        self.store = store
        self.deadline = deadline
        """Seconds one batch may take (``[server] message_timeout``, as any database call):
        then it is given up, and on MariaDB its statement ended, so that a locked table
        never keeps a pooled connection waiting for context."""
        self.pending = PendingContext()
        self._wake = trio.Event()
        self._dropped_logged = 0

    # ---- what sessions call (never waits) ------------------------------------
    def hello(self, conversation_id: int, visit: VisitFacts, at: datetime,
              page: PageSeen | None) -> None:
        self._noted(self.pending.hello(conversation_id, visit, at, page), conversation_id)

    def page(self, conversation_id: int, page: PageSeen) -> None:
        self._noted(self.pending.page(conversation_id, page), conversation_id)

    def _noted(self, kept: bool, conversation_id: int) -> None:
        if kept:
            self._wake.set()
        elif self.pending.dropped - self._dropped_logged >= 100 or not self._dropped_logged:
            self._dropped_logged = self.pending.dropped
            log.warning("[conv %s] visitor context dropped: %d conversations wait for the "
                        "database already (%d dropped so far)", conversation_id,
                        len(self.pending), self.pending.dropped)

    # ---- the writer ------------------------------------------------------------
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                await trio.sleep(FLUSH_INTERVAL)  # let a burst gather
                self._wake = trio.Event()
                await self.flush(self.deadline, summarize=True)
        finally:
            with trio.CancelScope(shield=True):
                await self.flush(min(FINAL_FLUSH, self.deadline))

    async def flush(self, deadline: float, *, summarize: bool = False) -> None:
        """Write what is pending now, within ``deadline`` seconds (else it is given up);
        with ``summarize``, then parse the new User-Agents in a worker thread, so that the
        agent who opens the panel finds them parsed (once per visit, not per render)."""
        updates = self.pending.take()
        if not updates:
            return
        with trio.move_on_after(deadline) as waited:
            try:
                await self.store.record_visitor_context(updates)
            except CustomerServiceError as exc:
                log.warning("[conv %s] visitor context of %d conversations not stored: %s",
                            updates[0].conversation_id, len(updates), exc)
                return
            new = {u.visit.user_agent for u in updates if u.visit is not None} if summarize else ()
            for user_agent in new:
                if USER_AGENTS.cached(user_agent) is None:
                    await trio.to_thread.run_sync(USER_AGENTS.summarize, user_agent)
            return
        if waited.cancelled_caught:
            log.warning("[conv %s] visitor context of %d conversations not stored within %g s",
                        updates[0].conversation_id, len(updates), deadline)


def page_frame(conversation: Conversation, page: PageSeen) -> str:
    """The ``page`` frame agents get when the visitor navigates."""
    return frames.encode(frames.PageOut(conversation_id=conversation.id, url=page.url,
                                        title=page.title, at=format_ts(page.at)))


def record_hello(service: ChatService, conn_id: str, conversation_id: int,
                 hello: frames.Hello, *, user_agent: str, client: str) -> None:
    """A welcomed hello: its visit's facts and its page, for the next write."""
    timezone, problem = check_timezone(hello.timezone)
    if problem is not None:
        log.info("[%s] conversation %s: %s; dropped", conn_id, conversation_id, problem)
    now = utc_now()
    url = trim_url(hello.page or "")
    page = PageSeen(url, clean_title(hello.title), now) if url else None
    service.context.hello(conversation_id, VisitFacts(
        user_agent=clip(user_agent), ip=client[:MAX_ADDRESS], timezone=timezone,
        referrer=trim_url(hello.referrer or "")), now, page)


async def record_page(service: ChatService, conn_id: str, conversation_id: int,
                      frame: frames.VisitorPage) -> None:
    """A ``page`` frame: recorded for the next write, and sent to the agents who see the
    conversation at once. A URL that is not http(s) is refused (``bad_request``)."""
    url = trim_url(frame.url)
    if not url:
        raise BadRequest("invalid 'page' frame: field 'url': expected an absolute http(s) URL")
    page = PageSeen(url, clean_title(frame.title), utc_now())
    service.context.page(conversation_id, page)
    conversation = await service.conversation(conversation_id)
    service.to_conversation(conversation, page_frame(conversation, page), visitor=False)
    log.debug("[%s] conversation %s: visitor on %s", conn_id, conversation_id, url)
