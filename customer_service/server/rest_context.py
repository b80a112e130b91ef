"""REST: ``GET /api/v1/conversations/{id}/context``, what the dashboard's context panel
shows beside a conversation (docs/agents.md#visitor-context).

One store call reads it all (``Store.conversation_context``); the User-Agent's summary
comes from the cache the recorder fills as visitors arrive, or, on a miss (another instance
saw the visitor, the cache dropped it), is parsed now in a worker thread (ua-parser's first
use compiles its patterns, about half a second of CPU, which must not stall the event loop).
"""

from __future__ import annotations

import re
from typing import Any, Final

import trio

from customer_service.core.frames import MAX_INT
from customer_service.core.models import format_ts
from customer_service.core.visitor_context import ConversationContext, trim_url
from customer_service.errors import BadRequest, NotFound
from customer_service.server.visitor_context import USER_AGENTS
from customer_service.storage.base import Store

_PATH: Final = re.compile(r"/api/v1/conversations/([^/]*)/context")


def match(path: str) -> int | None:
    """The conversation id of a context path (None: another path); a bad id is a 400."""
    found = _PATH.fullmatch(path)
    if found is None:
        return None
    raw = found.group(1)
    conversation_id = int(raw) if re.fullmatch(r"[0-9]{1,20}", raw) else 0
    if not 1 <= conversation_id <= MAX_INT:
        raise BadRequest(f"the conversation id must be an integer between 1 and {MAX_INT}, "
                         f"not {raw[:40]!r}")
    return conversation_id


async def get_context(store: Store, conversation_id: int) -> dict[str, Any]:
    found = await store.conversation_context(conversation_id)
    if found is None:
        raise NotFound(f"no conversation {conversation_id}")
    user_agent = found.stored.user_agent if found.stored else ""
    summary = USER_AGENTS.cached(user_agent)
    if summary is None:
        summary = await trio.to_thread.run_sync(USER_AGENTS.summarize, user_agent)
    return context_json(found) | {"browser": summary.browser.json(), "os": summary.os.json(),
                                  "device": summary.device}


def context_json(found: ConversationContext) -> dict[str, Any]:
    """The answer without the User-Agent's summary (``get_context`` adds it)."""
    visitor, contact, stored = found.visitor, found.contact, found.stored
    return {
        "conversation_id": found.conversation_id,
        "name": (visitor.name if visitor else "") or (contact.name if contact else ""),
        "email": (visitor.email if visitor else "") or (contact.email if contact else ""),
        # The visitor's own page column holds hello's page as it came (kept from before
        # visitor context): only an http(s) URL, trimmed, may become the panel's link.
        "page": (stored.page if stored else "") or trim_url(visitor.page if visitor else ""),
        "title": stored.title if stored else "",
        "pages": [{"url": p.url, "title": p.title, "at": format_ts(p.at)} for p in found.pages],
        "referrer": stored.referrer if stored else "",
        "user_agent": stored.user_agent if stored else "",
        "timezone": stored.timezone if stored else "",
        "ip": stored.ip if stored else "",
        "visit_started_at": format_ts(stored.visit_started_at) if stored else None,
        "updated_at": format_ts(stored.updated_at) if stored else None,
        "earlier": [{"id": c.id, "created_at": format_ts(c.created_at), "status": c.status,
                     "last_message_at": format_ts(c.last_message_at)
                     if c.last_message_at else None} for c in found.earlier],
        "earlier_total": found.earlier_total,
        "contact": None if contact is None else {
            "id": contact.id, "external_id": contact.external_id, "name": contact.name,
            "email": contact.email, "attributes": dict(contact.attributes),
            "tags": list(contact.tags)},
    }
