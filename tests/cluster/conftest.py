"""Fixtures for the cluster tests: real server processes on MariaDB and a private Redis.

They are marked ``cluster`` and skipped when MariaDB (127.0.0.1:3306) or redis-server is
missing.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from customer_service import auth
from customer_service.config import Config, StorageConfig
from customer_service.core.models import Agent
from customer_service.storage import open_store
from tests.cluster.harness import (
    RedisProcess,
    ServerProcess,
    cluster_config,
    fresh_database,
    mysql_available,
    private_redis,
    start_server,
)
from tests.integration.helpers import Client, open_ws


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster_requirements() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    if not mysql_available():
        pytest.skip("no MariaDB/MySQL server at 127.0.0.1:3306")


@pytest.fixture
def mysql_db(cluster_requirements: None) -> Iterator[str]:
    with fresh_database() as name:
        yield name


@pytest.fixture
def redis(tmp_path: Path, cluster_requirements: None) -> Iterator[RedisProcess]:
    with private_redis(tmp_path / "redis") as server:
        yield server


class Cluster:
    """Server processes sharing one database and one Redis; stopped at the end of a test."""

    def __init__(self, folder: Path, database: str, redis: RedisProcess) -> None:
        self.folder = folder
        self.database = database
        self.redis = redis
        self.servers: list[ServerProcess] = []
        self.config = Config().with_changes(storage=StorageConfig(
            backend="mysql", mysql_database=database, mysql_pool_size=2))

    def config_file(self, name: str, **overrides: dict[str, Any]) -> Path:
        return cluster_config(self.folder / name, self.database, self.redis.url, **overrides)

    async def start(self, name: str, *, healthy_bus: str | None = "ok",
                    **overrides: dict[str, Any]) -> ServerProcess:
        """Start an instance; ``overrides`` are config sections; it is ready once /healthz
        says ``"bus": healthy_bus``."""
        config = self.config_file(name, **overrides)
        server: ServerProcess = await trio.to_thread.run_sync(
            lambda: start_server(self.folder / name, config, name, bus=healthy_bus))
        self.servers.append(server)
        return server

    async def make_agent(self, username: str) -> tuple[Agent, str]:
        """An agent and a login token for it, made straight in the shared database."""
        async with open_store(self.config) as store:
            await store.migrate()
            agent = await store.create_agent(username, username.title(),
                                             auth.hash_password("correct horse", n=2**4))
            token = auth.new_token()
            await store.add_agent_token(agent.id, auth.token_hash(token), "test", None)
        return agent, token

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def logs(self) -> str:
        return "\n".join(f"===== {s.name} =====\n{s.log_text()[-6000:]}" for s in self.servers)


@pytest.fixture
async def cluster(tmp_path: Path, mysql_db: str, redis: RedisProcess,
                  request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    group = Cluster(tmp_path, mysql_db, redis)
    try:
        yield group
    finally:
        await trio.to_thread.run_sync(group.stop)
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(group.logs())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@asynccontextmanager
async def visitor_at(server: ServerProcess, **hello: Any) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    async with open_ws(f"{server.ws}/ws/visitor") as ws:
        client = Client(ws)
        await client.send(type="hello", **hello)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        yield client, welcome


@asynccontextmanager
async def agent_at(server: ServerProcess, token: str, *, queue: bool = True
                   ) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    suffix = "" if queue else "&queue=off"
    async with open_ws(f"{server.ws}/ws/agent?token={token}{suffix}") as ws:
        client = Client(ws)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        yield client, welcome
