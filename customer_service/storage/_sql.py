"""The SQL both backends share: one function per unit of work, run on a ``Tx``.

The backends differ in how they reach the database (one SQLite connection in
one thread, a pool of MySQL connections) and in how they open, retry and close
transactions; what happens inside a transaction is written once, here, so the
two cannot drift apart. Statements use ``?`` placeholders; ``Tx`` rewrites them
for PyMySQL's ``%s``. Row locks (``FOR UPDATE``) come from the dialect: SQLite
has none and needs none, because its write transactions (``BEGIN IMMEDIATE``)
already exclude each other.

Timestamps are stored as integer milliseconds since the Unix epoch (UTC) and
come back as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

from customer_service.core.models import (
    Agent,
    AppendResult,
    Conversation,
    ConversationStatus,
    ConversationSummary,
    NewMessage,
    Role,
    Stats,
    StoredMessage,
    Visitor,
)
from customer_service.errors import Conflict, NotFound

Row = Sequence[Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_IN_CHUNK = 500
_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    for_update: str
    table_exists: str


SQLITE = Dialect(
    name="sqlite",
    for_update="",
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
)
MYSQL = Dialect(
    name="mysql",
    for_update=" FOR UPDATE",
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


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start:start + _IN_CHUNK]


# --- rows -------------------------------------------------------------------

AGENT_COLUMNS = "a.id, a.username, a.name, a.password_hash, a.disabled, a.created_at"
VISITOR_COLUMNS = "v.id, v.name, v.email, v.page, v.created_at"
CONVERSATION_COLUMNS = ("c.id, c.visitor_id, c.status, c.assigned_to, c.last_seq,"
                        " c.agent_read_seq, c.visitor_read_seq, c.created_at, c.updated_at,"
                        " c.needs_agent")
MESSAGE_COLUMNS = ("m.conversation_id, m.seq, m.sender_role, m.sender_id, m.sender_name,"
                   " m.content, m.created_at, m.client_id, m.stream_id")
_VISITOR_WIDTH = 5
_CONVERSATION_WIDTH = 10


def agent_from(row: Row) -> Agent:
    return Agent(id=int(row[0]), username=row[1], name=row[2], password_hash=row[3],
                 disabled=bool(row[4]), created_at=from_ms(row[5]))


def visitor_from(row: Row) -> Visitor:
    return Visitor(id=int(row[0]), name=row[1], email=row[2], page=row[3],
                   created_at=from_ms(row[4]))


def conversation_from(row: Row) -> Conversation:
    return Conversation(
        id=int(row[0]), visitor_id=int(row[1]), status=ConversationStatus(row[2]),
        assigned_to=None if row[3] is None else int(row[3]), last_seq=int(row[4]),
        agent_read_seq=int(row[5]), visitor_read_seq=int(row[6]),
        created_at=from_ms(row[7]), updated_at=from_ms(row[8]), needs_agent=bool(row[9]))


def message_from(row: Row) -> StoredMessage:
    return StoredMessage(
        conversation_id=int(row[0]), seq=int(row[1]), sender_role=Role(row[2]),
        sender_id=None if row[3] is None else int(row[3]), sender_name=row[4],
        content=row[5], created_at=from_ms(row[6]), client_id=row[7], stream_id=row[8])


# --- schema -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: each ends with ``;`` at the end of a line."""
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line.rstrip())
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current).rstrip())
    return statements


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The migrations shipped for a dialect, oldest first (works inside a zipapp)."""
    folder = resources.files("customer_service.storage.migrations") / dialect.name
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None or not entry.is_file():
            continue
        found.append(Migration(int(match.group(1)), entry.name,
                               tuple(split_statements(entry.read_text(encoding="utf-8")))))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {dialect.name} migrations share a version: {versions}")
    return found


def applied_versions(tx: Tx) -> set[int]:
    if tx.one(tx.dialect.table_exists, ("schema_migrations",)) is None:
        return set()
    return {int(row[0]) for row in tx.all("SELECT version FROM schema_migrations")}


def schema_version(tx: Tx) -> int:
    return max(applied_versions(tx), default=0)


def probe_write(tx: Tx) -> None:
    """A write that matches no row: it needs the write lock (SQLite) and the UPDATE
    privilege (MySQL), and changes nothing."""
    tx.execute("UPDATE schema_migrations SET applied_at = applied_at WHERE version < 0")


def apply_migration(tx: Tx, migration: Migration) -> None:
    for statement in migration.statements:
        tx.script(statement)
    tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
               (migration.version, now_ms()))


# --- agents -----------------------------------------------------------------

def _agent_where(tx: Tx, where: str, params: Sequence[Any]) -> Agent | None:
    row = tx.one(f"SELECT {AGENT_COLUMNS} FROM agents a WHERE {where}", params)
    return None if row is None else agent_from(row)


def _agent_named(tx: Tx, username: str) -> Agent:
    agent = _agent_where(tx, f"a.username = ?{tx.dialect.for_update}", (username,))
    if agent is None:
        raise NotFound(f"no agent named {username!r}")
    return agent


def create_agent(tx: Tx, username: str, name: str, password_hash: str) -> Agent:
    if _agent_where(tx, "a.username = ?", (username,)) is not None:
        raise Conflict(f"an agent named {username!r} exists already")
    created = now_ms()
    agent_id = tx.insert(
        "INSERT INTO agents (username, name, password_hash, disabled, created_at)"
        " VALUES (?, ?, ?, 0, ?)", (username, name, password_hash, created))
    return Agent(id=agent_id, username=username, name=name, password_hash=password_hash,
                 disabled=False, created_at=from_ms(created))


def get_agent(tx: Tx, agent_id: int) -> Agent | None:
    return _agent_where(tx, "a.id = ?", (agent_id,))


def get_agent_by_username(tx: Tx, username: str) -> Agent | None:
    return _agent_where(tx, "a.username = ?", (username,))


def list_agents(tx: Tx) -> list[Agent]:
    rows = tx.all(f"SELECT {AGENT_COLUMNS} FROM agents a ORDER BY a.id")
    return [agent_from(row) for row in rows]


def set_agent_disabled(tx: Tx, username: str, disabled: bool) -> Agent:
    agent = _agent_named(tx, username)
    tx.execute("UPDATE agents SET disabled = ? WHERE id = ?", (int(disabled), agent.id))
    if disabled:
        tx.execute("DELETE FROM agent_tokens WHERE agent_id = ?", (agent.id,))
    return Agent(id=agent.id, username=agent.username, name=agent.name,
                 password_hash=agent.password_hash, disabled=disabled,
                 created_at=agent.created_at)


def set_agent_password(tx: Tx, username: str, password_hash: str) -> Agent:
    agent = _agent_named(tx, username)
    tx.execute("UPDATE agents SET password_hash = ? WHERE id = ?", (password_hash, agent.id))
    return Agent(id=agent.id, username=agent.username, name=agent.name,
                 password_hash=password_hash, disabled=agent.disabled,
                 created_at=agent.created_at)


def add_agent_token(tx: Tx, agent_id: int, token_hash: str, label: str,
                    expires_at: datetime | None) -> None:
    if tx.one(f"SELECT id FROM agents WHERE id = ?{tx.dialect.for_update}", (agent_id,)) is None:
        raise NotFound(f"no agent with id {agent_id}")
    if tx.one("SELECT 1 FROM agent_tokens WHERE token_hash = ?", (token_hash,)) is not None:
        raise Conflict("this token exists already")
    tx.execute(
        "INSERT INTO agent_tokens (token_hash, agent_id, label, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (token_hash, agent_id, label, now_ms(),
         None if expires_at is None else to_ms(expires_at)))


def agent_for_token(tx: Tx, token_hash: str, now: datetime) -> Agent | None:
    row = tx.one(
        f"SELECT {AGENT_COLUMNS} FROM agent_tokens t JOIN agents a ON a.id = t.agent_id"
        " WHERE t.token_hash = ? AND a.disabled = 0"
        " AND (t.expires_at IS NULL OR t.expires_at > ?)", (token_hash, to_ms(now)))
    return None if row is None else agent_from(row)


def revoke_agent_token(tx: Tx, token_hash: str) -> bool:
    return tx.execute("DELETE FROM agent_tokens WHERE token_hash = ?", (token_hash,)) > 0


# --- visitors ---------------------------------------------------------------

def _visitor_where(tx: Tx, where: str, params: Sequence[Any]) -> Visitor | None:
    row = tx.one(f"SELECT {VISITOR_COLUMNS} FROM visitors v WHERE {where}", params)
    return None if row is None else visitor_from(row)


def create_visitor(tx: Tx, token_hash: str, name: str, email: str, page: str) -> Visitor:
    if tx.one("SELECT 1 FROM visitors WHERE token_hash = ?", (token_hash,)) is not None:
        raise Conflict("a visitor with this token exists already")
    created = now_ms()
    visitor_id = tx.insert(
        "INSERT INTO visitors (token_hash, name, email, page, created_at)"
        " VALUES (?, ?, ?, ?, ?)", (token_hash, name, email, page, created))
    return Visitor(id=visitor_id, name=name, email=email, page=page, created_at=from_ms(created))


def visitor_for_token(tx: Tx, token_hash: str) -> Visitor | None:
    return _visitor_where(tx, "v.token_hash = ?", (token_hash,))


def get_visitor(tx: Tx, visitor_id: int) -> Visitor | None:
    return _visitor_where(tx, "v.id = ?", (visitor_id,))


def update_visitor(tx: Tx, visitor_id: int, name: str | None, email: str | None,
                   page: str | None) -> Visitor:
    changes = [(column, value) for column, value in
               (("name", name), ("email", email), ("page", page)) if value is not None]
    if changes:
        assignments = ", ".join(f"{column} = ?" for column, _ in changes)
        tx.execute(f"UPDATE visitors SET {assignments} WHERE id = ?",
                   [value for _, value in changes] + [visitor_id])
    visitor = get_visitor(tx, visitor_id)
    if visitor is None:
        raise NotFound(f"no visitor with id {visitor_id}")
    return visitor


# --- conversations ----------------------------------------------------------

def _conversation(tx: Tx, conversation_id: int, *, lock: bool = False) -> Conversation | None:
    suffix = tx.dialect.for_update if lock else ""
    row = tx.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = ?{suffix}",
                 (conversation_id,))
    return None if row is None else conversation_from(row)


def _existing_conversation(tx: Tx, conversation_id: int) -> Conversation:
    conversation = _conversation(tx, conversation_id, lock=True)
    if conversation is None:
        raise NotFound(f"no conversation with id {conversation_id}")
    return conversation


def current_conversation(tx: Tx, visitor_id: int) -> Conversation:
    """Lock the visitor row first, so two instances cannot both create one."""
    if tx.one(f"SELECT id FROM visitors WHERE id = ?{tx.dialect.for_update}",
              (visitor_id,)) is None:
        raise NotFound(f"no visitor with id {visitor_id}")
    row = tx.one(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.visitor_id = ?"
                 " ORDER BY c.id DESC LIMIT 1", (visitor_id,))
    if row is not None:
        return conversation_from(row)
    created = now_ms()
    conversation_id = tx.insert(
        "INSERT INTO conversations (visitor_id, status, assigned_to, last_seq, agent_read_seq,"
        " visitor_read_seq, created_at, updated_at) VALUES (?, ?, NULL, 0, 0, 0, ?, ?)",
        (visitor_id, ConversationStatus.OPEN.value, created, created))
    return Conversation(id=conversation_id, visitor_id=visitor_id,
                        status=ConversationStatus.OPEN, assigned_to=None, last_seq=0,
                        agent_read_seq=0, visitor_read_seq=0, created_at=from_ms(created),
                        updated_at=from_ms(created))


def get_conversation(tx: Tx, conversation_id: int) -> Conversation | None:
    return _conversation(tx, conversation_id)


def conversations_updated_since(tx: Tx, since: datetime, limit: int) -> list[Conversation]:
    rows = tx.all(f"SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.updated_at >= ?"
                  " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?", (to_ms(since), max(0, limit)))
    return [conversation_from(row) for row in rows]


def list_conversations(tx: Tx, status: ConversationStatus | None, limit: int,
                       assigned_to: int | None = None) -> list[ConversationSummary]:
    """The last message is the row at ``seq = last_seq``: one primary-key lookup each."""
    conditions: list[str] = []
    params: list[Any] = []
    if status is not None:
        conditions.append("c.status = ?")
        params.append(status.value)
    if assigned_to is not None:
        conditions.append("c.assigned_to = ?")
        params.append(assigned_to)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = tx.all(
        f"SELECT {CONVERSATION_COLUMNS}, {VISITOR_COLUMNS}, {MESSAGE_COLUMNS}"
        " FROM conversations c JOIN visitors v ON v.id = c.visitor_id"
        " LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq"
        f" {where} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
        [*params, max(0, limit)])
    summaries: list[ConversationSummary] = []
    for row in rows:
        visitor_end = _CONVERSATION_WIDTH + _VISITOR_WIDTH
        message_row = row[visitor_end:]
        summaries.append(ConversationSummary(
            conversation=conversation_from(row[:_CONVERSATION_WIDTH]),
            visitor=visitor_from(row[_CONVERSATION_WIDTH:visitor_end]),
            last_message=None if message_row[0] is None else message_from(message_row)))
    return summaries


def set_conversation_state(tx: Tx, conversation_id: int, status: ConversationStatus,
                           assigned_to: int | None,
                           expected: tuple[ConversationStatus, int | None] | None = None
                           ) -> Conversation:
    conversation = _existing_conversation(tx, conversation_id)
    if expected is not None and (conversation.status, conversation.assigned_to) != expected:
        raise Conflict(f"conversation {conversation_id} changed meanwhile; look again")
    if assigned_to is not None and get_agent(tx, assigned_to) is None:
        raise NotFound(f"no agent with id {assigned_to}")
    updated = now_ms()
    needs_agent = conversation.needs_agent and status is not ConversationStatus.ASSIGNED
    tx.execute("UPDATE conversations SET status = ?, assigned_to = ?, updated_at = ?,"
               " needs_agent = ? WHERE id = ?",
               (status.value, assigned_to, updated, int(needs_agent), conversation_id))
    return replace(conversation, status=status, assigned_to=assigned_to,
                   updated_at=from_ms(updated), needs_agent=needs_agent)


def set_needs_agent(tx: Tx, conversation_id: int, needs_agent: bool) -> Conversation:
    """An assigned conversation is never flagged: it has its agent already."""
    conversation = _existing_conversation(tx, conversation_id)
    if needs_agent and conversation.status is ConversationStatus.ASSIGNED:
        return conversation
    if conversation.needs_agent == needs_agent:
        return conversation
    tx.execute("UPDATE conversations SET needs_agent = ? WHERE id = ?",
               (int(needs_agent), conversation_id))
    return replace(conversation, needs_agent=needs_agent)


def find_message(tx: Tx, sender_role: Role, sender_id: int | None,
                 client_id: str) -> StoredMessage | None:
    key = dedupe_key(NewMessage(0, sender_role, sender_id, "", "", client_id=client_id))
    row = tx.one(f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.dedupe_key = ?", (key,))
    return None if row is None else message_from(row)


def mark_read(tx: Tx, conversation_id: int, by_visitor: bool, seq: int) -> Conversation:
    """Reading is not activity: ``updated_at`` stays, so listings do not reorder."""
    conversation = _existing_conversation(tx, conversation_id)
    current = conversation.visitor_read_seq if by_visitor else conversation.agent_read_seq
    wanted = max(current, min(seq, conversation.last_seq))
    if wanted == current:
        return conversation
    column = "visitor_read_seq" if by_visitor else "agent_read_seq"
    tx.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (wanted, conversation_id))
    if by_visitor:
        return replace(conversation, visitor_read_seq=wanted)
    return replace(conversation, agent_read_seq=wanted)


# --- messages ---------------------------------------------------------------

def append_messages(tx: Tx, batch: Sequence[NewMessage]) -> list[AppendResult]:
    """Store a batch in order; see ``Store.append_messages`` for the contract.

    The conversation rows are locked first, all at once and in id order, so two
    MySQL instances appending to overlapping conversations wait for each other
    instead of deadlocking, and each reads the ``last_seq`` the other committed.
    Reading the dedupe keys after taking those locks means a resend committed by
    another instance is seen; a resend racing into a *different* conversation is
    caught by the unique index (the MySQL backend retries the batch).
    """
    conversation_ids = sorted({message.conversation_id for message in batch})
    last_seq: dict[int, int] = {}
    for chunk in _chunks(conversation_ids):
        for row in tx.all(f"SELECT id, last_seq FROM conversations WHERE id IN"
                          f" ({_placeholders(len(chunk))}) ORDER BY id{tx.dialect.for_update}",
                          chunk):
            last_seq[int(row[0])] = int(row[1])
    missing = [cid for cid in conversation_ids if cid not in last_seq]
    if missing:
        raise NotFound(f"no conversation with id {missing[0]}")

    keys = [dedupe_key(message) for message in batch]
    wanted_keys = sorted({key for key in keys if key is not None})
    stored: dict[str, StoredMessage] = {}
    for chunk in _chunks(wanted_keys):
        for row in tx.all(f"SELECT m.dedupe_key, {MESSAGE_COLUMNS} FROM messages m"
                          f" WHERE m.dedupe_key IN ({_placeholders(len(chunk))})", chunk):
            stored[row[0]] = message_from(row[1:])

    created = now_ms()
    created_at = from_ms(created)
    results: list[AppendResult] = []
    inserts: list[tuple[Any, ...]] = []
    for message, key in zip(batch, keys, strict=True):
        original = stored.get(key) if key is not None else None
        if original is not None:
            results.append(AppendResult(message=original, duplicate=True))
            continue
        seq = last_seq[message.conversation_id] + 1
        last_seq[message.conversation_id] = seq
        new = StoredMessage(
            conversation_id=message.conversation_id, seq=seq, sender_role=message.sender_role,
            sender_id=message.sender_id, sender_name=message.sender_name,
            content=message.content, created_at=created_at, client_id=message.client_id,
            stream_id=message.stream_id)
        if key is not None:
            stored[key] = new
        inserts.append((new.conversation_id, new.seq, new.sender_role.value, new.sender_id,
                        new.sender_name, new.content, new.client_id, new.stream_id, key,
                        created))
        results.append(AppendResult(message=new, duplicate=False))

    # One multi-row statement per chunk rather than a statement per row: SQLite's
    # driver gives up and retakes the GIL around every statement it steps, and
    # each retake waits behind the busy event loop.
    for chunk in _chunks(inserts):
        tx.execute("INSERT INTO messages (conversation_id, seq, sender_role, sender_id,"
                   " sender_name, content, client_id, stream_id, dedupe_key, created_at) VALUES "
                   + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                   [value for row in chunk for value in row])
    touched = sorted({row[0] for row in inserts})
    for ids in _chunks(touched):
        tx.execute("UPDATE conversations SET last_seq = CASE id "
                   + " ".join(["WHEN ? THEN ?"] * len(ids))
                   + f" END, updated_at = ? WHERE id IN ({_placeholders(len(ids))})",
                   [*(v for cid in ids for v in (cid, last_seq[cid])), created, *ids])
    return results


def messages_after(tx: Tx, conversation_id: int, after_seq: int, limit: int) -> list[StoredMessage]:
    rows = tx.all(f"SELECT {MESSAGE_COLUMNS} FROM messages m"
                  " WHERE m.conversation_id = ? AND m.seq > ? ORDER BY m.seq LIMIT ?",
                  (conversation_id, after_seq, max(0, limit)))
    return [message_from(row) for row in rows]


def messages_before(tx: Tx, conversation_id: int, before_seq: int | None,
                    limit: int) -> list[StoredMessage]:
    if before_seq is None:
        rows = tx.all(f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ?"
                      " ORDER BY m.seq DESC LIMIT ?", (conversation_id, max(0, limit)))
    else:
        rows = tx.all(f"SELECT {MESSAGE_COLUMNS} FROM messages m"
                      " WHERE m.conversation_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?",
                      (conversation_id, before_seq, max(0, limit)))
    return [message_from(row) for row in reversed(rows)]


def stats(tx: Tx) -> Stats:
    """``messages`` is the sum of ``last_seq``: seqs are dense and messages are never
    deleted, and it spares a full count of the largest table."""
    agents, disabled = _aggregate(tx, "SELECT COUNT(*), COALESCE(SUM(disabled), 0) FROM agents")
    (visitors,) = _aggregate(tx, "SELECT COUNT(*) FROM visitors")
    (messages,) = _aggregate(tx, "SELECT COALESCE(SUM(last_seq), 0) FROM conversations")
    by_status = {status.value: 0 for status in ConversationStatus}
    for status, count in tx.all("SELECT status, COUNT(*) FROM conversations GROUP BY status"):
        by_status[str(status)] = int(count)
    return Stats(agents=agents, agents_disabled=disabled, visitors=visitors,
                 conversations_by_status=by_status, messages=messages)


def _aggregate(tx: Tx, sql: str) -> list[int]:
    row = tx.one(sql)
    if row is None:
        raise RuntimeError(f"an aggregate returned no row: {sql}")
    return [int(value) for value in row]
