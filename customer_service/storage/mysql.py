"""The production backend: MySQL or MariaDB through PyMySQL, in worker threads.

A small pool of ``mysql_pool_size`` connections lives in a bounded trio
channel; a unit of work takes a free connection (waiting at most
``ACQUIRE_TIMEOUT``), runs its whole transaction in one thread hop under that
connection's own ``CapacityLimiter(1)`` and puts the connection back.

Several server instances may share the database: sequence numbers come from
the conversation rows locked with ``SELECT ... FOR UPDATE``, several always in
id order and by primary key only (see ``_sql_chat.append_messages``); a
deadlock is retried after a short random pause, and so is a resend racing in
from another instance, caught by the unique dedupe index, which then reads as
a duplicate. ``migrate`` takes a named lock (see there).

Lost connections (a restarted database, an idle timeout) are replaced
transparently. Reads run in autocommit mode and are simply run again on a
fresh connection. A write starts with ``BEGIN``: when that first round trip
fails nothing has run yet, so it too is retried on a fresh connection. A
connection lost later, mid-transaction, fails only that request (retrying a
half-done, maybe committed, unit is not safe; clients resend with their ids)
and is replaced before its next use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import math
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeAlias, TypeVar

import pymysql
import pymysql.cursors
import trio
from pymysql.constants import CR, ER

from customer_service.config import StorageConfig
from customer_service.core.db_health import WriteHealth
from customer_service.errors import Conflict, DatabaseMissing, StorageError
from customer_service.storage import _sql
from customer_service.storage import _sql_schema as schema
from customer_service.storage._sql import Tx
from customer_service.storage.sql_store import (
    SqlStore,
    Unit,
    given_up_error,
    run_interruptible,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
Connection: TypeAlias = "pymysql.connections.Connection[pymysql.cursors.Cursor]"

ACQUIRE_TIMEOUT = 10.0
"""Seconds to wait for a free pooled connection before failing with StorageError."""
CLOSE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10
IO_TIMEOUT = 30
"""Socket read/write timeout: a hung server fails a request instead of a thread forever."""
LOCK_WAIT_TIMEOUT = 10
"""Seconds a statement waits for a row lock (InnoDB) or a table lock (``LOCK TABLES``, DDL;
MySQL's default for those is a year): work nobody waits for any more (the group commit)
is not stuck behind a lock for longer than this."""
KILL_CONNECT_TIMEOUT = 3
PING_TIMEOUT = 2
COLLECT_EVERY = 1.0
"""Seconds between full garbage collections while connections are being replaced."""
ATTEMPTS = 3
RETRY_PAUSE = 0.01
"""Up to this many seconds (times the attempt number, at random) before running a
transaction again after a deadlock or a duplicate key: transactions retried in
lock-step would collide again."""
MIGRATION_LOCK = "customer_service.migrate"
MIGRATION_LOCK_TIMEOUT = 60
MIGRATION_DDL_LOCK_WAIT = 300
SQL_MODE = ("STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
            "NO_ENGINE_SUBSTITUTION")

_DRIVER_ERRORS = (pymysql.MySQLError, OSError)
_LOST = {CR.CR_CONN_HOST_ERROR, CR.CR_SERVER_GONE_ERROR, CR.CR_SERVER_LOST,
         CR.CR_SERVER_LOST_EXTENDED}

Mode: TypeAlias = Literal["read", "write", "schema"]
READ: Mode = "read"
"""Autocommit statements; safe to run again after a lost connection."""
WRITE: Mode = "write"
"""One transaction."""
SCHEMA: Mode = "schema"
"""Autocommit statements that change things (migrations: DDL commits implicitly anyway)."""


def _connection_lost(exc: BaseException) -> bool:
    return (isinstance(exc, (pymysql.err.InterfaceError, OSError))
            or _error_code(exc) in _LOST)


def _error_code(exc: BaseException) -> int | None:
    if exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def _connect(cfg: StorageConfig, database: str | None) -> Connection:
    return pymysql.connect(
        host=cfg.mysql_host, port=cfg.mysql_port, user=cfg.mysql_user,
        password=cfg.mysql_password, database=database, charset="utf8mb4",
        autocommit=True, connect_timeout=CONNECT_TIMEOUT, read_timeout=IO_TIMEOUT,
        write_timeout=IO_TIMEOUT, sql_mode=SQL_MODE,
        init_command=(f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT},"
                      f" SESSION lock_wait_timeout = {LOCK_WAIT_TIMEOUT}"))


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _connect_creating_database(cfg: StorageConfig, create: bool = True) -> Connection:
    """Connect to the configured database, creating it first when it does not exist
    (``create=False``: raise ``DatabaseMissing`` instead).

    Connecting first and creating only on "unknown database" lets an account
    without the CREATE privilege use a database made for it.
    """
    try:
        return _connect(cfg, cfg.mysql_database)
    except pymysql.err.OperationalError as exc:
        if _error_code(exc) != ER.BAD_DB_ERROR:
            raise
        if not create:
            raise DatabaseMissing(f"the MySQL database {cfg.mysql_database} does not exist on "
                                  f"{cfg.mysql_host}:{cfg.mysql_port}") from None
    server = _connect(cfg, None)
    try:
        with server.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {_quote_identifier(cfg.mysql_database)}"
                           " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        logger.info("created MySQL database %s", cfg.mysql_database)
    finally:
        server.close()
    return _connect(cfg, cfg.mysql_database)


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"
                                                  ).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def _give_freed_memory_back() -> None:
    """Return the pages freed by a collection to the system. The connections' buffers were
    allocated in the worker threads' malloc arenas, which glibc keeps otherwise (measured:
    30 MB after 180 replaced connections, back to the start-up size with this)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except _DRIVER_ERRORS as exc:
        logger.debug("closing a MySQL connection failed: %s", exc)


@dataclass(eq=False, slots=True)
class _Pooled:
    conn: Connection
    limiter: trio.CapacityLimiter
    suspect: bool = False
    unit: Unit | None = None
    """The unit of work running on this connection now (see ``_run_mode``)."""


class _StaleConnection(Exception):
    """The first round trip of a unit of work failed: nothing ran, so it may be retried."""


class MysqlStore(SqlStore):
    """``Store`` on MySQL/MariaDB; build it with ``open_mysql_store``."""

    def __init__(self, cfg: StorageConfig) -> None:
        self._cfg = cfg
        self._send, self._receive = trio.open_memory_channel[_Pooled](max(1, cfg.mysql_pool_size))
        self._size = 0
        self._closed = False
        self.write_health = WriteHealth()
        self._collected_at = -math.inf

    def __repr__(self) -> str:
        cfg = self._cfg
        return (f"MysqlStore({cfg.mysql_user}@{cfg.mysql_host}:{cfg.mysql_port}"
                f"/{cfg.mysql_database})")

    async def _open_pool(self, first: Connection) -> None:
        self._add(first)
        for _ in range(self._cfg.mysql_pool_size - 1):
            self._add(await trio.to_thread.run_sync(_connect, self._cfg, self._cfg.mysql_database))

    def _add(self, conn: Connection) -> None:
        self._send.send_nowait(_Pooled(conn, trio.CapacityLimiter(1)))
        self._size += 1

    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        return await self._run_mode(work, WRITE if write else READ)

    async def _run_mode(self, work: Callable[[Tx], T], mode: Mode) -> T:
        if self._closed:
            raise StorageError("the MySQL store is closed")
        try:
            with trio.fail_after(ACQUIRE_TIMEOUT):
                pooled = await self._receive.receive()
        except trio.TooSlowError as exc:
            raise StorageError(
                f"no free MySQL connection within {ACQUIRE_TIMEOUT:g} s") from exc
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            raise StorageError("the MySQL store is closed") from exc
        unit = Unit()

        def job() -> T:
            pooled.unit = unit
            try:
                return self._transact(pooled, work, mode, unit)
            finally:
                pooled.unit = None

        try:
            return await run_interruptible(job, run=partial(trio.to_thread.run_sync,
                                                            abandon_on_cancel=True,
                                                            limiter=pooled.limiter),
                                           interrupt=lambda: self._give_up(pooled, unit),
                                           health=self.write_health if mode != READ else None)
        finally:
            try:
                self._send.send_nowait(pooled)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                logger.warning("MySQL connection returned after the store closed; dropped")

    def _give_up(self, pooled: _Pooled, unit: Unit) -> None:
        """Give up ``unit`` on ``pooled`` (its caller's deadline passed), so that it can no
        longer change anything after its caller heard ``timeout``:

        * it will not start, nor retry on a fresh connection (``_transact`` checks);
        * if it runs now, its socket is shut down: the worker thread stops waiting at once,
          and a transaction whose COMMIT was not sent yet is rolled back by the server (the
          connection is replaced before its next use);
        * a ``KILL QUERY`` from a connection of its own, in a thread of its own, ends the
          statement on the server too, so it stops holding or waiting for locks. If that
          connection cannot be opened (``max_user_connections``), the server ends the
          statement when the lock wait times out (``LOCK_WAIT_TIMEOUT``) and rolls back.

        Only this unit's connection: nothing is shut down or killed unless ``unit`` is the
        one running on it, and after the shutdown the connection is replaced, so the kill
        cannot reach a later unit's statement."""
        unit.given_up = True
        if pooled.unit is not unit:
            return
        conn = pooled.conn
        thread_id = int(conn.thread_id())  # type: ignore[no-untyped-call]
        sock = getattr(conn, "_sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                logger.debug("shutting down MySQL connection %s: %s", thread_id, exc)
        cfg = self._cfg

        def kill() -> None:
            try:
                killer = pymysql.connect(
                    host=cfg.mysql_host, port=cfg.mysql_port, user=cfg.mysql_user,
                    password=cfg.mysql_password, connect_timeout=KILL_CONNECT_TIMEOUT,
                    read_timeout=KILL_CONNECT_TIMEOUT, write_timeout=KILL_CONNECT_TIMEOUT)
                try:
                    with killer.cursor() as cursor:
                        cursor.execute(f"KILL QUERY {thread_id}")
                finally:
                    _close_quietly(killer)
                logger.info("MySQL connection %s: its statement passed its caller's deadline;"
                            " ended it", thread_id)
            except _DRIVER_ERRORS as exc:
                # ER_NO_SUCH_THREAD: the server noticed the closed socket first.
                logger.info("MySQL connection %s: could not end its statement past the "
                            "deadline (%s); the server ends it within %d s", thread_id,
                            str(exc), LOCK_WAIT_TIMEOUT)

        trio.lowlevel.start_thread_soon(kill, lambda _outcome: None, name="mysql kill query")

    def _transact(self, pooled: _Pooled, work: Callable[[Tx], T], mode: Mode,
                  unit: Unit) -> T:
        """Run ``work`` in the worker thread, retrying what is safe to retry.

        A deadlock, or a duplicate dedupe key from a resend racing in another
        instance, rolls the whole transaction back, so running it again is safe;
        so is running a unit on a fresh connection when the old one was found
        dead before anything ran, and running a read again after any lost
        connection.
        """
        attempt = 1
        while True:
            if unit.given_up:
                raise given_up_error()
            try:
                self._ensure_alive(pooled)
                return self._attempt(pooled.conn, work, mode, unit)
            except _StaleConnection as stale:
                pooled.suspect = True
                cause = stale.__cause__
                if attempt < ATTEMPTS:
                    logger.info("MySQL connection lost (%s); reconnecting", cause)
                    attempt += 1
                    continue
                logger.warning("MySQL unreachable: %s", cause)
                raise StorageError(f"MySQL: {cause}") from cause
            except pymysql.err.IntegrityError as exc:
                if _error_code(exc) == ER.DUP_ENTRY and attempt < ATTEMPTS:
                    logger.info("MySQL duplicate key, retrying: %s", exc)
                    time.sleep(random.uniform(0, RETRY_PAUSE * attempt))
                    attempt += 1
                    continue
                raise Conflict(f"conflicting write: {exc.args[-1]}") from exc
            except _DRIVER_ERRORS as exc:
                if _error_code(exc) == ER.LOCK_DEADLOCK and attempt < ATTEMPTS:
                    logger.info("MySQL deadlock, retrying: %s", exc)
                    time.sleep(random.uniform(0, RETRY_PAUSE * attempt))
                    attempt += 1
                    continue
                pooled.suspect = True
                if mode == READ and _connection_lost(exc) and attempt < ATTEMPTS:
                    logger.info("MySQL connection lost (%s); reconnecting", exc)
                    attempt += 1
                    continue
                logger.warning("MySQL error: %s", exc)
                raise StorageError(f"MySQL: {exc}") from exc

    def _ensure_alive(self, pooled: _Pooled) -> None:
        """Replace a connection that failed last time and does not answer a ping."""
        if not pooled.suspect:
            return
        try:
            pooled.conn.ping()
        except _DRIVER_ERRORS:
            _close_quietly(pooled.conn)
            pooled.conn = _connect(self._cfg, self._cfg.mysql_database)
            self._collect_garbage_soon()
        pooled.suspect = False

    def _collect_garbage_soon(self) -> None:
        """Run a full garbage collection, at most every ``COLLECT_EVERY`` seconds, after a
        connection was replaced.

        A lost connection leaves reference cycles behind (the driver's errors, their
        tracebacks and frames, the batch being written, PyMySQL's connection and result
        pointing at each other), and each holds on to buffers. The server tunes the
        collector to run full collections rarely (``server.run.tune_garbage_collector``),
        so connections killed every 0.3 s grew the process by about 10 MB a second until
        a full collection came: 50 MB to 250 MB in 30 s, all given back by one
        ``gc.collect()``. Runs in the worker thread, but holds the interpreter's lock for
        its few milliseconds, which is why it is rate-limited."""
        now = time.monotonic()
        if now - self._collected_at < COLLECT_EVERY:
            return
        found = gc.collect()
        _give_freed_memory_back()
        self._collected_at = time.monotonic()
        logger.info("MySQL connection replaced; a full garbage collection freed %d objects in "
                    "%.0f ms", found, (self._collected_at - now) * 1000)

    @staticmethod
    def _attempt(conn: Connection, work: Callable[[Tx], T], mode: Mode, unit: Unit) -> T:
        """Reads run in autocommit mode (one statement, no BEGIN/COMMIT round trips);
        writes in a transaction whose BEGIN doubles as the liveness probe."""
        if mode != READ:
            try:
                if mode == WRITE:
                    conn.begin()
                else:
                    conn.ping()
            except _DRIVER_ERRORS as exc:
                raise _StaleConnection from exc
        with conn.cursor() as cursor:
            if mode != WRITE:
                return work(Tx(cursor, _sql.MYSQL))
            committed = False
            try:
                result = work(Tx(cursor, _sql.MYSQL))
                if unit.given_up:  # its caller heard timeout meanwhile: roll back
                    raise given_up_error()
                conn.commit()
                committed = True
            finally:
                if not committed:
                    try:
                        conn.rollback()
                    except _DRIVER_ERRORS as exc:
                        logger.warning("MySQL rollback failed: %s", exc)
            return result

    async def ping(self) -> None:
        """``SELECT 1`` on a short-lived connection of its own, not a pooled one: under load
        during a lock every pooled connection may be busy with calls waiting for their
        deadline, which is a degraded database (``write_health``), not a dead one."""
        if self._closed:
            raise StorageError("the MySQL store is closed")
        cfg = self._cfg

        def probe() -> None:
            conn = pymysql.connect(
                host=cfg.mysql_host, port=cfg.mysql_port, user=cfg.mysql_user,
                password=cfg.mysql_password, database=cfg.mysql_database,
                connect_timeout=PING_TIMEOUT, read_timeout=PING_TIMEOUT,
                write_timeout=PING_TIMEOUT)
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
            finally:
                _close_quietly(conn)

        try:
            await trio.to_thread.run_sync(probe, abandon_on_cancel=True)
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"MySQL: {exc}") from None

    # --- schema -------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply pending migrations under a named lock (``GET_LOCK``), so instances
        starting together take turns: the one that waited finds nothing left to do.

        MySQL DDL commits implicitly, so a migration that stopped half-way (a process
        died before its version row) is run again from its first statement; each
        statement whose effect is in the schema already is skipped (the rule is in
        ``_sql_schema``), and the version row is written last.
        """
        migrations = schema.load_migrations(_sql.MYSQL)

        def work(tx: Tx) -> list[int]:
            locked = tx.one("SELECT GET_LOCK(?, ?)", (MIGRATION_LOCK, MIGRATION_LOCK_TIMEOUT))
            if locked is None or locked[0] != 1:
                raise StorageError(f"another instance held the migration lock for"
                                   f" {MIGRATION_LOCK_TIMEOUT} s")
            # DDL waits for running transactions to let go of the table: longer than
            # requests may wait for a lock.
            tx.execute(f"SET SESSION lock_wait_timeout = {MIGRATION_DDL_LOCK_WAIT}")
            try:
                return schema.apply_pending(tx, migrations)
            finally:
                try:
                    tx.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_TIMEOUT}")
                    tx.one("SELECT RELEASE_LOCK(?)", (MIGRATION_LOCK,))
                except _DRIVER_ERRORS as exc:   # the session's end releases it anyway
                    logger.warning("releasing the MySQL migration lock failed: %s", exc)

        done = await self._run_mode(work, SCHEMA)
        if done:
            logger.info("MySQL %s: applied migrations %s", self._cfg.mysql_database, done)
        await self.backfill_search_index()  # rows stored before migration 12 (search)
        return done

    async def aclose(self) -> None:
        """Wait (bounded) for in-flight work to hand its connection back, then close all."""
        if self._closed:
            return
        self._closed = True
        collected: list[_Pooled] = []
        with trio.move_on_after(CLOSE_TIMEOUT):
            while len(collected) < self._size:
                collected.append(await self._receive.receive())
        if len(collected) < self._size:
            logger.warning("closing MySQL store: %d connections still busy after %g s",
                           self._size - len(collected), CLOSE_TIMEOUT)
        self._receive.close()
        for pooled in collected:
            await trio.to_thread.run_sync(_close_quietly, pooled.conn, limiter=pooled.limiter)


@asynccontextmanager
async def open_mysql_store(cfg: StorageConfig, *, create: bool = True
                           ) -> AsyncIterator[MysqlStore]:
    """Connect the pool (creating the database when missing, unless ``create`` is False:
    then ``DatabaseMissing``) and close it at exit."""
    store = MysqlStore(cfg)
    try:
        try:
            first = await trio.to_thread.run_sync(_connect_creating_database, cfg, create)
            await store._open_pool(first)
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"cannot connect to MySQL at {cfg.mysql_host}:{cfg.mysql_port}"
                               f" (database {cfg.mysql_database}): {exc}") from exc
        yield store
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await store.aclose()
