"""Reports and exports in SQL, for both dialects (``sql_store_reports``; the figures'
meaning: ``core/reports.py``, docs/reports.md).

Counting and grouping happen here, in the database; what needs percentiles comes back as
one duration per conversation (computed in SQL), never as messages. Grouping keys:

- no grouping: NULL;
- ``agent``: the conversation's assignee (``c.assigned_to``, NULL: nobody);
- ``label``: each label of the conversation (a conversation with two labels counts in both;
  NULL: no label);
- ``day``: the 15-minute slot (``ms DIV 900000``) of the event's own time (opened: the
  conversation's creation; closed and resolution: its close; messages: the message's;
  first response: the conversation's creation), folded into local days by the core.

Migration 0016 gives the indexes these read: ``conversations (created_at)``,
``conversations (closed_at)``, ``messages (conversation_id, sender_role, seq, created_at, campaign_id)``,
``messages (created_at, sender_role, campaign_id, conversation_id)``.

The export reads messages a page at a time by (conversation id, seq) after a cursor: no
offset, no open cursor between pages, so memory stays flat however many messages there are.
"""

from __future__ import annotations

from customer_service.core.export import ExportRow
from customer_service.core.reports import SLOT_MS, CampaignFigures, GroupBy, Key, RawReport
from customer_service.storage._sql import Row, Tx, chunks, placeholders

_LABEL_JOIN = " LEFT JOIN conversation_labels l ON l.conversation_id = c.id"


def _slot(tx: Tx, column: str) -> str:
    operator = "DIV" if tx.dialect.name == "mysql" else "/"
    return f"{column} {operator} {SLOT_MS}"


def _group(tx: Tx, by: GroupBy | None, moment: str) -> tuple[str, str]:
    """The group key's expression (for conversations ``c``) and the join it needs."""
    if by == "agent":
        return "c.assigned_to", ""
    if by == "label":
        return "l.label", _LABEL_JOIN
    if by == "day":
        return _slot(tx, moment), ""
    return "NULL", ""


def _key(value: object) -> Key:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return int(str(value))


def _int(value: object) -> int:
    return 0 if value is None else int(str(value))


def _opened(tx: Tx, by: GroupBy | None, span: tuple[int, int]) -> list[tuple[Key, int]]:
    group, join = _group(tx, by, "c.created_at")
    rows = tx.all(f"SELECT {group}, COUNT(*) FROM conversations c{join}"
                  " WHERE c.created_at >= ? AND c.created_at < ?"
                  " AND EXISTS (SELECT 1 FROM messages v WHERE v.conversation_id = c.id"
                  " AND v.sender_role = 'visitor')"
                  f" GROUP BY {group}", span)
    return [(_key(row[0]), _int(row[1])) for row in rows]


def _closed(tx: Tx, by: GroupBy | None, span: tuple[int, int]
            ) -> tuple[list[tuple[Key, int, int]], list[tuple[Key, int]]]:
    group, join = _group(tx, by, "c.closed_at")
    counts = tx.all(
        f"SELECT {group}, COUNT(*), SUM(CASE WHEN c.assigned_to IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM messages a WHERE a.conversation_id = c.id"
        " AND a.sender_role = 'agent')"
        " AND EXISTS (SELECT 1 FROM messages i WHERE i.conversation_id = c.id"
        " AND i.sender_role = 'ai' AND i.campaign_id IS NULL) THEN 1 ELSE 0 END)"
        f" FROM conversations c{join} WHERE c.closed_at >= ? AND c.closed_at < ?"
        f" GROUP BY {group}", span)
    durations = tx.all(f"SELECT {group}, c.closed_at - c.created_at FROM conversations c{join}"
                       " WHERE c.closed_at >= ? AND c.closed_at < ?", span)
    return ([(_key(row[0]), _int(row[1]), _int(row[2])) for row in counts],
            [(_key(row[0]), _int(row[1])) for row in durations])


def _role_index(tx: Tx) -> str:
    """MariaDB otherwise walks a conversation's messages by primary key, a row at a time."""
    return " FORCE INDEX (messages_role)" if tx.dialect.name == "mysql" else ""


def _first_reply(tx: Tx, role: str) -> str:
    # A human agent's: an API token's bot agent (a CRM's "your order shipped") is no reply.
    human = (" AND NOT EXISTS (SELECT 1 FROM agents b WHERE b.id = r.sender_id AND b.bot = 1)"
             if role == "agent" else "")
    return (f"(SELECT r.created_at FROM messages r{_role_index(tx)} WHERE r.conversation_id = f.id"
            f" AND r.sender_role = '{role}' AND r.seq > f.visitor_seq"
            f" AND r.campaign_id IS NULL{human} ORDER BY r.seq LIMIT 1)")


def _first_response(tx: Tx, by: GroupBy | None, span: tuple[int, int]
                    ) -> list[tuple[Key, int | None, int | None]]:
    """Per conversation opened in the range: its visitor's first message, and the first
    agent and AI messages after it (by seq), each an index seek on ``messages_role``
    (conversation, role, seq, created_at, campaign_id), which holds every column read."""
    group, join = _group(tx, by, "c.created_at")
    index = _role_index(tx)
    rows = tx.all(
        f"SELECT f.grp, (SELECT v.created_at FROM messages v{index}"
        " WHERE v.conversation_id = f.id AND v.sender_role = 'visitor'"
        f" AND v.seq = f.visitor_seq), {_first_reply(tx, 'agent')}, {_first_reply(tx, 'ai')}"
        f" FROM (SELECT c.id, {group} AS grp, (SELECT MIN(m.seq) FROM messages m{index}"
        " WHERE m.conversation_id = c.id AND m.sender_role = 'visitor') AS visitor_seq"
        f" FROM conversations c{join} WHERE c.created_at >= ? AND c.created_at < ?) f"
        " WHERE f.visitor_seq IS NOT NULL", span)
    result: list[tuple[Key, int | None, int | None]] = []
    for row in rows:
        asked = _int(row[1])
        agent = None if row[2] is None else _int(row[2]) - asked
        ai = None if row[3] is None else _int(row[3]) - asked
        result.append((_key(row[0]), agent, ai))
    return result


def _messages(tx: Tx, by: GroupBy | None, span: tuple[int, int]
              ) -> list[tuple[Key, str, int, int]]:
    if by in ("agent", "label"):
        # Counted per conversation first, then grouped by its assignee or labels: one join
        # per conversation and role instead of one per message.
        group, join = _group(tx, by, "c.created_at")
        rows = tx.all(
            f"SELECT {group}, x.sender_role, SUM(x.n), SUM(x.own) FROM"
            " (SELECT m.conversation_id, m.sender_role, COUNT(*) AS n,"
            " SUM(CASE WHEN m.campaign_id IS NULL THEN 1 ELSE 0 END) AS own"
            " FROM messages m WHERE m.created_at >= ? AND m.created_at < ?"
            " GROUP BY m.conversation_id, m.sender_role) x"
            f" JOIN conversations c ON c.id = x.conversation_id{join}"
            f" GROUP BY {group}, x.sender_role", span)
    else:
        group = "NULL" if by is None else _slot(tx, "m.created_at")
        rows = tx.all(f"SELECT {group}, m.sender_role, COUNT(*),"
                      " SUM(CASE WHEN m.campaign_id IS NULL THEN 1 ELSE 0 END)"
                      " FROM messages m WHERE m.created_at >= ? AND m.created_at < ?"
                      f" GROUP BY {group}, m.sender_role", span)
    return [(_key(row[0]), str(row[1]), _int(row[2]), _int(row[3])) for row in rows]


def _campaigns(tx: Tx, span: tuple[int, int]) -> list[CampaignFigures]:
    """Campaigns running at some time in the range: started before it ends, not finished
    before it begins. ``replied``: sent recipients who wrote after the campaign's message."""
    rows = tx.all(
        "SELECT k.id, k.name, k.status,"
        " SUM(CASE WHEN r.state = 'sent' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN r.state = 'failed' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN r.state = 'skipped' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN r.state IN ('pending', 'generating') THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN r.state = 'sent' AND EXISTS (SELECT 1 FROM messages v"
        " WHERE v.conversation_id = r.conversation_id AND v.sender_role = 'visitor'"
        " AND v.seq > r.message_seq) THEN 1 ELSE 0 END)"
        " FROM campaigns k LEFT JOIN campaign_recipients r ON r.campaign_id = k.id"
        " WHERE k.started_at IS NOT NULL AND k.started_at < ?"
        " AND (k.finished_at IS NULL OR k.finished_at >= ?)"
        " GROUP BY k.id, k.name, k.status ORDER BY k.id", (span[1], span[0]))
    return [CampaignFigures(id=int(row[0]), name=str(row[1]), status=str(row[2]),
                        sent=_int(row[3]), failed=_int(row[4]), skipped=_int(row[5]),
                        pending=_int(row[6]), replied=_int(row[7])) for row in rows]


def report(tx: Tx, since_ms: int, until_ms: int, by: GroupBy | None
           ) -> tuple[RawReport, RawReport | None]:
    """The whole range's figures, and with ``by`` the grouped ones, in one transaction (one
    snapshot: the rows add up to the total)."""
    total = _report(tx, (since_ms, until_ms), None)
    return total, None if by is None else _report(tx, (since_ms, until_ms), by)


def _report(tx: Tx, span: tuple[int, int], by: GroupBy | None) -> RawReport:
    closed, resolution = _closed(tx, by, span)
    raw = RawReport(opened=_opened(tx, by, span), closed=closed,
                    messages=_messages(tx, by, span), resolution_ms=resolution,
                    first_response_ms=_first_response(tx, by, span))
    if by is None:
        raw.campaigns = _campaigns(tx, span)
    if by == "agent":
        raw.agent_names = {int(row[0]): (str(row[1]), str(row[2]))
                           for row in tx.all("SELECT id, username, name FROM agents")}
    return raw


# --- export -----------------------------------------------------------------------------

def export_bounds(tx: Tx, since_ms: int, until_ms: int) -> tuple[int, int] | None:
    """The lowest and highest id of the conversations created in the range (None: none)."""
    row = tx.one("SELECT MIN(c.id), MAX(c.id) FROM conversations c"
                 " WHERE c.created_at >= ? AND c.created_at < ?", (since_ms, until_ms))
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1])


def export_page(tx: Tx, since_ms: int, until_ms: int, *, last_id: int,
                after: tuple[int, int], limit: int) -> list[ExportRow]:
    """Up to ``limit`` messages of conversations created in the range, after ``after``
    (conversation id, seq), in that order; ``last_id`` bounds the scan."""
    cid, seq = after
    # Messages drive, in primary-key order, so the page ends after ``limit`` rows: MariaDB
    # would otherwise start from conversations and sort all the rest of the range.
    straight, by_key = ((" STRAIGHT_JOIN", " FORCE INDEX (PRIMARY)")
                        if tx.dialect.name == "mysql" else ("", ""))
    rows: list[Row] = tx.all(
        f"SELECT{straight} m.conversation_id, m.seq, m.created_at, m.sender_role, m.sender_id,"
        " m.sender_name, m.content, m.campaign_id, c.status, v.id, v.name, v.email,"
        " k.external_id, a.username, c.created_at"
        f" FROM messages m{by_key} JOIN conversations c ON c.id = m.conversation_id"
        " JOIN visitors v ON v.id = c.visitor_id"
        " LEFT JOIN contacts k ON k.id = c.contact_id"
        " LEFT JOIN agents a ON a.id = c.assigned_to"
        " WHERE m.conversation_id >= ? AND m.conversation_id <= ?"
        " AND (m.conversation_id > ? OR m.seq > ?)"
        " AND c.created_at >= ? AND c.created_at < ?"
        " ORDER BY m.conversation_id, m.seq LIMIT ?",
        (cid, last_id, cid, seq, since_ms, until_ms, limit))
    labels: dict[int, list[str]] = {}
    ids = sorted({int(row[0]) for row in rows})
    for part in chunks(ids):
        for conversation_id, label in tx.all(
                "SELECT conversation_id, label FROM conversation_labels"
                f" WHERE conversation_id IN ({placeholders(len(part))})"
                " ORDER BY conversation_id, label", part):
            labels.setdefault(int(conversation_id), []).append(str(label))
    return [ExportRow(
        conversation_id=int(row[0]), seq=int(row[1]), created_at=int(row[2]),
        sender_role=str(row[3]), sender_id=None if row[4] is None else int(row[4]),
        sender_name=str(row[5]), content=str(row[6]),
        campaign_id=None if row[7] is None else int(row[7]), status=str(row[8]),
        visitor_id=int(row[9]), visitor_name=str(row[10]), visitor_email=str(row[11]),
        contact_external_id=None if row[12] is None else str(row[12]),
        assigned_agent=None if row[13] is None else str(row[13]),
        conversation_created_at=int(row[14]),
        labels=tuple(labels.get(int(row[0]), ()))) for row in rows]
