"""REST: ``POST`` / ``DELETE /api/v1/conversations/{id}/labels/{label}`` (add or remove one
label) and the ``label`` filter of ``GET /api/v1/conversations``.

A change is announced like any change of a conversation: a ``conversation`` event with
the new ``labels`` to the agents following it, on every instance (``ChatService.announce``).
The app authenticates the agent and turns the errors raised here into JSON errors.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final
from urllib.parse import parse_qs, unquote

import trio

from customer_service.core.frames import MAX_INT
from customer_service.core.labels import normalize_label, normalize_labels
from customer_service.core.models import Agent
from customer_service.errors import BadRequest
from customer_service.server.service import ChatService
from customer_service.transport.interface import Scope

log = logging.getLogger(__name__)

ANNOUNCE_DEADLINE: Final = 5.0
"""Seconds to announce a stored change, whatever the request's deadline."""
_PATH: Final = re.compile(r"/api/v1/conversations/([^/]*)/labels/([^/]*)")


def match(scope: Scope) -> tuple[int, str] | None:
    """The conversation id and the label of a label path (None: another path). The label
    is read from the raw path and percent-decoded once (``%E9%80%80`` is ``退``), whatever
    the transport did to ``path``, so an encoded ``/`` (``%2F``) is a character of the
    label (and refused as one), not a separator."""
    raw = scope.get("raw_path") or scope["path"].encode()
    found = _PATH.fullmatch(bytes(raw).decode("latin-1"))
    if found is None:
        return None
    raw_id, raw_label = found.groups()
    conversation_id = int(raw_id) if re.fullmatch(r"[0-9]{1,20}", raw_id) else 0
    if not 1 <= conversation_id <= MAX_INT:
        raise BadRequest(f"the conversation id must be an integer between 1 and {MAX_INT}, "
                         f"not {raw_id[:40]!r}")
    try:
        label = unquote(raw_label, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the label in the path is not UTF-8") from None
    return conversation_id, label


def query_labels(scope: Scope) -> list[str]:
    """``label`` query parameters (repeatable: conversations with every one), normalized."""
    try:
        values = parse_qs(bytes(scope.get("query_string", b"")).decode(), errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8") from None
    try:
        return normalize_labels(values.get("label", []))
    except BadRequest as exc:
        raise BadRequest(f"query parameter 'label': {exc.message}") from None


async def change(service: ChatService, agent: Agent, method: str, conversation_id: int,
                 raw_label: str) -> dict[str, Any]:
    """Add (POST) or remove (DELETE) one label; answer the conversation's labels now."""
    label = normalize_label(raw_label)
    store = service.store
    if method == "POST":
        labels = await store.add_conversation_labels(conversation_id, [label])
    else:
        labels = await store.remove_conversation_labels(conversation_id, [label])
    log.info("[conv %s] label %r %s by %s; labels now %s", conversation_id, label,
             "added" if method == "POST" else "removed", agent.username, labels)
    with trio.CancelScope(shield=True), trio.move_on_after(ANNOUNCE_DEADLINE):
        await service.announce(await service.conversation(conversation_id))
    return {"conversation_id": conversation_id, "labels": labels}
