"""How a session hands frames to its connection: straight away, or through a bounded backlog."""

from __future__ import annotations

from collections.abc import Callable

import trio

from customer_service.server.run import Server
from customer_service.server.visitor import VisitorSession


class ScriptedConnection:
    """A Connection whose immediate path accepts only the frames ``takes`` allows."""

    remote = "test"

    def __init__(self, takes: list[bool] | None = None, stuck: bool = False) -> None:
        self.takes = takes
        self.stuck = stuck
        self.written: list[str] = []
        self.closed: int | None = None
        self.unsent = False

    async def receive(self) -> str:
        await trio.sleep_forever()
        raise AssertionError

    async def send(self, text: str) -> None:
        if self.stuck:
            await trio.sleep_forever()
        await trio.sleep(0.001)
        self.written.append(text)

    def send_nowait(self, text: str) -> bool:
        if self.stuck or not self.takes or not self.takes.pop(0):
            return False
        self.written.append(text)
        return True

    async def flush(self) -> None:
        return

    def on_unsent(self, callback: Callable[[], None]) -> None:
        return

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = code


async def no_start() -> None:
    return


async def test_frames_keep_their_order_across_the_immediate_and_queued_paths(
        server: Server) -> None:
    conn = ScriptedConnection(takes=[True, False, True, True, False, True] * 10)
    session = VisitorSession(conn, server.service)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run, no_start)
        await trio.sleep(0.01)
        for n in range(60):
            assert session.peer.push((0, 0, f"frame {n}"))
        with trio.fail_after(3):
            while len(conn.written) < 60:
                await trio.sleep(0.01)
        session.peer.kick(1000, "done")
    assert conn.written == [f"frame {n}" for n in range(60)]


async def test_a_peer_that_never_reads_is_closed_when_its_backlog_is_full(
        server: Server) -> None:
    conn = ScriptedConnection(stuck=True)
    session = VisitorSession(conn, server.service)
    limit = server.config.server.outbound_queue
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run, no_start)
        await trio.sleep(0.01)
        taken = [session.peer.push((0, 0, f"frame {n}")) for n in range(limit + 5)]
    assert taken.count(True) == limit, "the backlog holds outbound_queue frames, then refuses"
    assert session.peer.close_code == 1008 and conn.closed == 1008
    metrics = server.service.metrics.exposition().decode()
    assert "cs_slow_consumers_closed_total 1.0" in metrics
