from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from customer_service.config import Config
from customer_service.server.run import Server, open_server

TRANSPORTS = ("hypercorn", "native")

NO_AUTO_REPLIES = {"auto_replies__welcome": {}, "auto_replies__away": {},
                   "auto_replies__closed": {}}
"""Tests of other features count seqs from the visitor's first message: no welcome, away
or closed message is stored before or after it (tests/integration/test_hours.py turns
them on)."""


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Every integration test runs once per transport: ``[hypercorn]`` and ``[native]``."""
    return str(request.param)


@pytest.fixture
def config(tmp_path: Path, transport: str) -> Config:
    return Config().with_changes(
        server__host="127.0.0.1", server__port=0, server__shutdown_timeout=3.0,
        server__transport=transport, storage__sqlite_path=str(tmp_path / "cs.db"),
        auth__scrypt_n=2**14,  # the least accepted: logins in milliseconds, not 0.3 s
        **NO_AUTO_REPLIES)


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()
