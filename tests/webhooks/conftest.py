"""Fixtures for the webhook tests: a receiver on loopback and an in-process server whose
sender polls often and retries after fractions of a second."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from customer_service.config import Config
from customer_service.server.run import Server, open_server
from tests.integration.conftest import NO_AUTO_REPLIES
from tests.webhooks.receiver import Receiver, running

QUICK = {"webhooks__poll_interval": 0.05, "webhooks__retry_base": 0.05,
         "webhooks__retry_cap": 2.0, "webhooks__timeout": 1.0}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running(Receiver()) as started:
        yield started


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config().with_changes(
        server__host="127.0.0.1", server__port=0, server__shutdown_timeout=3.0,
        server__transport="native", storage__sqlite_path=str(tmp_path / "cs.db"),
        auth__scrypt_n=2**14, **NO_AUTO_REPLIES, **QUICK)


@pytest.fixture
async def server(config: Config) -> AsyncIterator[Server]:
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()
