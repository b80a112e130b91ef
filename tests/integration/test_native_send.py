"""The native WebSocket's send path: frames taken during one pass of the event loop go out
together at its end (``native_ws.EndOfPass``), in order with every other write, and a
reader that does not read is still noticed and closed.

Real sockets (a socket pair) and the real codec on the other side; no server unless the
test needs a session.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from customer_service.errors import ConnectionClosed
from customer_service.server.run import Server
from customer_service.server.visitor import VisitorSession
from customer_service.transport import native_ws
from customer_service.transport.native_ws import NativeWebSocket
from customer_service.transport.wscodec import Close, Event, FrameDecoder, TextMessage


@pytest.fixture
def transport() -> str:
    return "native"


class Peer:
    """The client end of the pair: reads and decodes what the server side wrote."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.decoder = FrameDecoder("client")

    def ready(self) -> bytes:
        """What has arrived so far, without waiting (b"" when nothing)."""
        try:
            return os.read(self.sock.fileno(), 1 << 20)  # trio's sockets do not block
        except BlockingIOError:
            return b""

    async def events(self, count: int) -> list[Event]:
        got: list[Event] = []
        with trio.fail_after(10):
            while len(got) < count:
                data = await self.sock.recv(1 << 20)
                assert data, f"EOF after {got}"
                got.extend(self.decoder.feed(data))
        return got


@asynccontextmanager
async def pair(sndbuf: int | None = None) -> AsyncIterator[tuple[NativeWebSocket, Peer]]:
    a, b = trio.socket.socketpair()
    if sndbuf is not None:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    ws = NativeWebSocket(trio.SocketStream(a), "test", "t1", max_message_bytes=1 << 20)
    try:
        yield ws, Peer(b)
    finally:
        b.close()
        if not ws._stream_closed:
            await ws._stream.aclose()


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextMessage)]


async def test_frames_taken_in_one_pass_are_written_together_at_its_end() -> None:
    async with pair() as (ws, peer):
        for n in range(5):
            assert ws.send_nowait(f"frame {n}")
        assert peer.ready() == b"", "held until the end of the pass"
        await trio.sleep(0)  # the pass ends; EndOfPass writes
        data = peer.ready()
        assert texts(peer.decoder.feed(data)) == [f"frame {n}" for n in range(5)]
        assert not ws.unsent


async def test_a_direct_write_takes_the_held_frames_first() -> None:
    """``send`` (welcome, replay, the backlog) and pongs must not overtake held frames."""
    async with pair() as (ws, peer):
        ws.send_nowait("first")
        ws.send_nowait("second")
        await ws.send("third")
        ws.send_nowait("fourth")
        assert texts(await peer.events(4)) == ["first", "second", "third", "fourth"]


async def test_close_while_frames_are_held_sends_them_before_the_close_frame() -> None:
    async with pair() as (ws, peer):
        ws.send_nowait("one")
        ws.send_nowait("two")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.close, 1000, "bye")
            events = await peer.events(3)
            await peer.sock.send(native_ws.FrameEncoder("client").encode_close(1000))
        assert texts(events) == ["one", "two"]
        assert events[2] == Close(1000, "bye")
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("after the close")


async def test_held_frames_of_a_closed_socket_are_dropped_not_written_elsewhere() -> None:
    """Once the stream is closed its descriptor may belong to a new connection: held frames
    must not be written to it."""
    async with pair() as (ws, _peer):
        ws.send_nowait("held")
        await ws._stream.aclose()
        c, d = socket.socketpair()  # likely reuses the descriptor number just freed
        try:
            await trio.sleep(0)
            d.setblocking(False)
            with pytest.raises(BlockingIOError):
                d.recv(100)
        finally:
            c.close()
            d.close()


async def test_frames_held_while_the_socket_is_blocked_wait_for_flush_in_order() -> None:
    """The end-of-pass write fills the socket: the rest is reported (``on_unsent``), frames
    sent meanwhile are refused by ``send_nowait`` (the caller queues them), and ``flush``
    then writes the rest once the reader reads; nothing is lost or reordered."""
    async with pair(sndbuf=4096) as (ws, peer):
        reported = trio.Event()
        ws.on_unsent(reported.set)
        big = "x" * 1000
        sent = 40  # more than the socket takes, held in one pass (under HELD_BYTES)
        for n in range(sent):
            assert ws.send_nowait(f"{n:05d} {big}")
        assert not ws.unsent
        with trio.fail_after(5):
            await reported.wait()
        assert ws.unsent
        assert ws.send_nowait("refused while a rest waits") is False
        received: list[Event] = []

        async def read_all() -> None:
            received.extend(await peer.events(sent + 1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await ws.flush()
            await ws.send("after the rest")
        got = texts(received)
        assert got == [f"{n:05d} {big}" for n in range(sent)] + ["after the rest"]


async def test_more_than_held_bytes_in_one_pass_is_written_at_once() -> None:
    async with pair() as (ws, peer):
        text = "y" * 10_000
        count = native_ws.HELD_BYTES // 10_000 + 1
        for _ in range(count):
            ws.send_nowait(text)
        assert len(peer.ready()) > native_ws.HELD_BYTES, "written without waiting for the pass"


async def test_a_failed_end_of_pass_write_makes_flush_raise() -> None:
    async with pair() as (ws, peer):
        reported = trio.Event()
        ws.on_unsent(reported.set)
        peer.sock.close()
        ws.send_nowait("to nobody")
        with trio.fail_after(5):
            await reported.wait()
        with pytest.raises(ConnectionClosed):
            await ws.flush()
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("again")


async def no_start() -> None:
    return


async def test_a_session_whose_reader_never_reads_is_still_closed_as_slow(
        server: Server) -> None:
    """Frames held for the end of a pass still meet the kernel's backpressure: once the
    socket is full the session's backlog fills and the peer is closed (1008)."""
    async with pair(sndbuf=8192) as (ws, _peer):
        session = VisitorSession(ws, server.service)
        limit = server.config.server.outbound_queue
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run, no_start)
            await trio.sleep(0.01)
            with trio.fail_after(10):
                n = 0
                while not session.peer.kicked:
                    session.peer.push((0, 0, f"frame {n} " + "z" * 2000))
                    n += 1
                    if n % 10 == 0:
                        await trio.sleep(0)  # let passes end: end-of-pass writes run
            assert n > limit
    assert session.peer.close_code == 1008
    metrics = server.service.metrics.exposition().decode()
    assert "cs_slow_consumers_closed_total 1.0" in metrics
