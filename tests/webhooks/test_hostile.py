"""Hostile and broken receivers against the real sender (in process) on loopback.

Each test attacks one way a receiver (or the URL it was added with) can misbehave and
checks the server goes on: the chat answers, the outbox keeps a readable reason.
"""

from __future__ import annotations

import gzip
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio

from customer_service.config import Config, WebhooksConfig
from customer_service.core.webhooks import DeliveryState, WebhookDelivery
from customer_service.server import webhook_sender
from customer_service.server.run import Server
from customer_service.server.webhook_sender import (
    PREVIEW_BYTES,
    Answer,
    answer_text,
    http_client,
    post_event,
)
from customer_service.storage.base import Store
from tests.integration.helpers import visitor
from tests.webhooks.receiver import HANG, Receiver, Reply, running, wait_for
from tests.webhooks.test_delivery import all_delivered

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


# --- raw receivers: a socket that answers however it likes ---------------------------

Behaviour = Callable[[socket.socket, bytes], None]


@contextmanager
def raw_receiver(behaviour: Behaviour) -> Iterator[str]:
    """A loopback listener that reads each request's head and hands the socket to
    ``behaviour`` (in a thread, each bounded by ``RAW_LIMIT`` seconds); yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(RAW_LIMIT)
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                behaviour(conn, head)
            except OSError:
                return  # the sender hung up: what it does is the test

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


RAW_LIMIT = 10.0
TIMEOUT = 0.5


async def post(url: str) -> Answer:
    async with http_client(WebhooksConfig(timeout=TIMEOUT)) as client:
        return await post_event(client, url, SECRET, "evt_1", b"{}", timeout=TIMEOUT)


# Breaking off an answer's body leaves httpcore's body generators to the garbage collector
# (the connection itself is closed); trio warns about that. Harmless, and not ours to fix.
CUT_OFF = pytest.mark.filterwarnings("ignore:Async generator:ResourceWarning")


@CUT_OFF
async def test_a_gzip_bomb_is_not_inflated() -> None:
    """A 500 whose body is 64 MB of zeros gzipped (64 KB on the wire): the sender asks for
    identity and keeps raw bytes, so nothing is inflated (16 of these at once were GBs)."""
    bomb = gzip.compress(bytes(64 << 20), 1)
    heads: list[bytes] = []

    def answer(conn: socket.socket, head: bytes) -> None:
        heads.append(head.lower())
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Encoding: gzip\r\nContent-Length: "
                     + str(len(bomb)).encode() + b"\r\n\r\n" + bomb)

    with raw_receiver(answer) as url:
        result = await post(url)
    assert result.status == 500
    assert result.preview == bomb[:PREVIEW_BYTES]  # the raw bytes, not 512 zeros
    assert b"accept-encoding: identity" in heads[0]


@CUT_OFF
async def test_an_endless_body_is_cut_after_the_preview() -> None:
    def answer(conn: socket.socket, _head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + RAW_LIMIT
        while time.monotonic() < deadline:  # bounded: the sender hangs up long before
            conn.sendall(b"10000\r\n" + b"y" * 65536 + b"\r\n")

    with raw_receiver(answer) as url:
        result = await post(url)
    assert result.status == 200 and result.preview == b"y" * PREVIEW_BYTES


async def test_a_slow_drip_meets_one_deadline_for_the_whole_request() -> None:
    """A byte every 0.05 s: each read is quick, the whole answer is not."""
    def answer(conn: socket.socket, _head: bytes) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    with raw_receiver(answer) as url:
        result = await post(url)
    assert result.status is None and result.error == f"no answer within {TIMEOUT:g} s"


@pytest.mark.parametrize(("reply", "status", "error"), [
    (b"\x00\xffnot http\r\n\r\n", None, "RemoteProtocolError"),
    (b"", None, ("RemoteProtocolError: Server disconnected", "ReadError")),  # FIN or RST
    (b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n",
     302, ""),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n", None,
     "RemoteProtocolError"),
])
async def test_broken_answers_are_failed_attempts(reply: bytes, status: int | None,
                                                  error: str | tuple[str, ...]) -> None:
    with raw_receiver(lambda conn, _head: conn.sendall(reply)) as url:
        result = await post(url)
    assert result.status == status and result.error.startswith(error), result


async def test_a_locked_database_while_sending_loses_nothing_and_says_which_event(
        server: Server, receiver: Receiver, config: Config, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The database is locked (another SQLite connection holds the write lock) while an
    event is in flight: its outcome cannot be written; the log names the webhook, the event
    and the deadline; when the lease lapses the event is sent again and delivered."""
    monkeypatch.setattr(webhook_sender, "STORE_DEADLINE", 0.3)
    caplog.set_level(logging.WARNING, logger="customer_service.server.webhook_sender")
    entered = threading.Event()
    unlocked = threading.Event()

    def plan(number: int, _event: dict[str, Any]) -> Reply:
        if number == 1:
            entered.set()
            unlocked.wait(RAW_LIMIT)  # answered once the lock is taken
        return 200, {}, b"ok"

    receiver.plan = plan
    store = server.service.store
    hook = await store.add_webhook(receiver.url, ("message.created",), SECRET)
    async with visitor(server) as (vis, _):
        await vis.send(type="text", id="m1", content="kept")
        await vis.recv_type("ack", id="m1")
    await wait_for(entered.is_set, "the first request")
    lock = sqlite3.connect(config.storage.sqlite_path, isolation_level=None, timeout=5)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        unlocked.set()
        await wait_for(lambda: [r for r in caplog.records if "outcome not stored" in
                                r.getMessage()], "the outcome not stored")
    finally:
        lock.execute("COMMIT")
        lock.close()
    (row,) = await all_delivered(store)
    line = next(r.getMessage() for r in caplog.records if "outcome not stored" in r.getMessage())
    assert f"webhook {hook.id} event {row.event_id}" in line, line
    assert "(the database did not answer within 0.3 s)" in line, line
    assert {r.event["id"] for r in receiver.answered()} == {row.event_id}  # at least once


async def test_one_conversation_failing_waits_alone_and_a_dead_head_does_not_block_it(
        server: Server, receiver: Receiver) -> None:
    """Conversation A's events get 503 five times and its second message a 410 (a dead
    letter); B's go through meanwhile; then A's arrive, in order, without the dead one."""
    failures = 0
    a_conversation = 0

    def plan(_number: int, event: dict[str, Any]) -> Reply:
        nonlocal failures
        data = event["data"]
        if data["conversation_id"] != a_conversation:
            return 200, {}, b"ok"
        if event["type"] == "message.created" and data["text"] == "a1":
            return 410, {}, b"gone"
        if failures < 5:
            failures += 1
            return 503, {}, b"later"
        return 200, {}, b"ok"

    receiver.plan = plan
    store = server.service.store
    await store.add_webhook(receiver.url, ("message.created",), SECRET)
    async with visitor(server, name="A") as (a, a_hello), visitor(server, name="B") as (b, _):
        a_conversation = a_hello["conversation_id"]
        for n in range(4):
            await a.send(type="text", id=f"a{n}", content=f"a{n}")
            await a.recv_type("ack", id=f"a{n}")
            await b.send(type="text", id=f"b{n}", content=f"b{n}")
            await b.recv_type("ack", id=f"b{n}")
    with trio.fail_after(20):
        while True:
            rows = await store.list_webhook_deliveries(limit=100)
            if len(rows) == 8 and all(r.state is not DeliveryState.PENDING for r in rows):
                break
            await trio.sleep(0.02)
    delivered = [(e["data"]["conversation_id"], e["data"]["text"]) for e in receiver.events()]
    assert [t for c, t in delivered if c == a_conversation] == ["a0", "a2", "a3"]
    assert [t for c, t in delivered if c != a_conversation] == ["b0", "b1", "b2", "b3"]
    assert failures == 5
    (dead,) = [r for r in rows if r.state is DeliveryState.DEAD]
    assert dead.last_status == 410


async def test_removing_a_webhook_while_it_sends_and_with_a_queue(server: Server,
                                                                  receiver: Receiver) -> None:
    """Removed while one event is in flight and more are queued behind it: the answer that
    comes later is dropped, nothing of it is left, the other webhook goes on."""
    receiver.plan = lambda _number, _event: HANG
    store = server.service.store
    doomed = await store.add_webhook(receiver.url, ("message.created",), SECRET)
    with running(Receiver()) as other:
        kept = await store.add_webhook(other.url, ("message.created",), SECRET)
        async with visitor(server) as (vis, _):
            for n in range(5):
                await vis.send(type="text", id=f"m{n}", content=f"text {n}")
            await vis.recv_type("ack", id="m4")
            await wait_for(lambda: receiver.hanging, "a request in flight")
            await store.remove_webhook(doomed.id)
            receiver.release()
            await vis.send(type="text", id="m5", content="after")
            await vis.recv_type("ack", id="m5")
        rows = await all_delivered(store, 6)
        assert {r.webhook_id for r in rows} == {kept.id}
        assert [e["data"]["text"] for e in other.events()] == [
            *(f"text {n}" for n in range(5)), "after"]
    assert await store.list_webhook_deliveries(webhook_id=doomed.id) == []


@pytest.mark.parametrize(("looked", "spacing"), [
    (0.0, webhook_sender.IDLE_GAP), (0.01, 0.1), (0.2, 2.0),
    (webhook_sender.STORE_DEADLINE, 5.0), (60.0, 5.0)])
def test_a_slow_look_spaces_the_next_but_never_by_ten_times_a_lock(looked: float,
                                                                   spacing: float) -> None:
    """A look that waited out a locked database (5 s) used to pause the sender 50 s."""
    assert webhook_sender.idle_spacing(looked) == pytest.approx(spacing)


def test_a_receivers_answer_is_kept_without_control_characters() -> None:
    """What the outbox keeps (and ``deliveries`` prints) of a hostile 400: ESC, BEL and CR
    written as escapes, so it cannot move or recolour the operator's terminal."""
    kept = answer_text(Answer(400, "", None, 3, b"\x1b[31mRED\x1b[2K\rfake\x07"))
    assert kept == "HTTP 400: \\x1b[31mRED\\x1b[2K\\rfake\\x07"


async def test_https_to_a_plain_http_port_says_it_is_tls() -> None:
    """httpx's ConnectError has no text for a TLS failure: the reason is its cause's."""
    with running(Receiver()) as plain:
        result = await post(plain.url.replace("http://", "https://"))
    assert result.status is None
    assert result.error.startswith("ConnectError: SSLError: [SSL"), result.error
