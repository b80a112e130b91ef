"""The embedded backend: stdlib ``sqlite3`` on one connection, in one thread at a time.

Every method is exactly one hop ``trio.to_thread.run_sync(..., limiter=CapacityLimiter(1))``
carrying a whole transaction, never one hop per statement. The connection is
created with ``check_same_thread=False`` because trio's worker threads are
pooled: the limiter, not the thread identity, guarantees one user at a time.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A
committed transaction survives a crash of the process (the WAL is written
before COMMIT returns), but the last transactions before a power loss or an
OS crash may be rolled back, because the WAL is only fsynced at checkpoints.
``synchronous=FULL`` would survive power loss too, at the cost of an fsync per
commit; group commit makes that cost per batch, not per message, should a
deployment need it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import trio

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
from customer_service.errors import Conflict, StorageError
from customer_service.storage import _sql
from customer_service.storage._sql import Tx

logger = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
"""How long a statement waits for another process (the CLI, a backup) holding the lock."""

CLOSE_TIMEOUT = 10.0


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            logger.warning("SQLite database %s is in journal mode %s, not WAL", path, mode)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


class SqliteStore:
    """``Store`` on one SQLite file; build it with ``open_sqlite_store``."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._limiter = trio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        return await trio.to_thread.run_sync(self._transact, work, write, limiter=self._limiter)

    def _transact(self, work: Callable[[Tx], T], write: bool) -> T:
        """One transaction, in the worker thread. ``write`` takes the write lock up front
        (BEGIN IMMEDIATE), so a transaction never fails half-way to upgrade its lock."""
        conn = self._conn
        if conn is None:
            raise StorageError("the SQLite store is closed")
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            committed = False
            try:
                result = work(Tx(conn.cursor(), _sql.SQLITE))
                conn.execute("COMMIT")
                committed = True
            finally:
                if not committed:
                    self._rollback(conn)
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"conflicting write: {exc}") from exc
        except sqlite3.Error as exc:
            logger.warning("SQLite error on %s: %s", self._path, exc)
            raise StorageError(f"SQLite: {exc}") from exc
        return result

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            logger.warning("SQLite rollback failed on %s: %s", self._path, exc)

    # --- schema -------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """All pending migrations in one transaction: SQLite DDL is transactional."""
        migrations = _sql.load_migrations(_sql.SQLITE)

        def work(tx: Tx) -> list[int]:
            applied = _sql.applied_versions(tx)
            done: list[int] = []
            for migration in migrations:
                if migration.version not in applied:
                    _sql.apply_migration(tx, migration)
                    done.append(migration.version)
            return done

        done = await self._run(work, write=True)
        if done:
            logger.info("SQLite %s: applied migrations %s", self._path, done)
        return done

    async def schema_version(self) -> int:
        return await self._run(_sql.schema_version, write=False)

    async def ping(self) -> None:
        def work(tx: Tx) -> None:
            tx.one("SELECT 1")

        await self._run(work, write=False)

    # --- agents -------------------------------------------------------------

    async def create_agent(self, username: str, name: str, password_hash: str) -> Agent:
        return await self._run(
            lambda tx: _sql.create_agent(tx, username, name, password_hash), write=True)

    async def get_agent(self, agent_id: int) -> Agent | None:
        return await self._run(lambda tx: _sql.get_agent(tx, agent_id), write=False)

    async def get_agent_by_username(self, username: str) -> Agent | None:
        return await self._run(lambda tx: _sql.get_agent_by_username(tx, username), write=False)

    async def list_agents(self) -> list[Agent]:
        return await self._run(_sql.list_agents, write=False)

    async def set_agent_disabled(self, username: str, disabled: bool) -> Agent:
        return await self._run(
            lambda tx: _sql.set_agent_disabled(tx, username, disabled), write=True)

    async def set_agent_password(self, username: str, password_hash: str) -> Agent:
        return await self._run(
            lambda tx: _sql.set_agent_password(tx, username, password_hash), write=True)

    async def add_agent_token(self, agent_id: int, token_hash: str, label: str,
                              expires_at: datetime | None) -> None:
        await self._run(
            lambda tx: _sql.add_agent_token(tx, agent_id, token_hash, label, expires_at),
            write=True)

    async def agent_for_token(self, token_hash: str, now: datetime) -> Agent | None:
        return await self._run(lambda tx: _sql.agent_for_token(tx, token_hash, now), write=False)

    # --- visitors -----------------------------------------------------------

    async def create_visitor(self, token_hash: str, name: str, email: str,
                             page: str) -> Visitor:
        return await self._run(
            lambda tx: _sql.create_visitor(tx, token_hash, name, email, page), write=True)

    async def visitor_for_token(self, token_hash: str) -> Visitor | None:
        return await self._run(lambda tx: _sql.visitor_for_token(tx, token_hash), write=False)

    async def update_visitor(self, visitor_id: int, name: str | None, email: str | None,
                             page: str | None) -> Visitor:
        return await self._run(
            lambda tx: _sql.update_visitor(tx, visitor_id, name, email, page), write=True)

    async def get_visitor(self, visitor_id: int) -> Visitor | None:
        return await self._run(lambda tx: _sql.get_visitor(tx, visitor_id), write=False)

    # --- conversations ------------------------------------------------------

    async def current_conversation(self, visitor_id: int) -> Conversation:
        return await self._run(lambda tx: _sql.current_conversation(tx, visitor_id), write=True)

    async def get_conversation(self, conversation_id: int) -> Conversation | None:
        return await self._run(lambda tx: _sql.get_conversation(tx, conversation_id),
                               write=False)

    async def list_conversations(self, status: ConversationStatus | None = None,
                                 limit: int = 100, assigned_to: int | None = None
                                 ) -> list[ConversationSummary]:
        return await self._run(
            lambda tx: _sql.list_conversations(tx, status, limit, assigned_to), write=False)

    async def set_conversation_state(self, conversation_id: int, status: ConversationStatus,
                                     assigned_to: int | None,
                                     expected: tuple[ConversationStatus, int | None] | None = None
                                     ) -> Conversation:
        return await self._run(
            lambda tx: _sql.set_conversation_state(tx, conversation_id, status, assigned_to,
                                                   expected),
            write=True)

    async def find_message(self, sender_role: Role, sender_id: int | None,
                           client_id: str) -> StoredMessage | None:
        return await self._run(
            lambda tx: _sql.find_message(tx, sender_role, sender_id, client_id), write=False)

    async def mark_read(self, conversation_id: int, by_visitor: bool, seq: int) -> Conversation:
        return await self._run(
            lambda tx: _sql.mark_read(tx, conversation_id, by_visitor, seq), write=True)

    async def set_needs_agent(self, conversation_id: int, needs_agent: bool) -> Conversation:
        return await self._run(
            lambda tx: _sql.set_needs_agent(tx, conversation_id, needs_agent), write=True)

    # --- messages -----------------------------------------------------------

    async def append_messages(self, batch: Sequence[NewMessage]) -> list[AppendResult]:
        if not batch:
            return []
        items = list(batch)
        return await self._run(lambda tx: _sql.append_messages(tx, items), write=True)

    async def messages_after(self, conversation_id: int, after_seq: int,
                             limit: int = 1000) -> list[StoredMessage]:
        return await self._run(
            lambda tx: _sql.messages_after(tx, conversation_id, after_seq, limit), write=False)

    async def messages_before(self, conversation_id: int, before_seq: int | None,
                              limit: int = 50) -> list[StoredMessage]:
        return await self._run(
            lambda tx: _sql.messages_before(tx, conversation_id, before_seq, limit),
            write=False)

    async def stats(self) -> Stats:
        return await self._run(_sql.stats, write=False)

    async def aclose(self) -> None:
        if self._conn is None:
            return
        await trio.to_thread.run_sync(self._close, limiter=self._limiter)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except sqlite3.Error as exc:
            logger.warning("closing SQLite %s failed: %s", self._path, exc)


@asynccontextmanager
async def open_sqlite_store(path: Path) -> AsyncIterator[SqliteStore]:
    """Open (creating the file when missing) and, at exit, close a SQLite store.

    The parent directory must exist. Closing is shielded (bounded by a timeout)
    so a cancelled server still checkpoints and closes the database cleanly.
    """
    try:
        conn = await trio.to_thread.run_sync(_connect, path)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open SQLite database {path}: {exc}") from exc
    store = SqliteStore(conn, path)
    try:
        yield store
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True) as scope:
            await store.aclose()
        if scope.cancelled_caught:
            logger.warning("closing SQLite %s timed out", path)
