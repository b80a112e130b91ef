"""Visitor/agent pairs that chat the way the widget and the dashboard do, and check what
they saw: every ``seq`` of their conversation exactly once, in order, with no gap.

A visitor reconnects when its socket drops (to the URL the test says, since the instance
it was on may be dead), resumes with ``last_seq`` and resends every text not acked yet
with the same ``id``. An agent (``queue=off``) accepts its pair's conversation and
answers each visitor message.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pymysql
import trio
from trio_websocket import ConnectionClosed, HandshakeError

from tests.cluster.harness import MYSQL
from tests.integration.helpers import open_ws

_ids = itertools.count(1)
DROPS = (ConnectionClosed, HandshakeError, OSError, trio.TooSlowError)
RESEND_ERRORS = ("timeout", "unavailable", "internal")
"""Errors after which a text is sent again with the same ``id`` (docs/protocol.md)."""


@dataclass
class Seen:
    """The ``message`` frames one client received for its conversation."""

    seqs: list[int] = field(default_factory=list)

    def add(self, frame: dict[str, Any]) -> None:
        self.seqs.append(frame["seq"])

    @property
    def newest(self) -> int:
        return max(self.seqs, default=0)

    def problems(self, last_seq: int) -> list[str]:
        """What is wrong with what was seen, given the conversation ends at ``last_seq``."""
        found: list[str] = []
        duplicates = sorted({s for s in self.seqs if self.seqs.count(s) > 1})
        if duplicates:
            found.append(f"duplicates {duplicates}")
        missing = sorted(set(range(1, last_seq + 1)) - set(self.seqs))
        if missing:
            found.append(f"missing {missing}")
        if self.seqs != sorted(self.seqs):
            found.append("out of order")
        return found


@dataclass
class VisitorDriver:
    """One visitor: sends ``count`` texts, one at a time, resuming across reconnects."""

    name: str
    url: Callable[[], str]
    """Where to (re)connect: a function, so the test can point it elsewhere mid-run."""
    count: int
    pace: float = 0.02
    token: str | None = None
    conversation_id: int = 0
    seen: Seen = field(default_factory=Seen)
    acked: dict[str, int] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    reconnects: int = 0
    sent: int = 0
    ready: trio.Event = field(default_factory=trio.Event)
    """Set once the first welcome names the conversation."""
    accepted: trio.Event = field(default_factory=trio.Event)
    """Set by the agent once it accepted the conversation: only then does the visitor write."""
    done: bool = False

    async def run(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            while not self.done:
                try:
                    await self._session()
                except* DROPS:
                    self.reconnects += 1
                    await trio.sleep(0.1)

    async def _session(self) -> None:
        async with open_ws(self.url()) as ws:
            hello: dict[str, Any] = {"type": "hello", "name": self.name}
            if self.token:
                hello.update(visitor_token=self.token, last_seq=self.seen.newest)
            await ws.send_message(json.dumps(hello))
            async with trio.open_nursery() as nursery:
                welcome = json.loads(await ws.get_message())
                assert welcome["type"] == "welcome", welcome
                self.token = welcome["visitor_token"]
                self.conversation_id = welcome["conversation_id"]
                self.ready.set()
                nursery.start_soon(self._read, ws)
                for client_id, content in list(self.pending.items()):  # resend, same ids
                    await ws.send_message(json.dumps(
                        {"type": "text", "id": client_id, "content": content}))
                await self.accepted.wait()
                while self.sent < self.count:
                    await trio.sleep(self.pace)
                    while self.pending:  # one in flight, as a person types
                        await trio.sleep(0.005)
                    client_id = f"{self.name}-{next(_ids)}"
                    content = f"{self.name} says {self.sent}"
                    self.pending[client_id] = content
                    self.sent += 1
                    await ws.send_message(json.dumps(
                        {"type": "text", "id": client_id, "content": content}))
                # Stay until every answer arrived: the agent's "joined" note, then each
                # message and its answer.
                while self.pending or self.seen.newest < 1 + 2 * self.count:
                    await trio.sleep(0.01)
                self.done = True
                nursery.cancel_scope.cancel()

    async def _read(self, ws: Any) -> None:
        while True:
            frame = json.loads(await ws.get_message())
            if frame["type"] == "message":
                self.seen.add(frame)
            elif frame["type"] == "ack":
                self.pending.pop(frame["id"], None)
                self.acked[frame["id"]] = frame["seq"]
            elif frame["type"] == "error" and frame.get("id") in self.pending:
                # unavailable/timeout: resend with the same id (idempotent)
                await trio.sleep(0.05)
                await ws.send_message(json.dumps({"type": "text", "id": frame["id"],
                                                  "content": self.pending[frame["id"]]}))


@dataclass
class AgentDriver:
    """One agent socket (``queue=off``) that accepts one conversation and answers each
    visitor message in it."""

    url: str
    token: str
    visitor: VisitorDriver
    seen: Seen = field(default_factory=Seen)
    acked: dict[str, int] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    """Answers sent and not acked yet (client id → content)."""
    answered: int = 0

    async def run(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            async with open_ws(f"{self.url}/ws/agent?token={self.token}&queue=off") as ws:
                welcome = json.loads(await ws.get_message())
                assert welcome["type"] == "welcome", welcome
                await self.visitor.ready.wait()
                cid = self.visitor.conversation_id
                await ws.send_message(json.dumps({"type": "accept", "id": f"acc-{cid}",
                                                  "conversation_id": cid}))
                while True:
                    frame = json.loads(await ws.get_message())
                    if frame["type"] == "ack" and frame["id"] == f"acc-{cid}":
                        self.visitor.accepted.set()
                    elif frame["type"] == "ack":
                        self.pending.pop(frame["id"], None)
                        self.acked[frame["id"]] = frame["seq"]
                    elif (frame["type"] == "error" and frame.get("id") in self.pending
                          and frame["error"] in RESEND_ERRORS):
                        # Resend with the same id, as the dashboard does (agent-conn.js):
                        # stored once, whichever attempt committed.
                        await trio.sleep(0.05)
                        await self._send(ws, cid, frame["id"], self.pending[frame["id"]])
                    elif frame["type"] == "message" and frame["conversation_id"] == cid:
                        self.seen.add(frame)
                        if frame["sender"]["role"] == "visitor":
                            self.answered += 1
                            client_id = f"ag-{cid}-{next(_ids)}"
                            self.pending[client_id] = f"re: {frame['content']}"
                            await self._send(ws, cid, client_id, self.pending[client_id])

    @staticmethod
    async def _send(ws: Any, cid: int, client_id: str, content: str) -> None:
        await ws.send_message(json.dumps({"type": "text", "id": client_id,
                                          "conversation_id": cid, "content": content}))


def stored_messages(database: str) -> list[tuple[int, int, str, str | None]]:
    """Every stored message: (conversation_id, seq, sender_role, client_id)."""
    conn = pymysql.connect(database=database, connect_timeout=5, **MYSQL)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT conversation_id, seq, sender_role, client_id FROM messages"
                           " ORDER BY conversation_id, seq")
            return [(int(r[0]), int(r[1]), str(r[2]), r[3]) for r in cursor.fetchall()]
    finally:
        conn.close()


def check_exactly_once(database: str, acked: dict[str, int], conversation_of: dict[str, int]
                       ) -> dict[int, int]:
    """Every acked (client id → seq) is stored once, at that seq; seqs are dense. Returns
    each conversation's last seq."""
    rows = stored_messages(database)
    by_client: dict[str, list[tuple[int, int]]] = {}
    last: dict[int, int] = {}
    for cid, seq, _role, client_id in rows:
        assert seq == last.get(cid, 0) + 1, f"conversation {cid}: seq {seq} after {last.get(cid)}"
        last[cid] = seq
        if client_id is not None:
            by_client.setdefault(client_id, []).append((cid, seq))
    for client_id, seq in acked.items():
        stored = by_client.get(client_id, [])
        assert stored == [(conversation_of[client_id], seq)], (client_id, seq, stored)
    assert all(len(places) == 1 for places in by_client.values())
    return last


async def until_done(visitors: list[VisitorDriver], agents: list[AgentDriver],
                     limit: float) -> None:
    """Wait until every visitor finished and every agent saw the whole conversation too
    (the visitor may see the last answer before the agent who wrote it does); else fail
    saying what each stuck pair saw."""
    with trio.move_on_after(limit):
        while not all(v.done and g.seen.newest >= 1 + 2 * v.count and not g.pending
                      for v, g in zip(visitors, agents, strict=True)):
            await trio.sleep(0.05)
        return
    stuck = [f"{v.name} conv {v.conversation_id}: sent {v.sent}, pending {list(v.pending)}, "
             f"reconnects {v.reconnects}, visitor saw {v.seen.seqs}, agent saw {g.seen.seqs}"
             f" (answered {g.answered}, pending {list(g.pending)})"
             for v, g in zip(visitors, agents, strict=True)
             if not (v.done and g.seen.newest >= 1 + 2 * v.count and not g.pending)]
    raise AssertionError("pairs did not finish:\n" + "\n".join(stuck[:10]))
