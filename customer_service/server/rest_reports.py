"""REST: ``GET /api/v1/reports?since=…&until=…&by=agent|day|label&tz=…``: the report of a
range for any agent (``core/reports.py``, ``Store.report``; docs/reports.md).

Query parameters and the answer are msgspec Structs (``ReportQuery``, ``Report``). The
app authenticates the agent, bounds the request by ``message_timeout`` and turns the
``BadRequest`` raised here (a bad date, an empty or reversed range, an unknown ``by`` or
time zone, an unknown or repeated parameter) into a 400 JSON error. ``run_report`` is
shared with ``customer-service reports``.
"""

from __future__ import annotations

import logging
from datetime import datetime

import msgspec

from customer_service.core.reports import (
    Report,
    ReportQuery,
    ReportRange,
    build_report,
    parse_group,
    parse_range,
    parse_zone,
)
from customer_service.errors import BadRequest
from customer_service.server.rest_search import query_params
from customer_service.storage.base import Store
from customer_service.transport.interface import Scope

log = logging.getLogger(__name__)


async def run_report(store: Store, span: ReportRange) -> Report:
    total, grouped = await store.report(span.since, span.until, span.by)
    return build_report(span, total, grouped)


def parse_query(params: dict[str, str], default_zone: str, now: datetime) -> ReportRange:
    try:
        query = msgspec.convert(params, ReportQuery)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "`$.by`" in text:
            parse_group(params.get("by"), "query parameter 'by'")  # raises, naming it
        if "missing required field `since`" in text:
            raise BadRequest("query parameter 'since' is missing: the first day"
                             " (YYYY-MM-DD) or an ISO datetime") from None
        if "unknown field" in text:
            name = text.split("`")[1] if "`" in text else "?"
            raise BadRequest(f"unknown query parameter {name!r} (since, until, by, tz)"
                             ) from None
        raise BadRequest(f"bad query parameters: {text}") from None
    zone = parse_zone(query.tz if query.tz is not None else default_zone, "query parameter 'tz'")
    by = parse_group(query.by, "query parameter 'by'")
    return parse_range(query.since, query.until, zone=zone, by=by, now=now,
                       names=("query parameter 'since'", "query parameter 'until'"))


async def reports(store: Store, scope: Scope, *, default_zone: str, now: datetime) -> Report:
    span = parse_query(query_params(scope), default_zone, now)
    report = await run_report(store, span)
    log.info("report %s .. %s by %s: %s conversations opened", span.since.isoformat(),
             span.until.isoformat(), span.by, report.total.opened)
    return report
