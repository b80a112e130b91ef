"""Who a campaign goes to: ``--tag`` (in SQL), ``--attr key=value`` (here), ``--audience-file``.

Pure. ``--attr plan=pro`` matches a contact whose attribute ``plan`` reads ``pro``
as text: a string as it is, a number or boolean as JSON writes it (``--attr
vip=true``, ``--attr seats=10``; ``10.0`` is not ``10``), a list or object as
compact JSON. A contact without the attribute (or with ``null``) never matches.
Several ``--attr`` and ``--tag`` are combined with AND.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from customer_service.core.campaign_template import value_text
from customer_service.core.models import Contact
from customer_service.errors import CustomerServiceError

MAX_EXTERNAL_ID = 255


class AudienceError(CustomerServiceError):
    code = "bad_request"
    http_status = 400


def parse_attr(text: str) -> tuple[str, str]:
    """``key=value`` → ``(key, value)`` (the value may contain ``=``); raise ``AudienceError``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise AudienceError(f"--attr {text!r}: expected key=value (for example plan=pro)")
    return key, value


def parse_attrs(items: Iterable[str]) -> dict[str, str]:
    """Several ``--attr``; the same key twice with different values is an error (AND of
    both can match nothing)."""
    found: dict[str, str] = {}
    for item in items:
        key, value = parse_attr(item)
        if key in found and found[key] != value:
            raise AudienceError(f"--attr {key} is given twice ({found[key]!r} and {value!r}); "
                                "no contact can match both")
        found[key] = value
    return found


def matches(contact: Contact, attrs: Mapping[str, str]) -> bool:
    """Every ``attrs`` key is an attribute of the contact whose text is the value."""
    for key, wanted in attrs.items():
        value = contact.attributes.get(key)
        if value is None or value_text(value) != wanted:
            return False
    return True


def parse_audience_lines(lines: Iterable[str]) -> list[str]:
    """External ids, one a line (blank lines and ``#`` comments skipped; duplicates once);
    raise ``AudienceError`` naming the line of an id that is too long."""
    ids: dict[str, None] = {}
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if len(text) > MAX_EXTERNAL_ID:
            raise AudienceError(f"line {number}: external id longer than {MAX_EXTERNAL_ID} "
                                "characters")
        ids[text] = None
    return list(ids)


def describe(tags: Sequence[str], attrs: Mapping[str, str], file: str | None) -> str:
    """The audience in words, for error messages: ``tag vip and plan=pro``."""
    parts = [f"tag {tag}" for tag in tags] + [f"{k}={v}" for k, v in attrs.items()]
    if file:
        parts.append(f"the ids in {file}")
    return " and ".join(parts) if parts else "all contacts"
