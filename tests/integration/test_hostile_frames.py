"""Hostile input at the frame and request-body boundary: ids out of range, JSON nested
deeper than any parser stack, floods before hello. Each gets the documented error, the
socket stays open (or is closed with the documented code), and the log has no traceback.

The id tests run on SQLite and on MariaDB: before the frames checked ranges, an id of
2^63 reached SQLite (``OverflowError``, the socket closed with 1011) and MariaDB (a
``not_found`` for a row no table could hold).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pymysql
import pytest
import trio
from trio_websocket import ConnectionClosed

from customer_service.config import Config
from customer_service.server.run import Server, open_server
from tests.integration.helpers import (
    Client,
    agent_socket,
    http_url,
    make_agent,
    open_ws,
    visitor,
    ws_url,
)

MAX = 2**63 - 1
TOO_BIG = [2**63, 2**64, 10**30]


def _mysql(database: str | None = None) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                           database=database, connect_timeout=3, autocommit=True)


def _mysql_available() -> bool:
    try:
        _mysql().close()
    except pymysql.MySQLError:
        return False
    return True


def _drop_database(name: str) -> None:
    conn = _mysql()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
async def any_server(request: pytest.FixtureRequest, config: Config) -> AsyncIterator[Server]:
    """The server on SQLite, then on MariaDB (a fresh ``cs_test_<random>`` database,
    dropped afterwards; skipped when no MariaDB answers at 127.0.0.1:3306)."""
    database = None
    config = config.with_changes(server__rate_limit_burst=10_000)  # these tests send many
    if request.param == "mysql":
        if not await trio.to_thread.run_sync(_mysql_available):
            pytest.skip("no MariaDB/MySQL server at 127.0.0.1:3306")
        database = f"cs_test_{secrets.token_hex(6)}"
        config = config.with_changes(storage__backend="mysql", storage__mysql_database=database,
                                     storage__mysql_pool_size=4)
    try:
        async with open_server(config) as srv, trio.open_nursery() as nursery:
            await nursery.start(srv.serve)
            yield srv
            srv.shutdown()
    finally:
        if database is not None:
            await trio.to_thread.run_sync(_drop_database, database)


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the server logs during the test; at the end, no record may carry a
    traceback (client input must never cause one)."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, "\n".join(caplog.text.splitlines()[-40:])


async def _still_open(client: Client) -> None:
    await client.send(type="ping", id="alive")
    assert await client.recv_type("pong", id="alive") == {"type": "pong", "id": "alive"}


async def _refused(client: Client, frame: dict[str, Any], field: str) -> None:
    """The frame gets bad_request naming ``field`` (with the frame's id), and the socket
    stays open."""
    await client.send_raw(json.dumps(frame))
    error = await client.recv_type("error")
    assert error["error"] == "bad_request", (frame, error)
    assert error.get("id") == frame.get("id")
    assert f"'{field}'" in error["message"], error
    await _still_open(client)


# ---- ids out of range ----------------------------------------------------------------

async def test_agent_frames_with_ids_out_of_range_get_bad_request(
        any_server: Server, server_log: pytest.LogCaptureFixture) -> None:
    _, token = await make_agent(any_server, "alice")
    async with visitor(any_server) as (vis, welcome), agent_socket(any_server, token) as (
            agent, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="hello")
        await vis.recv_type("ack", id="v1")
        for value in [*TOO_BIG, -1, -(2**63), -(2**64)]:
            await _refused(agent, {"type": "accept", "id": "a", "conversation_id": value},
                           "conversation_id")
            await _refused(agent, {"type": "text", "id": "t", "conversation_id": value,
                                   "content": "hi"}, "conversation_id")
            await _refused(agent, {"type": "close", "id": "c", "conversation_id": value},
                           "conversation_id")
            await _refused(agent, {"type": "transfer", "id": "x", "conversation_id": value,
                                   "to_agent": 1}, "conversation_id")
            await _refused(agent, {"type": "transfer", "id": "y", "conversation_id": cid,
                                   "to_agent": value}, "to_agent")
            await _refused(agent, {"type": "history", "id": "h", "conversation_id": value},
                           "conversation_id")
            await _refused(agent, {"type": "history", "id": "h", "conversation_id": cid,
                                   "before_seq": value}, "before_seq")
            await _refused(agent, {"type": "typing", "conversation_id": value, "active": True},
                           "conversation_id")
            await _refused(agent, {"type": "read", "id": "r", "conversation_id": value,
                                   "seq": 1}, "conversation_id")
            await _refused(agent, {"type": "read", "id": "r", "conversation_id": cid,
                                   "seq": value}, "seq")
        for field in ("conversation_id", "to_agent"):
            frame: dict[str, Any] = {"type": "transfer", "id": "z", "conversation_id": cid,
                                     "to_agent": 1}
            frame[field] = 0
            await _refused(agent, frame, field)


async def test_the_largest_ids_reach_the_database_and_are_answered(
        any_server: Server, server_log: pytest.LogCaptureFixture) -> None:
    """2^63-1 is in range: the database is asked, and answers (not_found, or the page)."""
    _, token = await make_agent(any_server, "bob")
    async with visitor(any_server) as (vis, welcome), agent_socket(any_server, token) as (
            agent, _):
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="hello")
        await vis.recv_type("ack", id="v1")
        for kind in ("accept", "close", "history"):
            await agent.send(type=kind, id=f"{kind}-max", conversation_id=MAX)
            assert (await agent.recv_type("error", id=f"{kind}-max"))["error"] == "not_found"
        await agent.send(type="transfer", id="t-max", conversation_id=cid, to_agent=MAX)
        assert (await agent.recv_type("error", id="t-max"))["error"] == "not_found"
        await agent.send(type="history", id="h-max", conversation_id=cid, before_seq=MAX)
        page = await agent.recv_type("history", id="h-max")
        assert [m["content"] for m in page["messages"]] == ["hello"]
        await agent.send(type="read", id="r-max", conversation_id=cid, seq=MAX)
        await agent.recv_type("ack", id="r-max")
        await vis.send(type="read", id="vr-max", seq=MAX)
        await vis.recv_type("ack", id="vr-max")
        await _still_open(agent)


async def test_visitor_frames_with_seqs_out_of_range_get_bad_request(
        any_server: Server, server_log: pytest.LogCaptureFixture) -> None:
    async with open_ws(ws_url(any_server, "/ws/visitor")) as ws:
        client = Client(ws)
        for value in [*TOO_BIG, -1]:
            await _refused(client, {"type": "hello", "last_seq": value}, "last_seq")
        await client.send(type="hello")
        await client.recv_type("welcome")
        for value in [*TOO_BIG, -1]:
            await _refused(client, {"type": "read", "id": "r", "seq": value}, "seq")


async def test_rest_ids_out_of_range_are_a_400(
        any_server: Server, server_log: pytest.LogCaptureFixture) -> None:
    _, token = await make_agent(any_server, "carol")
    async with visitor(any_server) as (vis, welcome), httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}) as http:
        cid = welcome["conversation_id"]
        await vis.send(type="text", id="v1", content="hello")
        await vis.recv_type("ack", id="v1")
        for bad in [*TOO_BIG, 10**100, 0, -1, -(2**63)]:
            response = await http.get(http_url(any_server, f"/api/v1/conversations/{bad}/messages"))
            assert response.status_code == 400, (bad, response.text)
            assert response.json()["error"] == "bad_request"
            assert "conversation id" in response.json()["message"]
        for bad in [*TOO_BIG, -1]:
            response = await http.get(http_url(
                any_server, f"/api/v1/conversations/{cid}/messages?before_seq={bad}"))
            assert response.status_code == 400, (bad, response.text)
            assert "before_seq" in response.json()["message"]
        missing = await http.get(http_url(any_server, f"/api/v1/conversations/{MAX}/messages"))
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        page = await http.get(http_url(
            any_server, f"/api/v1/conversations/{cid}/messages?before_seq={MAX}"))
        assert page.status_code == 200
        assert [m["content"] for m in page.json()["messages"]] == ["hello"]


# ---- JSON nested too deeply ------------------------------------------------------------

def _deep(depth: int) -> list[str]:
    """Deep arrays, deep objects, and both inside an otherwise valid frame."""
    return ["[" * depth + "]" * depth,
            '{"a":' * depth + "1" + "}" * depth,
            '{"type":"ping","id":"p","x":' + "[" * depth + "]" * depth + "}",
            '{"type":"text","id":"t","content":"x","x":' + '{"a":' * depth + "1" + "}" * depth
            + "}"]


DEPTHS = [1_000, 9_000]  # 9,000 nested objects: about 54 KB, under max_frame_bytes


async def _deep_frames_refused(client: Client) -> None:
    for depth in DEPTHS:
        for raw in _deep(depth):
            await client.send_raw(raw)
            error = await client.recv_type("error")
            assert error["error"] == "bad_request", (raw[:40], error)
            assert error["message"]
            await _still_open(client)


async def test_deeply_nested_json_on_the_visitor_socket_before_and_after_hello(
        server: Server, server_log: pytest.LogCaptureFixture) -> None:
    async with open_ws(ws_url(server, "/ws/visitor")) as ws:
        client = Client(ws)
        await _deep_frames_refused(client)
        await client.send(type="hello")
        await client.recv_type("welcome")
        await _deep_frames_refused(client)
        await client.send(type="text", id="after", content="still here")
        assert (await client.recv_type("ack", id="after"))["seq"] == 1


async def test_deeply_nested_json_on_the_agent_socket(
        server: Server, server_log: pytest.LogCaptureFixture) -> None:
    _, token = await make_agent(server, "dave")
    async with agent_socket(server, token) as (agent, _):
        await _deep_frames_refused(agent)


async def test_deeply_nested_json_in_a_rest_body_is_a_400(
        server: Server, server_log: pytest.LogCaptureFixture) -> None:
    await make_agent(server, "erin")
    bodies = [*_deep(1_000), *_deep(9_000)[:2]]  # under the 10 logins a minute
    bodies += ['{"username":"erin","password":"correct horse","x":' + "[" * 1000 + "]" * 1000
               + "}",
               '{"username":' + "[" * 1000 + "]" * 1000 + ',"password":"x"}']
    async with httpx.AsyncClient() as http:
        for body in bodies:
            response = await http.post(http_url(server, "/api/v1/login"), content=body,
                                       headers={"content-type": "application/json"})
            assert response.status_code == 400, (body[:40], response.text)
            assert response.json()["error"] == "bad_request"
        response = await http.post(http_url(server, "/api/v1/login"),
                                   json={"username": "erin", "password": "correct horse"})
        assert response.status_code == 200


# ---- floods, before hello and after -----------------------------------------------

@pytest.mark.parametrize("hello_first", [False, True], ids=["before hello", "after hello"])
@pytest.mark.parametrize("frame", [{"type": "text", "id": "early", "content": "hi"},
                                   {"type": "ping", "id": "early"}],
                         ids=["text", "ping"])
async def test_a_flood_is_rate_limited_from_the_first_frame_then_closed_with_1008(
        server: Server, server_log: pytest.LogCaptureFixture, frame: dict[str, Any],
        hello_first: bool) -> None:
    """More frames than the burst and the strikes: the rate limit answers from the
    first frame (before hello too), the socket is closed with 1008, the connection ends
    (on hypercorn too, with frames still unread), and the log has a line, not a flood."""
    limits = server.config.server
    flood = limits.rate_limit_burst + limits.rate_limit_strikes + 50
    server_log.clear()  # the start-up lines
    with trio.fail_after(10):
        async with open_ws(ws_url(server, "/ws/visitor")) as ws:
            client = Client(ws)
            if hello_first:
                await client.send(type="hello")
                await client.recv_type("welcome")
            sent = 0
            for n in range(flood):
                try:
                    await client.send(**{**frame, "id": f"early{n}"})
                except ConnectionClosed:
                    break
                sent += 1
            answers: dict[int, str] = {}  # frame number -> its answer
            while True:
                try:
                    answer = await client.recv()
                except ConnectionClosed as closed:
                    assert closed.reason.code == 1008
                    break
                if answer.get("id"):  # not the visitor's own messages coming back
                    answers[int(answer["id"].removeprefix("early"))] = (
                        answer.get("error") or answer["type"])
    # Answers come by id, not in order: a refusal is sent at once, an ack after the commit.
    # The bucket refills while the flood is sent: a few more than the burst may pass.
    refused = sorted(n for n, kind in answers.items() if kind == "rate_limited")
    assert len(refused) == limits.rate_limit_strikes
    assert refused[0] >= limits.rate_limit_burst - 1
    answered = {"ack", "pong"} if hello_first else {"bad_request", "pong"}  # hello first
    assert all(kind in answered for n, kind in answers.items() if n < refused[0]), answers
    assert max(answers) == refused[-1]  # nothing answered after the strike that closed it
    assert len(answers) <= sent + 1
    if not hello_first:
        assert (await server.service.store.stats()).visitors == 0
    noisy = [r.getMessage() for r in server_log.records
             if r.name.startswith("customer_service") and r.levelno >= logging.INFO]
    assert len(noisy) <= 4, noisy
