"""The embedded backend: stdlib ``sqlite3`` on one connection, in one thread at a time.

Every method is exactly one unit of work carrying a whole transaction, never one
hop per statement, run by the connection's own thread (``worker_thread``), which
takes the next unit as soon as one ends. The connection is created with
``check_same_thread=False``: it is opened and closed from trio's thread pool.

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
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import trio

from customer_service.core.db_health import WriteHealth
from customer_service.errors import Conflict, StorageError
from customer_service.storage import _sql
from customer_service.storage import _sql_schema as schema
from customer_service.storage._sql import Tx
from customer_service.storage.sql_store import (
    SqlStore,
    Unit,
    given_up_error,
    run_interruptible,
)
from customer_service.storage.worker_thread import WorkerThread

logger = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5000
"""How long a transaction waits for another process (the CLI, a backup) holding the lock."""
LOCK_POLL_MS = 20
"""SQLite's own busy wait per step while a write waits for the lock; between steps
``_begin`` checks whether its caller gave up."""

CLOSE_TIMEOUT = 10.0
PING_TIMEOUT = 1.0


WAL_CHECKPOINT_PAGES = 8000
"""Pages (4 KiB) the write-ahead log may hold before a checkpoint: 32 MiB, so that a page
rewritten by many commits (a busy conversation's index leaf) is copied back once, not
once every thousand pages as by default."""


def _connect(path: Path, cache_mb: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":
            logger.warning("SQLite database %s is in journal mode %s, not WAL", path, mode)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA cache_size={-1024 * cache_mb}")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


class SqliteStore(SqlStore):
    """``Store`` on one SQLite file; build it with ``open_sqlite_store``."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._worker = WorkerThread(f"sqlite {path.name}")
        """The connection's own thread: units of work run there back to back."""
        self._unit: Unit | None = None
        """The unit of work running in the thread now (see ``_run``)."""
        self._unit_lock = threading.Lock()
        """Held to change ``_unit`` and to interrupt it: the thread moves on to the next unit
        by itself, so "is it still running?" and ``interrupt()`` must be one step."""
        self.write_health = WriteHealth()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        unit = Unit()

        def job() -> T:
            with self._unit_lock:
                self._unit = unit
            try:
                return self._transact(work, write, unit)
            finally:
                with self._unit_lock:
                    self._unit = None

        def interrupt() -> None:
            """Give up ``unit`` (its caller's deadline passed): it will not start, stops
            waiting for the write lock, and a statement it runs now is interrupted. Only
            this unit: a late interrupt must not hit the next one."""
            unit.given_up = True
            with self._unit_lock:
                conn = self._conn
                if conn is not None and self._unit is unit:
                    conn.interrupt()

        return await run_interruptible(job, run=self._worker.run, interrupt=interrupt,
                                       health=self.write_health if write else None)

    def _transact(self, work: Callable[[Tx], T], write: bool, unit: Unit) -> T:
        """One transaction, in the worker thread. ``write`` takes the write lock up front
        (BEGIN IMMEDIATE), so a transaction never fails half-way to upgrade its lock."""
        conn = self._conn
        if conn is None:
            raise StorageError("the SQLite store is closed")
        try:
            self._begin(conn, write, unit)
            committed = False
            try:
                result = work(Tx(conn.cursor(), _sql.SQLITE))
                if unit.given_up:  # the lock came just as its caller gave up: roll back
                    raise given_up_error()
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

    def _begin(self, conn: sqlite3.Connection, write: bool, unit: Unit) -> None:
        """BEGIN, waiting for another process's write lock (the CLI, a backup) at most
        ``BUSY_TIMEOUT_MS``, in steps of ``LOCK_POLL_MS``: SQLite's interrupt does not end
        its own busy wait, so a unit given up stops between two steps, before it holds the
        lock, and can no longer change anything after its caller heard ``timeout``."""
        if unit.given_up:
            raise given_up_error()
        if not write:  # WAL: a reader never waits for a writer
            conn.execute("BEGIN")
            return
        give_up_at = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        conn.execute(f"PRAGMA busy_timeout={LOCK_POLL_MS}")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if (getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY
                            or time.monotonic() >= give_up_at):
                        raise
                if unit.given_up:
                    raise given_up_error()
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            logger.warning("SQLite rollback failed on %s: %s", self._path, exc)

    async def ping(self) -> None:
        """Read the schema through a short-lived read-only connection of its own.

        The store's one connection may be held by a write waiting for another process's
        lock (the group commit waits up to ``BUSY_TIMEOUT_MS``): that database is
        degraded, not dead, and in WAL mode a reader still gets through."""
        if self._conn is None:
            raise StorageError("the SQLite store is closed")
        uri = f"{self._path.resolve().as_uri()}?mode=ro"

        def probe() -> None:
            conn = sqlite3.connect(uri, uri=True, timeout=PING_TIMEOUT)
            try:
                conn.execute("PRAGMA schema_version").fetchone()
            finally:
                conn.close()

        try:
            await trio.to_thread.run_sync(probe, abandon_on_cancel=True)
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite: {exc}") from exc

    # --- schema -------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """All pending migrations in one transaction: SQLite DDL is transactional."""
        migrations = schema.load_migrations(_sql.SQLITE)
        done = await self._run(lambda tx: schema.apply_pending(tx, migrations), write=True)
        if done:
            logger.info("SQLite %s: applied migrations %s", self._path, done)
        return done

    async def aclose(self) -> None:
        if self._conn is None:
            return
        try:
            await self._worker.run(self._close)
        finally:
            if not await self._worker.aclose(CLOSE_TIMEOUT):
                logger.warning("the SQLite thread for %s did not end", self._path)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except sqlite3.Error as exc:
            logger.warning("closing SQLite %s failed: %s", self._path, exc)


@asynccontextmanager
async def open_sqlite_store(path: Path, *, cache_mb: int = 64) -> AsyncIterator[SqliteStore]:
    """Open (creating the file when missing) and, at exit, close a SQLite store.

    The parent directory must exist. Closing is shielded (bounded by a timeout)
    so a cancelled server still checkpoints and closes the database cleanly.
    ``cache_mb`` bounds SQLite's page cache; it grows to that only as pages are used.
    """
    try:
        conn = await trio.to_thread.run_sync(_connect, path, cache_mb)
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
