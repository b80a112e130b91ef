"""Canned replies: team-wide snippets an agent inserts by shortcut (``/refund``).

Pure. A canned reply is a ``shortcut`` (1 to ``MAX_SHORTCUT`` letters, digits, ``-`` or
``_``; compared and stored in lower case, so ``Refund`` and ``refund`` are one) and a
``text`` with fields filled in when an agent inserts it into a conversation:

- ``{visitor.name}``, ``{visitor.email}``: what the visitor gave (the widget's name and
  email), else the identified contact's;
- ``{agent.name}``: the agent inserting the reply;
- ``{contact.name}``, ``{contact.email}``, ``{contact.phone}``, ``{contact.external_id}``:
  the identified contact's fields (empty for an anonymous visitor);
- ``{conversation.id}``: the conversation's number.

``{visitor.name|there}`` reads ``there`` when the value is empty. ``{{`` and ``}}`` are
literal braces (the campaign templates' syntax). A field outside this set is refused
when the reply is added (``CannedError`` names it), never found out while an agent
types. The dashboard fills the fields (agent-canned.js mirrors ``render``); the server
only checks them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from customer_service.core.campaign_template import Field, TemplateError, parse_template
from customer_service.core.models import format_ts
from customer_service.errors import BadRequest

FIELDS: Final = ("visitor.name", "visitor.email", "agent.name", "contact.name",
                 "contact.email", "contact.phone", "contact.external_id", "conversation.id")
MAX_SHORTCUT: Final = 32
MAX_TEXT: Final = 4000
"""Characters of a reply's text: the dashboard's reply box holds no more."""
_SHORTCUT: Final = re.compile(r"[A-Za-z0-9_-]+")


class CannedError(BadRequest):
    """A canned reply that cannot be added: a bad shortcut, an empty or too long text, a
    field outside ``FIELDS``. A 400 on REST, ``Error: ...`` in the CLI."""


@dataclass(frozen=True, slots=True)
class CannedReply:
    id: int
    shortcut: str
    text: str
    created_at: datetime


def check_shortcut(raw: str) -> str:
    """The shortcut as stored (lower case); raise ``CannedError`` naming what is wrong."""
    shortcut = raw.strip().removeprefix("/")
    if not shortcut:
        raise CannedError("the shortcut is empty")
    if len(shortcut) > MAX_SHORTCUT:
        raise CannedError(f"the shortcut {shortcut[:40]!r} is longer than {MAX_SHORTCUT} "
                          "characters")
    if not _SHORTCUT.fullmatch(shortcut):
        raise CannedError(f"the shortcut {shortcut[:40]!r} may hold only letters, digits, "
                          "'-' and '_'")
    return shortcut.lower()


def _name_and_fallback(field: Field) -> tuple[str, str]:
    name, _, fallback = field.source.partition("|")
    return name.strip(), fallback


def check_text(text: str) -> str:
    """The text as stored (trailing blanks removed); raise ``CannedError`` for an empty or
    too long text, unbalanced braces, or a field outside ``FIELDS`` (named)."""
    cleaned = text.rstrip()
    if not cleaned.strip():
        raise CannedError("the text is empty")
    if len(cleaned) > MAX_TEXT:
        raise CannedError(f"the text has {len(cleaned)} characters; at most {MAX_TEXT}")
    try:
        template = parse_template(cleaned)
    except TemplateError as exc:
        raise CannedError(f"the text: {exc.message}") from None
    for field in template.fields:
        name, _ = _name_and_fallback(field)
        if name not in FIELDS:
            raise CannedError(f"unknown field {{{name}}} in the text; the fields are "
                              + ", ".join(f"{{{known}}}" for known in FIELDS))
    return cleaned


def render(text: str, values: Mapping[str, str]) -> str:
    """``text`` (already checked) with its fields filled from ``values`` (a missing or
    empty value reads as the field's fallback, else as nothing)."""
    out: list[str] = []
    for part in parse_template(text).parts:
        if isinstance(part, str):
            out.append(part)
        else:
            name, fallback = _name_and_fallback(part)
            out.append(values.get(name) or fallback)
    return "".join(out)


def canned_dict(reply: CannedReply) -> dict[str, Any]:
    """A canned reply as JSON: the one shape REST and ``canned list --json`` print."""
    return {"id": reply.id, "shortcut": reply.shortcut, "text": reply.text,
            "created_at": format_ts(reply.created_at)}
