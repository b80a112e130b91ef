"""Schemathesis over the whole REST API of a running server process (SQLite), as an agent,
a read API token and a write API token: no 500, every status documented, every body,
header and content type as the OpenAPI document (``GET /api/v1/openapi.json``) says.

Bounded: ``MAX_EXAMPLES`` cases per operation and credential, no Hypothesis deadline,
no stored examples database.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.cluster.harness import ServerProcess, cli, environment, write_config
from tests.integration.helpers import Client, open_ws

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
"""No 500; every status, content type, header and body as documented. (Not "schema-valid
data is accepted": a shortcut or a label has rules the schema only describes in words.)"""
KINDS = ("agent", "read", "write")


def _run_cli(config: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([*cli(), f"--config={config}", *args], input=stdin, env=environment(),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("schemathesis")
    config = write_config(folder / "customer-service.toml", {
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 3.0,
                   "rate_limit_per_second": 1000.0, "rate_limit_burst": 2000,
                   "rate_limit_strikes": 1000},
        "storage": {"sqlite_path": str(folder / "cs.db")},
        "ai": {"enabled": False},
        "auth": {"scrypt_n": 2**14},
        "log": {"level": "warning"},
    })
    _run_cli(config, "agents", "add", "alice", "--password-stdin", stdin="correct horse\n")
    tokens = {"agent": _run_cli(config, "agents", "token", "alice"),
              "read": _run_cli(config, "tokens", "create", "reader", "--scope", "read"),
              "write": _run_cli(config, "tokens", "create", "writer", "--scope", "write")}
    (folder / "contacts.csv").write_text("external_id,name,email,tags\nc1,Ann,ann@example.com,vip\n")
    _run_cli(config, "contacts", "import", str(folder / "contacts.csv"))
    _run_cli(config, "canned", "add", "hi", "Hello {visitor.name|there}")
    server = ServerProcess(folder, config, "api")
    try:
        server.wait_ready(bus=None)
        trio.run(_seed_conversation, server.ws)
        yield server.url, tokens
    finally:
        server.stop()


async def _seed_conversation(ws_base: str) -> None:
    """Conversation 1, with a visitor's message: the operations on ids read something."""
    async with open_ws(f"{ws_base}/ws/visitor") as ws:
        client = Client(ws)
        await client.send(type="hello", name="Vera", email="vera@example.com")
        await client.recv_type("welcome")
        await client.send(type="text", id="v1", content="Where is my refund?")
        await client.recv_type("ack", id="v1")


@pytest.mark.parametrize("kind", KINDS)
def test_the_api_keeps_to_its_description(api_server: tuple[str, dict[str, str]],
                                          kind: str) -> None:
    url, tokens = api_server
    document = httpx.get(f"{url}/api/v1/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document).exclude(
        path="/api/v1/logout")  # it would revoke the agent's token for the rest of the run
    headers = {"Authorization": f"Bearer {tokens[kind]}"}
    seeded = httpx.get(f"{url}/api/v1/conversations/1/messages", headers=headers, timeout=10)
    assert "Where is my refund?" in [m["content"] for m in seeded.json()["messages"]]
    session = requests.Session()
    failures: list[str] = []
    operations = 0
    for found in schema.get_all_operations():
        operation = found.ok()
        operations += 1

        @given(case=operation.as_strategy() | operation.as_strategy(
            generation_mode=schemathesis.GenerationMode.NEGATIVE))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=url, session=session, headers=headers,
                                   checks=CHECKS)

        try:
            check()
        except AssertionError as exc:  # every failing operation is reported
            failures.append(f"{operation.label}: {exc}")
    every = sum(len(methods) for methods in document["paths"].values())
    assert operations == every - 1  # all but the logout
    assert not failures, "\n\n".join(failures)
