"""Fixtures for the storage suites: every test runs against SQLite and MariaDB.

MariaDB tests use a fresh database per test (``cs_test_<random>``), dropped
afterwards; they are marked ``mysql`` and skipped when no server answers at
127.0.0.1:3306 (deselect them with ``-m 'not mysql'``).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pymysql
import pytest
import trio

from customer_service.config import StorageConfig
from customer_service.storage.base import Store
from customer_service.storage.mysql import open_mysql_store
from customer_service.storage.sqlite import open_sqlite_store

MYSQL = StorageConfig(backend="mysql", mysql_host="127.0.0.1", mysql_port=3306,
                      mysql_user="root", mysql_password="", mysql_pool_size=4)

OpenStore = Callable[[], AbstractAsyncContextManager[Store]]


def _server_connection() -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(host=MYSQL.mysql_host, port=MYSQL.mysql_port, user=MYSQL.mysql_user,
                           password=MYSQL.mysql_password, connect_timeout=3)


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
