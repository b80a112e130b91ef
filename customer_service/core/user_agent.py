"""A visitor's browser, OS and device, read from its ``User-Agent`` by ua-parser.

The patterns are ua-parser's (uap-core's regexes, shipped in ``ua-parser-builtins`` and
kept up to date there), never hand-written here. A summary is computed once per
User-Agent string and kept in a bounded LRU (``UserAgents``): a visitor's page views and
every agent opening the conversation reuse it. The first parse in a process compiles
ua-parser's patterns (about half a second of CPU), and a new string costs a few
milliseconds, so the server asks ``cached`` first and runs ``summarize`` in a worker
thread on a miss (``server/rest_context.py``).

Anything unreadable (empty, garbage, a bot ua-parser does not know) is ``"unknown"``;
nothing here raises for any input.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import ua_parser

log = logging.getLogger(__name__)

UNKNOWN: Final = "unknown"
MAX_USER_AGENT: Final = 1024
"""Characters of a ``User-Agent`` header kept and parsed; real ones are far shorter."""
CACHE_SIZE: Final = 1024


@dataclass(frozen=True, slots=True)
class Named:
    name: str
    version: str = ""

    def json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


@dataclass(frozen=True, slots=True)
class UaSummary:
    browser: Named
    os: Named
    device: str


NOTHING: Final = UaSummary(Named(UNKNOWN), Named(UNKNOWN), UNKNOWN)


def clip(user_agent: str) -> str:
    """The header as stored: at most ``MAX_USER_AGENT`` characters, control characters
    turned into spaces, trimmed."""
    text = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in user_agent[:MAX_USER_AGENT])
    return text.strip()


def _version(*parts: str | None) -> str:
    """"120.0.1" from ("120", "0", "1"); stops at the first missing part."""
    found: list[str] = []
    for part in parts:
        if not part:
            break
        found.append(part)
    return ".".join(found)


def _known(family: str | None) -> str:
    return family if family and family != "Other" else UNKNOWN


def parse(user_agent: str) -> UaSummary:
    """Parse one User-Agent (no cache). Never raises."""
    text = clip(user_agent)
    if not text:
        return NOTHING
    try:
        result = ua_parser.parse(text)
    except Exception:  # a parser bug must not cost the agent the whole panel
        log.warning("ua-parser failed on a User-Agent of %d characters", len(text),
                    exc_info=True)
        return NOTHING
    agent, system, device = result.user_agent, result.os, result.device
    browser = (Named(_known(agent.family),
                     _version(agent.major, agent.minor) if _known(agent.family) != UNKNOWN else "")
               if agent is not None else Named(UNKNOWN))
    os = (Named(_known(system.family),
                _version(system.major, system.minor, system.patch)
                if _known(system.family) != UNKNOWN else "")
          if system is not None else Named(UNKNOWN))
    return UaSummary(browser, os, _known(device.family) if device is not None else UNKNOWN)


class UserAgents:
    """Summaries by User-Agent string: a bounded LRU shared by threads (``summarize`` runs
    in worker threads, ``cached`` in the event loop)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[str, UaSummary] = OrderedDict()

    def cached(self, user_agent: str) -> UaSummary | None:
        """The summary when it was computed before (or needs no parsing), else None."""
        if not clip(user_agent):
            return NOTHING
        with self._lock:
            found = self._items.get(user_agent)
            if found is not None:
                self._items.move_to_end(user_agent)
            return found

    def summarize(self, user_agent: str) -> UaSummary:
        """The summary, parsed now when it is not cached (may take milliseconds)."""
        found = self.cached(user_agent)
        if found is not None:
            return found
        summary = parse(user_agent)
        with self._lock:
            self._items[user_agent] = summary
            self._items.move_to_end(user_agent)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return summary

    def __len__(self) -> int:
        return len(self._items)
