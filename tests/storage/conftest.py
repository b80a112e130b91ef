"""Fixtures for the storage suites: every test runs against SQLite and MariaDB.

MariaDB tests use a fresh database per test (``cs_test_<random>``), dropped
afterwards; they are marked ``mysql`` and skipped when no server answers at
127.0.0.1:3306 (deselect them with ``-m 'not mysql'``). Tests that only make
sense on MySQL (several pools on one database, migrations re-run after a crash)
take ``mysql_databases`` instead of ``backend``.
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pymysql
import pytest
import trio

from customer_service.config import StorageConfig
from customer_service.storage.base import Store
from customer_service.storage.mysql import open_mysql_store
from customer_service.storage.sqlite import SqliteStore, open_sqlite_store

MYSQL = StorageConfig(backend="mysql", mysql_host="127.0.0.1", mysql_port=3306,
                      mysql_user="root", mysql_password="", mysql_pool_size=4)

OpenStore = Callable[[], AbstractAsyncContextManager[Store]]


def _server_connection(database: str | None = None
                       ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(host=MYSQL.mysql_host, port=MYSQL.mysql_port, user=MYSQL.mysql_user,
                           password=MYSQL.mysql_password, database=database, connect_timeout=3,
                           autocommit=True)


def _drop_database(name: str) -> None:
    conn = _server_connection()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture(scope="session")
def mysql_available() -> bool:
    try:
        _server_connection().close()
    except pymysql.MySQLError:
        return False
    return True


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def backend(request: pytest.FixtureRequest, mysql_available: bool) -> str:
    name: str = request.param
    if name == "mysql" and not mysql_available:
        pytest.skip("no MariaDB/MySQL server at 127.0.0.1:3306")
    return name


@pytest.fixture
async def mysql_database(backend: str) -> AsyncIterator[str]:
    """A fresh database name; for MySQL the database is dropped after the test."""
    name = f"cs_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        if backend == "mysql":
            await trio.to_thread.run_sync(_drop_database, name)


@pytest.fixture
def open_test_store(backend: str, tmp_path: Path, mysql_database: str) -> OpenStore:
    """Opens the backend's store on this test's database (call it again to reopen)."""
    cfg = dataclasses.replace(MYSQL, mysql_database=mysql_database)

    @asynccontextmanager
    async def opener() -> AsyncIterator[Store]:
        if backend == "sqlite":
            async with open_sqlite_store(tmp_path / "test.db") as sqlite_store:
                yield sqlite_store
        else:
            async with open_mysql_store(cfg) as mysql_store:
                yield mysql_store

    return opener


@pytest.fixture
async def fresh_store(open_test_store: OpenStore) -> AsyncIterator[Store]:
    """A store on an empty database, not migrated."""
    async with open_test_store() as opened:
        yield opened


@pytest.fixture
async def store(fresh_store: Store) -> Store:
    """A migrated store on an empty database."""
    await fresh_store.migrate()
    return fresh_store


AdminSql = Callable[..., list[tuple[object, ...]]]


@pytest.fixture
def mysql_admin() -> Iterator[AdminSql]:
    """Runs statements as root on plain connections (one per database, autocommit),
    beside the store under test: ``mysql_admin(database, sql, *params)`` returns the
    rows of the last statement (``sql`` may be a list of statements)."""
    connections: dict[str | None, pymysql.connections.Connection[pymysql.cursors.Cursor]] = {}

    def run(database: str | None, sql: str | list[str], *params: object
            ) -> list[tuple[object, ...]]:
        if database not in connections:
            connections[database] = _server_connection(database)
        with connections[database].cursor() as cursor:
            for statement in [sql] if isinstance(sql, str) else sql:
                cursor.execute(statement, params or None)
            return list(cursor.fetchall())

    try:
        yield run
    finally:
        for conn in connections.values():
            conn.close()


@pytest.fixture
async def mysql_databases(mysql_available: bool
                          ) -> AsyncIterator[Callable[[], StorageConfig]]:
    """Gives a config for a new, not yet created database at each call; all are dropped
    after the test. Skips the test when no server answers."""
    if not mysql_available:
        pytest.skip("no MariaDB/MySQL server at 127.0.0.1:3306")
    names: list[str] = []

    def new() -> StorageConfig:
        names.append(f"cs_test_{secrets.token_hex(6)}")
        return dataclasses.replace(MYSQL, mysql_database=names[-1])

    try:
        yield new
    finally:
        for name in names:
            await trio.to_thread.run_sync(_drop_database, name)


@pytest.fixture
def open_read_only_store(backend: str, tmp_path: Path, mysql_database: str,
                         mysql_admin: AdminSql) -> Iterator[OpenStore]:
    """Opens another store on this test's database (``open_test_store``'s) that may
    read but not write. SQLite: through a read-only connection (``mode=ro``; tests
    run as root, which file modes do not stop). MySQL: as a user granted only
    SELECT on the database, dropped after the test."""
    user = f"cs_ro_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    if backend == "mysql":
        mysql_admin(None, [f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                           f"GRANT SELECT ON `{mysql_database}`.* TO '{user}'@'%'"])

    @asynccontextmanager
    async def opener() -> AsyncIterator[Store]:
        if backend == "sqlite":
            path = tmp_path / "test.db"
            conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False, isolation_level=None)
            store = SqliteStore(conn, path)
            try:
                yield store
            finally:
                await store.aclose()
        else:
            cfg = dataclasses.replace(MYSQL, mysql_database=mysql_database, mysql_user=user,
                                      mysql_password=password, mysql_pool_size=1)
            async with open_mysql_store(cfg) as mysql_store:
                yield mysql_store

    try:
        yield opener
    finally:
        if backend == "mysql":
            mysql_admin(None, f"DROP USER IF EXISTS '{user}'@'%'")
