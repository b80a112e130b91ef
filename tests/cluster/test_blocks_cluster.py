"""Blocks across instances: a block made on one instance (REST) or by ``blocks add`` (the
CLI, publishing on the bus) closes the visitor's socket on another at once, and that
instance refuses the visitor's next hello."""

from __future__ import annotations

import subprocess

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from tests.cluster.conftest import Cluster, visitor_at
from tests.cluster.harness import cli, environment
from tests.integration.helpers import Client, open_ws


async def closed_blocked(client: Client) -> None:
    error = await client.recv_type("error", timeout=5)
    assert error["error"] == "blocked"
    with pytest.raises(ConnectionClosed) as closed, trio.fail_after(5):
        while True:
            await client.recv(timeout=5)
    assert (closed.value.reason.code, closed.value.reason.reason) == (1008, "blocked")


async def refused(url: str, **hello: object) -> str:
    async with open_ws(f"{url}/ws/visitor") as ws:
        client = Client(ws)
        await client.send(type="hello", **hello)
        frame = await client.recv()
    return str(frame.get("error") or frame["type"])


async def test_a_block_on_one_instance_closes_the_visitor_on_another(cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    _, token = await cluster.make_agent("alice")
    async with visitor_at(b) as (at_b, welcome):
        started = trio.current_time()
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{a.url}/api/v1/blocks",
                                     headers={"authorization": f"Bearer {token}"},
                                     json={"visitor_id": welcome["visitor_id"],
                                           "duration": "1h"})
        assert answer.status_code == 201, answer.text
        await closed_blocked(at_b)
        assert trio.current_time() - started < 3  # the bus, not the 5 s reload
    assert await refused(b.ws, visitor_token=welcome["visitor_token"]) == "blocked"
    assert await refused(a.ws, visitor_token=welcome["visitor_token"]) == "blocked"
    async with httpx.AsyncClient() as http:
        block_id = answer.json()["block"]["id"]
        removed = await http.delete(f"{b.url}/api/v1/blocks/{block_id}",
                                    headers={"authorization": f"Bearer {token}"})
    assert removed.status_code == 200
    with trio.fail_after(3):
        while await refused(a.ws, visitor_token=welcome["visitor_token"]) != "welcome":
            await trio.sleep(0.1)


async def test_blocks_add_from_the_command_line_closes_sockets_everywhere(
        cluster: Cluster) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    async with visitor_at(a) as (at_a, _), visitor_at(b) as (at_b, _):
        added = await trio.to_thread.run_sync(lambda: subprocess.run(
            [*cli(), f"--config={a.config}", "blocks", "add", "--ip", "127.0.0.0/8", "--for",
             "10m"], capture_output=True, text=True, env=environment(), timeout=30,
            check=False))
        assert added.returncode == 0, added.stderr
        assert "Blocked network 127.0.0.0/8 (block 1)" in added.stdout
        # The CLI writes only the database: each instance finds the block at its next reload
        # (every 5 s), so each socket is told within closed_blocked's deadlines.
        await closed_blocked(at_a)
        await closed_blocked(at_b)
    assert await refused(b.ws) == "blocked"
