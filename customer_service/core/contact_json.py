"""A contact as JSON: the one shape the CLI's ``--json`` and the REST API both print."""

from __future__ import annotations

from typing import Any

import msgspec

from customer_service.core.models import Contact, format_ts

_encoder = msgspec.json.Encoder()


def contact_dict(contact: Contact) -> dict[str, Any]:
    """Times in RFC 3339 UTC with milliseconds, like the protocol's ``ts``."""
    return {"id": contact.id, "external_id": contact.external_id, "name": contact.name,
            "email": contact.email, "phone": contact.phone, "tags": list(contact.tags),
            "attributes": contact.attributes, "unsubscribed": contact.unsubscribed,
            "last_campaign_at": (None if contact.last_campaign_at is None
                                 else format_ts(contact.last_campaign_at)),
            "created_at": format_ts(contact.created_at),
            "updated_at": format_ts(contact.updated_at)}


def encode_json(data: Any, *, indent: int = 0) -> bytes:
    """``data`` (contact dicts and plain values) as JSON bytes, indented for people when
    ``indent`` is given."""
    encoded = _encoder.encode(data)
    return msgspec.json.format(encoded, indent=indent) if indent else encoded
