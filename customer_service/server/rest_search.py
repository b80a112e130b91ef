"""REST: ``GET /api/v1/search?q=…&limit=…&before=…``: full-text search over messages and
visitors (``core/search.py``, ``Store.search``) for agents.

Answers ``{"query", "hits": [...], "next"}``, newest first; ``next`` is the cursor to pass
as ``before`` for the following page (null on the last one). The app authenticates the
agent, bounds the request by ``message_timeout`` and turns the ``BadRequest`` raised here
(empty or too long ``q``, bad ``limit`` or ``before``) into a 400 JSON error.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from customer_service.core.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    page_dict,
    parse_cursor,
    parse_query,
)
from customer_service.errors import BadRequest
from customer_service.storage.base import Store
from customer_service.transport.interface import Scope

log = logging.getLogger(__name__)


def query_params(scope: Scope) -> dict[str, str]:
    """The query string's parameters, UTF-8 (``q=退款``), each once."""
    try:
        values = parse_qs(bytes(scope.get("query_string", b"")).decode(), errors="strict",
                          keep_blank_values=True)
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8") from None
    repeated = sorted(name for name, given in values.items() if len(given) > 1)
    if repeated:
        raise BadRequest(f"query parameter {repeated[0]!r} is given more than once")
    return {name: given[0] for name, given in values.items()}


async def search(store: Store, scope: Scope) -> dict[str, Any]:
    params = query_params(scope)
    if "q" not in params:
        raise BadRequest("query parameter 'q' is missing: the text to search for")
    try:
        query = parse_query(params["q"])
    except BadRequest as exc:
        raise BadRequest(f"query parameter 'q': {exc.message}") from None
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 6
            and 1 <= int(raw_limit) <= MAX_LIMIT):
        raise BadRequest(f"query parameter 'limit' must be an integer between 1 and"
                         f" {MAX_LIMIT}, not {raw_limit[:20]!r}")
    limit = int(raw_limit)
    before = None
    if params.get("before"):
        try:
            before = parse_cursor(params["before"])
        except BadRequest as exc:
            raise BadRequest(f"query parameter 'before': {exc.message}") from None
    hits = await store.search(query, limit, before)
    log.debug("search %r: %s hits", query.text, len(hits))
    return page_dict(query, hits, limit)
