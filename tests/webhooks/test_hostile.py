"""Hostile and broken receivers against the real sender (in process) on loopback.

Each test attacks one way a receiver (or the URL it was added with) can misbehave and
checks the server goes on: the chat answers, the outbox keeps a readable reason.
"""

from __future__ import annotations

import trio

from customer_service.core.webhooks import WebhookDelivery
from customer_service.server.run import Server
from customer_service.storage.base import Store
from tests.integration.helpers import visitor

SECRET = "whsec_test"


async def first_attempted(store: Store, webhook_id: int) -> WebhookDelivery:
    """The first row of ``webhook_id`` with an attempt written (within 20 s)."""
    with trio.fail_after(20):
        while True:
            rows = await store.list_webhook_deliveries(webhook_id=webhook_id, limit=1000)
            tried = [r for r in rows if r.attempts >= 1]
            if tried:
                return tried[0]
            await trio.sleep(0.02)


async def test_a_url_httpx_cannot_send_is_a_failed_attempt_not_a_crash(server: Server) -> None:
    """Hosts that pass the URL check but not IDNA encoding (an empty label, a 64-character
    label, an emoji): each attempt fails with a reason, and the server keeps serving."""
    store = server.service.store
    hooks = [await store.add_webhook(url, ("message.created",), SECRET) for url in (
        "http://a..b/hook", "http://" + "a" * 64 + ".example/hook", "http://\U0001f4a9.example/")]
    async with visitor(server, name="Ann") as (ann, _):
        await ann.send(type="text", id="m1", content="hello")
        await ann.recv_type("ack", id="m1")
        for hook in hooks:
            row = await first_attempted(store, hook.id)
            assert row.last_status is None and row.last_error, row
        await ann.send(type="text", id="m2", content="still here")
        await ann.recv_type("ack", id="m2")
