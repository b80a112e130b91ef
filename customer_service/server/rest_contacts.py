"""REST: ``GET /api/v1/contacts`` (a page, filtered by tags) and ``GET /api/v1/contacts/{id}``.

The app authenticates the agent and turns the ``BadRequest`` / ``NotFound`` raised here
into JSON errors; these handlers only read the query and the store.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qs

from customer_service.core.api_types import ContactsQuery
from customer_service.core.contact_import import tag_problem
from customer_service.core.contact_json import contact_dict
from customer_service.core.frames import MAX_INT
from customer_service.errors import BadRequest, NotFound
from customer_service.storage.base import Store
from customer_service.transport.interface import Scope

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
_ONE: Final = re.compile(r"/api/v1/contacts/([^/]+)")


def _integer(values: dict[str, list[str]], name: str, default: int, low: int,
             high: int) -> int:
    if name not in values:
        return default
    raw = values[name][-1]
    value = int(raw) if re.fullmatch(r"-?[0-9]{1,20}", raw.strip()) else None
    if value is None or not low <= value <= high:
        raise BadRequest(f"query parameter '{name}' must be an integer between {low} and "
                         f"{high}, not {raw[:40]!r}")
    return value


def parse_query(query_string: bytes) -> ContactsQuery:
    """``tag`` (repeatable: contacts with every one), ``after`` (an id, 0 to start) and
    ``limit`` (1 to ``MAX_LIMIT``); another parameter is ignored, like elsewhere in the API."""
    try:
        values = parse_qs(query_string.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8") from None
    tags = []
    for tag in values.get("tag", []):
        problem = tag_problem(tag.strip())
        if problem:
            raise BadRequest(f"query parameter 'tag': {problem}")
        tags.append(tag.strip())
    return ContactsQuery(tag=list(dict.fromkeys(tags)),
                         after=_integer(values, "after", 0, 0, MAX_INT),
                         limit=_integer(values, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))


async def list_contacts(store: Store, scope: Scope) -> dict[str, Any]:
    """``{"contacts": [...], "next_after": id | null}``: the contacts with an id above
    ``after``, by id; ``next_after`` is the ``after`` of the next page, null on the last."""
    query = parse_query(scope.get("query_string", b""))
    found = await store.list_contacts(after_id=query.after, limit=query.limit + 1,
                                      tags=tuple(query.tag))
    page = found[: query.limit]
    more = len(found) > query.limit
    return {"contacts": [contact_dict(c) for c in page],
            "next_after": page[-1].id if more else None}


async def get_contact(store: Store, scope: Scope) -> dict[str, Any]:
    """One contact by its id (the ``id`` of the listing, not the ``external_id``)."""
    found = _ONE.fullmatch(scope["path"])
    if found is None:
        raise NotFound(f"no route {scope['path']}")
    raw = found.group(1)
    contact_id = int(raw) if re.fullmatch(r"-?[0-9]{1,20}", raw) else 0
    if not 1 <= contact_id <= MAX_INT:
        raise BadRequest(f"the contact id must be an integer between 1 and {MAX_INT}, "
                         f"not {raw[:40]!r}")
    contact = await store.get_contact(contact_id)
    if contact is None:
        raise NotFound(f"no contact {contact_id}")
    return contact_dict(contact)
