"""Deadlines and graceful shutdown: nothing half-done, nothing acked lost."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed

from customer_service.config import Config
from customer_service.core.models import AppendResult, NewMessage
from customer_service.server.run import open_server
from customer_service.storage import Store, open_store
from tests.integration.helpers import refused_upgrade, visitor


class GatedStore:
    """Delegates to a real store, but a batch containing 'hold' waits for ``gate``."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.gate = trio.Event()
        self.holding = trio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def append_messages(self, batch: Sequence[NewMessage]) -> list[AppendResult]:
        if any("hold" in m.content for m in batch):
            self.holding.set()
            await self.gate.wait()
        return await self._inner.append_messages(batch)


async def test_timeouts_store_a_queued_message_never_and_a_started_one_exactly_once(
        config: Config) -> None:
    config = config.with_changes(server__message_timeout=0.3)
    gated: list[GatedStore] = []

    def wrap(inner: Store) -> Store:
        gated.append(GatedStore(inner))
        return gated[0]  # type: ignore[return-value]

    async with open_server(config, wrap_store=wrap) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        store = gated[0]
        async with visitor(srv) as (first, first_welcome), visitor(srv) as (second, second_welcome):
            await first.send(type="text", id="h1", content="please hold")
            await store.holding.wait()
            await second.send(type="text", id="q1", content="queued behind it")
            assert (await first.recv_type("error", id="h1"))["error"] == "timeout"
            assert (await second.recv_type("error", id="q1"))["error"] == "timeout"
            store.gate.set()
            with trio.fail_after(3):
                while not await store.messages_after(first_welcome["conversation_id"], 0):
                    await trio.sleep(0.01)
            assert await store.messages_after(second_welcome["conversation_id"], 0) == []

            await first.send(type="text", id="h1", content="please hold")
            resent = await first.recv_type("ack", id="h1")
            await second.send(type="text", id="q1", content="queued behind it")
            await second.recv_type("ack", id="q1")
        held = await store.messages_after(first_welcome["conversation_id"], 0)
        queued = await store.messages_after(second_welcome["conversation_id"], 0)
        assert [(m.seq, m.content) for m in held] == [(resent["seq"], "please hold")]
        assert [m.content for m in queued] == ["queued behind it"]
        srv.shutdown()


async def test_graceful_shutdown_closes_with_1001_and_keeps_acked_messages(
        config: Config, tmp_path: Path) -> None:
    acked: list[tuple[int, int]] = []
    closes: list[int] = []

    async def chatter(srv: Any, n: int, ready: trio.Event) -> None:
        async with visitor(srv) as (vis, welcome):
            ready.set()
            try:
                for i in range(10_000):
                    await vis.send(type="text", id=f"c{n}-{i}", content=f"msg {i}")
                    frame = await vis.recv_type("ack")
                    acked.append((welcome["conversation_id"], frame["seq"]))
            except ConnectionClosed as closed:
                closes.append(closed.reason.code)

    async with open_server(config) as srv:
        async with trio.open_nursery() as nursery:
            await nursery.start(srv.serve)
            async with trio.open_nursery() as clients:
                for n in range(5):
                    ready = trio.Event()
                    clients.start_soon(chatter, srv, n, ready)
                    await ready.wait()
                await trio.sleep(0.5)
                started = trio.current_time()
                srv.shutdown()
        assert trio.current_time() - started < config.server.shutdown_timeout + 1
    assert closes == [1001] * 5
    assert acked
    async with open_store(config) as store:
        stored = set()
        for cid in {cid for cid, _ in acked}:
            stored |= {(cid, m.seq) for m in await store.messages_after(cid, 0, 100_000)}
    assert set(acked) <= stored


async def test_connections_during_shutdown_are_refused_with_503(config: Config) -> None:
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        srv.hub.draining = True
        refused = await refused_upgrade(srv, "/ws/visitor")
        assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
        nursery.cancel_scope.cancel()
