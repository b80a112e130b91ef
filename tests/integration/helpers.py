"""Clients for integration tests: real WebSocket and HTTP against the server on port 0."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from customer_service import auth
from customer_service.core.models import Agent
from customer_service.server.run import Server

_ids = itertools.count(1)


def next_id(prefix: str = "m") -> str:
    return f"{prefix}{next(_ids)}"


class Client:
    """A JSON-frame client over trio-websocket."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        """Every frame received, in arrival order."""
        self.backlog: list[dict[str, Any]] = []
        """Frames received but skipped by ``recv_type``, returned by later calls first."""

    async def send(self, **frame: Any) -> None:
        await self.ws.send_message(json.dumps(frame))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send_message(data)

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return await self._read(timeout)

    async def _read(self, timeout: float) -> dict[str, Any]:
        with trio.fail_after(timeout):
            frame: dict[str, Any] = json.loads(await self.ws.get_message())
        self.seen.append(frame)
        return frame

    async def recv_type(self, kind: str, timeout: float = 5,
                        where: Callable[[dict[str, Any]], bool] | None = None,
                        **match: Any) -> dict[str, Any]:
        """The first frame of ``kind`` whose fields equal ``match`` and that satisfies
        ``where``; frames skipped stay in the backlog for later calls."""

        def fits(frame: dict[str, Any]) -> bool:
            return (frame["type"] == kind and all(frame.get(k) == v for k, v in match.items())
                    and (where is None or where(frame)))

        for index, frame in enumerate(self.backlog):
            if fits(frame):
                return self.backlog.pop(index)
        with trio.fail_after(timeout):
            while True:
                frame = await self._read(timeout)
                if fits(frame):
                    return frame
                self.backlog.append(frame)

    async def nothing_more(self, wait: float = 0.3) -> None:
        """Assert that no frame arrives within ``wait`` seconds."""
        with trio.move_on_after(wait):
            frame = await self.ws.get_message()
            raise AssertionError(f"unexpected frame: {frame}")


async def refused_upgrade(server: Server, path: str,
                          headers: dict[str, str] | None = None) -> httpx.Response:
    """Attempt a WebSocket upgrade that the server should refuse; return its HTTP answer.

    Done with httpx rather than trio-websocket, whose client leaks its socket when a
    handshake is rejected.
    """
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()}
    async with httpx.AsyncClient() as http:
        response = await http.get(http_url(server, path), headers={**upgrade, **(headers or {})})
    assert response.status_code != 101, "the upgrade was accepted"
    return response


def ws_url(server: Server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def http_url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


@asynccontextmanager
async def open_ws(url: str, origin: str | None = None) -> AsyncIterator[WebSocketConnection]:
    """``open_websocket_url`` that also closes the TCP stream at exit.

    trio-websocket's client skips closing its stream when the server started the
    close (1001, 1008, 1009...), which leaks the socket; the server-side behaviour
    under test is right, so the test client finishes the job here. ``origin``: opened as
    a page of that origin would.
    """
    opened: list[WebSocketConnection] = []
    try:
        headers = [(b"Origin", origin.encode())] if origin is not None else None
        async with open_websocket_url(url, extra_headers=headers) as ws:
            opened.append(ws)
            yield ws
    finally:
        for ws in opened:
            stream = getattr(ws, "_stream", None)
            if stream is not None:
                await stream.aclose()


@asynccontextmanager
async def visitor(server: Server, **hello: Any) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    """A visitor socket that has said hello; yields (client, welcome)."""
    async with open_ws(ws_url(server, "/ws/visitor")) as ws:
        client = Client(ws)
        await client.send(type="hello", **hello)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        yield client, welcome


async def make_agent(server: Server, username: str, password: str = "correct horse") -> tuple[
        Agent, str]:
    """Create an agent and a token for it straight in the store."""
    store = server.service.store
    created = await store.create_agent(username, username.title(),
                                       auth.hash_password(password, n=2**4))
    token = auth.new_token()
    await store.add_agent_token(created.id, auth.token_hash(token), "test", None)
    return created, token


@asynccontextmanager
async def agent_socket(server: Server, token: str) -> AsyncIterator[tuple[Client, dict[str, Any]]]:
    async with open_ws(ws_url(server, f"/ws/agent?token={token}")) as ws:
        client = Client(ws)
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        yield client, welcome
