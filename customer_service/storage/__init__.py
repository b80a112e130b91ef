"""Storage: the ``Store`` protocol and the backend the configuration chooses.

``open_store`` only connects. Schema migrations are the caller's to run
(``await store.migrate()``; the server does it on start-up), so that a command
such as ``db status`` can look at a database without changing it; with
``create=False`` a missing database (MySQL) or file (SQLite) is not created
either but raises ``DatabaseMissing``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from customer_service.config import Config
from customer_service.errors import ConfigError, DatabaseMissing
from customer_service.storage.base import Store

__all__ = ["Store", "open_store"]


@asynccontextmanager
async def open_store(config: Config, *, create: bool = True) -> AsyncIterator[Store]:
    """Open the configured backend; close it at exit. Backends are imported lazily.
    ``create=False``: raise ``DatabaseMissing`` rather than create the database."""
    backend = config.storage.backend
    if backend == "sqlite":
        from customer_service.storage.sqlite import open_sqlite_store  # noqa: PLC0415

        path = config.resolve_path(config.storage.sqlite_path)
        if not create and not path.exists():  # connecting would create an empty file
            raise DatabaseMissing(f"the SQLite file {path} does not exist")
        async with open_sqlite_store(path, cache_mb=config.storage.sqlite_cache_mb) as store:
            yield store
    elif backend == "mysql":
        from customer_service.storage.mysql import open_mysql_store  # noqa: PLC0415

        async with open_mysql_store(config.storage, create=create) as mysql_store:
            yield mysql_store
    else:
        raise ConfigError(f"unknown storage backend {backend!r}", key="storage.backend")
