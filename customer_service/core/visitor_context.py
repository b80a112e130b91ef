"""Visitor context: what agents see beside a conversation about where the visitor is.

Pure: the rules for what the widget sends (URLs without query or fragment, IANA time
zones), what a visit is, and the pending writes, coalesced per conversation, that the
recorder (``server/visitor_context.py``) hands the store in one batch. The store keeps,
per conversation, the newest visit's facts (User-Agent, address, time zone, referrer,
current page) and the last ``MAX_PAGES`` pages seen ([agents.md](agents.md)).
"""

from __future__ import annotations

import importlib.util
import os
import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from customer_service.core.models import Contact, Visitor

MAX_URL: Final = 2048
"""Characters of a page or referrer URL (as ``hello.page`` always allowed)."""
MAX_TITLE: Final = 512
MAX_TIMEZONE: Final = 64
MAX_PAGES: Final = 50
"""Pages kept per conversation; older ones are deleted as new ones come."""
VISIT_GAP: Final = timedelta(minutes=30)
"""A visitor silent (no hello, no page) this long starts a new visit when it comes back:
the usual analytics session."""
MAX_PENDING: Final = 10_000
"""Conversations whose context waits for the next write; beyond that new ones are dropped
(and logged), so a flood cannot grow the server."""

_UNSHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters and bidirectional marks, overrides and isolates: a browser's report
with them would garble the panel or make one site read as another (``\u202e``)."""

_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,3}")


def trim_url(url: str) -> str:
    """The URL as stored and shown: scheme, host and path only. A query or fragment may hold
    secrets (password reset links, tokens), and so may user info (``user:pass@``), so none
    is kept. Anything that is not an absolute http(s) URL, or holds a control or
    bidirectional character, is dropped ("")."""
    text = url.strip()
    if not text or len(text) > MAX_URL or _UNSHOWN.search(text):
        return ""
    try:
        parts = urlsplit(text)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not host:
        return ""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", "", ""))


def clean_title(title: str | None) -> str:
    """A page title as shown: control and bidirectional characters dropped, whitespace runs
    made one space, at most ``MAX_TITLE``."""
    if not title:
        return ""
    return " ".join(_UNSHOWN.sub(lambda found: " " if found[0].isspace() else "",
                                 title).split())[:MAX_TITLE]


@lru_cache(maxsize=1)
def _has_tz_database() -> bool:
    """Whether this system has a tz database (a minimal container may have none: then a
    well-formed name is accepted, and the agent's browser resolves it)."""
    if any(os.path.isdir(path) for path in zoneinfo.TZPATH):
        return True
    return importlib.util.find_spec("tzdata") is not None


def check_timezone(name: str | None) -> tuple[str, str | None]:
    """``(zone, problem)``: the IANA zone to store ("" for none) and, when the widget sent
    one that is not a zone, why it was dropped (for the log). A known zone costs one small
    file read the first time (``ZoneInfo`` caches it), not a scan of the database."""
    if not name:
        return "", None
    if len(name) > MAX_TIMEZONE or _ZONE.fullmatch(name) is None:
        return "", f"time zone {name[:MAX_TIMEZONE]!r} is not an IANA zone name"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        if _has_tz_database():
            return "", f"unknown time zone {name!r}"
    return name, None


def starts_visit(last_seen: datetime | None, now: datetime) -> bool:
    """Whether something the visitor does at ``now`` begins a new visit."""
    return last_seen is None or now - last_seen >= VISIT_GAP


@dataclass(frozen=True, slots=True)
class PageSeen:
    url: str
    title: str
    at: datetime


@dataclass(frozen=True, slots=True)
class VisitFacts:
    """What a hello tells about the visit (the socket's User-Agent and address with it)."""

    user_agent: str
    ip: str
    timezone: str
    referrer: str


@dataclass(slots=True)
class ContextUpdate:
    """What to write for one conversation: the newest hello's facts (if a hello came) and
    the pages seen since the last write, oldest first."""

    conversation_id: int
    at: datetime
    visit: VisitFacts | None = None
    pages: list[PageSeen] = field(default_factory=list)

    def add_page(self, page: PageSeen) -> None:
        """Append a page; the same URL again (a reload, the hello's page sent once more)
        only refreshes its title."""
        if self.pages and self.pages[-1].url == page.url:
            previous = self.pages[-1]
            self.pages[-1] = PageSeen(previous.url, page.title or previous.title, previous.at)
            return
        self.pages.append(page)
        del self.pages[:-MAX_PAGES]


class PendingContext:
    """Context changes waiting for the next write, coalesced per conversation: a burst of
    page changes becomes one write. Bounded by ``MAX_PENDING`` conversations."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self._limit = limit
        self._updates: dict[int, ContextUpdate] = {}
        self.dropped = 0
        """Changes refused because too many conversations were waiting."""

    def _update(self, conversation_id: int, at: datetime) -> ContextUpdate | None:
        found = self._updates.get(conversation_id)
        if found is None:
            if len(self._updates) >= self._limit:
                self.dropped += 1
                return None
            found = self._updates[conversation_id] = ContextUpdate(conversation_id, at)
        found.at = at
        return found

    def hello(self, conversation_id: int, visit: VisitFacts, at: datetime,
              page: PageSeen | None = None) -> bool:
        """A hello at ``at``: its facts replace any pending ones; its page is a page seen.
        False when dropped."""
        update = self._update(conversation_id, at)
        if update is None:
            return False
        update.visit = visit
        if page is not None:
            update.add_page(page)
        return True

    def page(self, conversation_id: int, page: PageSeen) -> bool:
        update = self._update(conversation_id, page.at)
        if update is None:
            return False
        update.add_page(page)
        return True

    def take(self) -> list[ContextUpdate]:
        """Everything pending, by conversation id; nothing is pending afterwards."""
        taken = [self._updates[key] for key in sorted(self._updates)]
        self._updates.clear()
        return taken

    def __len__(self) -> int:
        return len(self._updates)


# ---- what the store reads back -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StoredContext:
    """A conversation's newest visit, as stored."""

    user_agent: str
    ip: str
    timezone: str
    referrer: str
    page: str
    title: str
    visit_started_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationBrief:
    """Another conversation of the same visitor or contact (a link in the panel)."""

    id: int
    status: str
    created_at: datetime
    last_message_at: datetime | None


EARLIER_LIMIT: Final = 20
"""Other conversations listed (newest first); ``earlier_total`` counts them all."""


@dataclass(frozen=True, slots=True)
class ConversationContext:
    """Everything the context panel shows, read in one unit of work."""

    conversation_id: int
    visitor: Visitor | None
    contact: Contact | None
    stored: StoredContext | None
    pages: tuple[PageSeen, ...]
    """The pages of the newest visit, oldest first (at most ``MAX_PAGES``)."""
    earlier: tuple[ConversationBrief, ...]
    earlier_total: int
