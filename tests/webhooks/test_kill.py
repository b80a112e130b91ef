"""kill -9 between the commit and the delivery: the event is in the outbox, committed with
the message, and the restarted server delivers it once the receiver is up.

A real server process (``tests/cluster/harness.py``) on SQLite; the receiver's port is
chosen first and nothing listens there until after the kill (connection refused: retried).
"""

from __future__ import annotations

from pathlib import Path

import trio

from customer_service.config import Config
from customer_service.core.webhooks import DeliveryState, WebhookDelivery
from customer_service.storage import open_store
from tests.cluster.conftest import visitor_at
from tests.cluster.harness import free_port, start_server, write_config
from tests.webhooks.receiver import Receiver, running, wait_for


async def outbox(config: Config) -> list[WebhookDelivery]:
    async with open_store(config) as store:
        return await store.list_webhook_deliveries()


async def test_an_event_survives_kill_9(tmp_path: Path) -> None:
    database = tmp_path / "cs.db"
    config_file = write_config(tmp_path / "cs.toml", {
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 3.0},
        "storage": {"sqlite_path": str(database)},
        "ai": {"enabled": False},
        "auto_replies": {"welcome": {}, "away": {}, "closed": {}},
        # retry_base 2: between two tries the row is mostly unclaimed, so the restarted
        # server rarely waits for a dead holder's lease (timeout + 10 s at worst).
        "webhooks": {"poll_interval": 0.05, "retry_base": 2.0, "retry_cap": 2.0,
                     "timeout": 1.0},
    })
    config = Config().with_changes(storage__sqlite_path=str(database))
    port = free_port()
    receiver = Receiver(port=port)
    async with open_store(config) as store:
        await store.migrate()
        await store.add_webhook(receiver.url, ("message.created",), "whsec_k")

    first = await trio.to_thread.run_sync(
        lambda: start_server(tmp_path / "one", config_file, "one", bus=None))
    try:
        async with visitor_at(first) as (vis, _):
            await vis.send(type="text", id="m1", content="kept")
            await vis.recv_type("ack", id="m1")

        async def tried() -> bool:
            return any(r.attempts >= 1 for r in await outbox(config))

        with trio.fail_after(20):
            while not await tried():
                await trio.sleep(0.05)
        await trio.to_thread.run_sync(first.kill9)
    finally:
        await trio.to_thread.run_sync(first.stop)
    (row,) = await outbox(config)
    assert row.state is DeliveryState.PENDING and receiver.requests == []
    assert "ConnectError" in row.last_error

    with running(receiver):
        second = await trio.to_thread.run_sync(
            lambda: start_server(tmp_path / "two", config_file, "two", bus=None))
        try:
            events = await wait_for(receiver.events, "the event after the restart", 30)
        finally:
            await trio.to_thread.run_sync(second.stop)
    assert [e["id"] for e in events] == [row.event_id]
    assert events[0]["data"]["text"] == "kept"
    (done,) = await outbox(config)
    assert done.state is DeliveryState.DELIVERED
