"""What every unit of work shares: ``Tx``, the dialects, value and row conversions.

The backends differ in how they reach the database (one SQLite connection in
one thread, a pool of MySQL connections) and in how they open, retry and close
transactions; what happens inside a transaction is written once, for both, in
the modules built on this one:

- ``_sql_schema``: migrations (loading, applying, re-running safely) and the
  write probe; ``_sql_ddl`` reads MySQL DDL for it;
- ``_sql_people``: agents, their tokens, visitors;
- ``_sql_chat``: conversations, messages, statistics;
- ``_sql_contacts``: contacts, their tags, identified visitors;
- ``_sql_campaigns``: campaigns, their recipients, campaign delivery.

Statements use ``?`` placeholders; ``Tx`` rewrites them for PyMySQL's ``%s``.
Row locks (``FOR UPDATE``) come from the dialect: SQLite has none and needs
none, because its write transactions (``BEGIN IMMEDIATE``) already exclude each
other.

Timestamps are stored as integer milliseconds since the Unix epoch (UTC) and
come back as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from customer_service.core.models import (
    Agent,
    Conversation,
    ConversationStatus,
    NewMessage,
    Role,
    StoredMessage,
    Visitor,
)

Row = Sequence[Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
IN_CHUNK = 500
"""Values per ``IN (...)`` list or multi-row INSERT: far below every driver's limits."""


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    for_update: str
    by_id: str
    """An index hint after a table name: look rows up by primary key, never by a scan.
    InnoDB keeps a lock on every row a locking statement reads, and on a small
    table its optimizer prefers a full scan for ``UPDATE ... WHERE id IN (...)``:
    the statement would then lock rows it does not name, out of id order, and
    deadlock with another instance's batch."""
    table_exists: str
    transactional_ddl: bool
    """False when DDL commits implicitly (MySQL): a migration may then stop half-way."""


SQLITE = Dialect(
    name="sqlite",
    transactional_ddl=True,
    for_update="",
    by_id="",
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
)
MYSQL = Dialect(
    name="mysql",
    transactional_ddl=False,
    for_update=" FOR UPDATE",
    by_id=" FORCE INDEX (PRIMARY)",
    table_exists=("SELECT 1 FROM information_schema.tables"
                  " WHERE table_schema = DATABASE() AND table_name = ?"),
)


class Cursor(Protocol):
    """What ``Tx`` needs of a DB-API cursor (``sqlite3`` and PyMySQL both fit)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: str, args: Any = ..., /) -> object: ...

    def executemany(self, query: str, args: Iterable[Any], /) -> object: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


@lru_cache(maxsize=256)
def _format_style(sql: str) -> str:
    return sql.replace("?", "%s")


class Tx:
    """One open transaction on one cursor, in the backend's worker thread."""

    def __init__(self, cursor: Cursor, dialect: Dialect) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql if self.dialect is SQLITE else _format_style(sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        self._cursor.execute(self._sql(sql), tuple(params))
        return self._cursor.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._sql(sql), [tuple(row) for row in rows])

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT; return the new row's id."""
        self._cursor.execute(self._sql(sql), tuple(params))
        row_id = getattr(self._cursor, "lastrowid", None)
        if not isinstance(row_id, int):
            raise RuntimeError("the driver reported no id for the new row")
        return row_id

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cursor.execute(self._sql(sql), tuple(params))
        row: Row | None = self._cursor.fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cursor.execute(self._sql(sql), tuple(params))
        return list(self._cursor.fetchall())

    def script(self, sql: str) -> None:
        """Run a statement with no parameters (migrations: no placeholder rewriting)."""
        self._cursor.execute(sql)


# --- values -----------------------------------------------------------------

def now_ms() -> int:
    return to_ms(datetime.now(UTC))


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=int(ms))


def dedupe_key(message: NewMessage) -> str | None:
    """The idempotency key of a message: None without ``client_id``.

    Hashed so that the key has a fixed length and only hex characters, whatever
    the client sends: no index length limit, no collation surprises in MySQL.
    """
    if message.client_id is None:
        return None
    sender = "" if message.sender_id is None else str(message.sender_id)
    raw = "\x00".join((str(message.sender_role), sender, message.client_id))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


def chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), IN_CHUNK):
        yield values[start:start + IN_CHUNK]


# --- rows -------------------------------------------------------------------

AGENT_COLUMNS = ("a.id, a.username, a.name, a.password_hash, a.disabled, a.created_at,"
                 " a.bot")
VISITOR_COLUMNS = "v.id, v.name, v.email, v.page, v.created_at"
CONVERSATION_COLUMNS = ("c.id, c.visitor_id, c.status, c.assigned_to, c.last_seq,"
                        " c.agent_read_seq, c.visitor_read_seq, c.created_at, c.updated_at,"
                        " c.needs_agent, c.left_email")
MESSAGE_COLUMNS = ("m.conversation_id, m.seq, m.sender_role, m.sender_id, m.sender_name,"
                   " m.content, m.created_at, m.client_id, m.stream_id, m.campaign_id")
VISITOR_WIDTH = 5
CONVERSATION_WIDTH = 11


def agent_from(row: Row) -> Agent:
    return Agent(id=int(row[0]), username=row[1], name=row[2], password_hash=row[3],
                 disabled=bool(row[4]), created_at=from_ms(row[5]), bot=bool(row[6]))


def visitor_from(row: Row) -> Visitor:
    return Visitor(id=int(row[0]), name=row[1], email=row[2], page=row[3],
                   created_at=from_ms(row[4]))


def conversation_from(row: Row) -> Conversation:
    return Conversation(
        id=int(row[0]), visitor_id=int(row[1]), status=ConversationStatus(row[2]),
        assigned_to=None if row[3] is None else int(row[3]), last_seq=int(row[4]),
        agent_read_seq=int(row[5]), visitor_read_seq=int(row[6]),
        created_at=from_ms(row[7]), updated_at=from_ms(row[8]), needs_agent=bool(row[9]),
        left_email=row[10] or "")


def message_from(row: Row) -> StoredMessage:
    return StoredMessage(
        conversation_id=int(row[0]), seq=int(row[1]), sender_role=Role(row[2]),
        sender_id=None if row[3] is None else int(row[3]), sender_name=row[4],
        content=row[5], created_at=from_ms(row[6]), client_id=row[7], stream_id=row[8],
        campaign_id=None if row[9] is None else int(row[9]))
