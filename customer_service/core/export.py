"""Exporting conversations: one message per line (JSON Lines) or per row (CSV).

The store reads messages a page at a time by (conversation id, seq)
(``Store.export_page``); each ``ExportRow`` carries its conversation's fields, so each
line or row stands alone and the export is written as it is read. Formats: docs/reports.md.

CSV cells that are text and begin with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return get a leading ``'``, so a spreadsheet shows them instead of running them as a
formula (OWASP "CSV injection"); JSON Lines keeps every text as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

FORMATS = ("jsonl", "csv")
PAGE = 1000
"""Messages per page read from the store."""

CSV_HEADER = ("conversation_id", "seq", "created_at", "sender_role", "sender_id",
              "sender_name", "content", "campaign_id", "conversation_status",
              "conversation_created_at", "visitor_id", "visitor_name", "visitor_email",
              "contact_external_id", "assigned_agent", "labels")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class ExportRow:
    conversation_id: int
    seq: int
    created_at: int
    sender_role: str
    sender_id: int | None
    sender_name: str
    content: str
    campaign_id: int | None
    status: str
    visitor_id: int
    visitor_name: str
    visitor_email: str
    contact_external_id: str | None
    assigned_agent: str | None
    conversation_created_at: int
    labels: tuple[str, ...]


class _Line(msgspec.Struct):
    conversation_id: int
    seq: int
    created_at: str
    sender_role: str
    sender_id: int | None
    sender_name: str
    content: str
    campaign_id: int | None
    conversation: _Conversation


class _Conversation(msgspec.Struct):
    status: str
    created_at: str
    visitor_id: int
    visitor_name: str
    visitor_email: str
    contact_external_id: str | None
    assigned_agent: str | None
    labels: list[str]


def iso(ms: int) -> str:
    """An epoch-milliseconds instant as ISO 8601 UTC with milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


_encoder = msgspec.json.Encoder()


def jsonl_line(row: ExportRow) -> bytes:
    """One JSON object and a newline (UTF-8)."""
    return _encoder.encode(_Line(
        conversation_id=row.conversation_id, seq=row.seq, created_at=iso(row.created_at),
        sender_role=row.sender_role, sender_id=row.sender_id, sender_name=row.sender_name,
        content=row.content, campaign_id=row.campaign_id, conversation=_Conversation(
            status=row.status, created_at=iso(row.conversation_created_at),
            visitor_id=row.visitor_id, visitor_name=row.visitor_name,
            visitor_email=row.visitor_email, contact_external_id=row.contact_external_id,
            assigned_agent=row.assigned_agent, labels=list(row.labels)))) + b"\n"


def safe_cell(text: str) -> str:
    """Text for a spreadsheet cell: a leading ``'`` when it would start a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(row: ExportRow) -> list[str]:
    """The cells of one message (for ``csv.writer``: RFC 4180 quoting, CRLF)."""
    def opt(value: object) -> str:
        return "" if value is None else str(value)

    return [str(row.conversation_id), str(row.seq), iso(row.created_at), row.sender_role,
            opt(row.sender_id), safe_cell(row.sender_name), safe_cell(row.content),
            opt(row.campaign_id), row.status, iso(row.conversation_created_at),
            str(row.visitor_id), safe_cell(row.visitor_name), safe_cell(row.visitor_email),
            safe_cell(opt(row.contact_external_id)), safe_cell(opt(row.assigned_agent)),
            safe_cell(" ".join(row.labels))]
