"""``campaigns run`` with a bus publishes each delivered message as the servers would: a
one-off batch (number 0) on the deployment's channel, whose ``message`` frame carries the
campaign's id. A private redis-server; a raw subscriber reads what was published."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import trio

from customer_service.campaigns.publish import open_bus_publisher
from customer_service.config import BusConfig
from customer_service.core.bus_events import MessageEvent, decode_batch
from customer_service.core.models import AppendResult, Role, StoredMessage
from tests.cluster.harness import RedisProcess


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "redis closed the connection"
        data += chunk
    return data


def _read_line(sock: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        line += _read_exactly(sock, 1)
    return line[:-2]


def _read_reply(sock: socket.socket) -> object:
    """One RESP2 reply (arrays, bulk strings, integers, simple strings)."""
    line = _read_line(sock)
    kind, rest = line[:1], line[1:]
    if kind == b"*":
        return [_read_reply(sock) for _ in range(int(rest))]
    if kind == b"$":
        value = _read_exactly(sock, int(rest) + 2)[:-2]
        return value
    if kind == b":":
        return int(rest)
    return rest


async def test_campaign_run_publishes_its_messages_on_the_bus(redis: RedisProcess) -> None:
    config = BusConfig(redis_url=redis.url, namespace="cs-test")
    channel = b"cs-test:bus"
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as subscriber:
        subscriber.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))
        assert _read_reply(subscriber) == [b"subscribe", channel, 1]

        message = StoredMessage(conversation_id=7, seq=3, sender_role=Role.AI, sender_id=None,
                                sender_name="Assistant", content="Hi Ann, spring is here",
                                created_at=datetime.now(UTC), client_id="campaign:4:9",
                                campaign_id=4)
        async with open_bus_publisher(config, "deployment-x", "cli-test") as publisher:
            await publisher.deliver(AppendResult(message, duplicate=False, assigned_to=None))
        assert publisher.published == 1 and publisher.dropped == 0

        kind, got_channel, payload = await trio.to_thread.run_sync(_read_reply, subscriber)  # type: ignore[misc]
    assert (kind, got_channel) == (b"message", channel)
    batch = decode_batch(payload)  # type: ignore[arg-type]
    assert (batch.deployment, batch.origin, batch.number) == ("deployment-x", "cli-test", 0)
    (event,) = batch.events
    assert isinstance(event, MessageEvent)
    assert (event.conversation_id, event.seq) == (7, 3)
    frame = json.loads(event.text)
    assert frame["type"] == "message" and frame["campaign_id"] == 4
    assert frame["content"] == "Hi Ann, spring is here"
