"""The HTTP side of the one port: health, metrics, login and the REST API."""

from __future__ import annotations

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from customer_service.server import agent as agent_module
from customer_service.server.run import Server
from tests.integration.helpers import agent_socket, http_url, make_agent, visitor


async def test_healthz_reports_version_db_and_ai(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(http_url(server, "/healthz"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["db"] == "ok" and body["ai"] == "off"
    assert body["version"]


async def test_metrics_count_connections_frames_and_latency(server: Server) -> None:
    async with visitor(server) as (vis, _):
        await vis.send(type="text", id="m1", content="counted")
        await vis.recv_type("ack", id="m1")
        async with httpx.AsyncClient() as http:
            response = await http.get(http_url(server, "/metrics"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cs_connections_open{role="visitor"} 1.0' in text
    assert 'cs_frames_in_total{role="visitor"}' in text
    assert "cs_message_latency_seconds_bucket" in text
    assert "cs_messages_stored_total 1.0" in text
    assert "cs_db_errors_total 0.0" in text


async def test_login_gives_a_token_that_opens_the_agent_socket(server: Server) -> None:
    await make_agent(server, "alice", "s3cret-pass")
    async with httpx.AsyncClient() as http:
        good = await http.post(http_url(server, "/api/v1/login"),
                               json={"username": "alice", "password": "s3cret-pass"})
        assert good.status_code == 200, good.text
        token = good.json()["token"]
        assert good.json()["agent"]["username"] == "alice"
        wrong = await http.post(http_url(server, "/api/v1/login"),
                                json={"username": "alice", "password": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        unknown = await http.post(http_url(server, "/api/v1/login"),
                                  json={"username": "zed", "password": "nope"})
        assert unknown.status_code == 401
        garbage = await http.post(http_url(server, "/api/v1/login"), content=b"{not json")
        assert garbage.status_code == 400 and garbage.json()["error"] == "bad_request"
        missing = await http.post(http_url(server, "/api/v1/login"), json={"username": "a"})
        assert missing.status_code == 400
        me = await http.get(http_url(server, "/api/v1/me"),
                            headers={"Authorization": f"Bearer {token}"})
        assert me.json()["username"] == "alice"
    async with agent_socket(server, token) as (_, welcome):
        assert welcome["agent"]["username"] == "alice"


async def test_rest_conversations_and_messages(server: Server) -> None:
    _, token = await make_agent(server, "alice")
    auth = {"Authorization": f"Bearer {token}"}
    async with visitor(server, name="Ann") as (vis, welcome):
        cid = welcome["conversation_id"]
        for n in range(3):
            await vis.send(type="text", id=f"r{n}", content=f"m{n}")
            await vis.recv_type("ack", id=f"r{n}")
    async with httpx.AsyncClient(headers=auth) as http:
        listing = await http.get(http_url(server, "/api/v1/conversations?status=open"))
        assert listing.status_code == 200
        (only,) = listing.json()["conversations"]
        assert only["conversation_id"] == cid and only["visitor"]["name"] == "Ann"
        assert only["last_message"]["content"] == "m2"
        page = await http.get(http_url(server, f"/api/v1/conversations/{cid}/messages?limit=2"))
        assert [m["seq"] for m in page.json()["messages"]] == [2, 3]
        older = await http.get(
            http_url(server, f"/api/v1/conversations/{cid}/messages?before_seq=2"))
        assert [m["content"] for m in older.json()["messages"]] == ["m0"]
        agents = await http.get(http_url(server, "/api/v1/agents"))
        assert [a["username"] for a in agents.json()["agents"]] == ["alice"]
        bad_status = await http.get(http_url(server, "/api/v1/conversations?status=weird"))
        assert bad_status.status_code == 400
        bad_limit = await http.get(http_url(server, "/api/v1/conversations?limit=x"))
        assert bad_limit.status_code == 400
        missing = await http.get(http_url(server, "/api/v1/conversations/999/messages"))
        assert missing.status_code == 404
        wrong_method = await http.post(http_url(server, "/api/v1/conversations"))
        assert wrong_method.status_code == 405
        nowhere = await http.get(http_url(server, "/nowhere"))
        assert nowhere.status_code == 404 and nowhere.json()["error"] == "not_found"
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(http_url(server, "/api/v1/conversations"))
        assert anonymous.status_code == 401


async def test_logout_revokes_the_token_and_closes_its_socket(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "TOKEN_RECHECK_SECONDS", 0.1)
    await make_agent(server, "lou", "s3cret-pass")
    async with httpx.AsyncClient() as http:
        login = await http.post(http_url(server, "/api/v1/login"),
                                json={"username": "lou", "password": "s3cret-pass"})
        token = login.json()["token"]
        auth = {"authorization": f"Bearer {token}"}
        async with agent_socket(server, token) as (agent, _):
            out = await http.post(http_url(server, "/api/v1/logout"), headers=auth)
            assert out.status_code == 200 and out.json() == {"ok": True}
            with pytest.raises(ConnectionClosed) as closed:
                await agent.recv(timeout=3)
            assert closed.value.reason.code == 1008
        me = await http.get(http_url(server, "/api/v1/me"), headers=auth)
        again = await http.post(http_url(server, "/api/v1/logout"), headers=auth)
        anonymous = await http.post(http_url(server, "/api/v1/logout"))
    assert me.status_code == 401
    assert again.status_code == 401 and again.json()["error"] == "unauthorized"
    assert anonymous.status_code == 401


async def _raw_exchange(server: Server, request: bytes) -> bytes:
    """Send ``request`` in one write; read until the server closes (at most 5 s)."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(request)
        data = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data


async def test_a_smuggled_request_is_never_served_on_either_transport(server: Server) -> None:
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    request = b"\r\n".join([b"POST /api/v1/login HTTP/1.1", b"Host: 127.0.0.1",
                            b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked",
                            b"", body])
    data = await _raw_exchange(server, request)
    assert data.count(b"HTTP/1.1 ") == 1, data  # one answer, then the connection closed
    assert data.startswith(b"HTTP/1.1 400"), data[:200]


async def test_headers_over_16_kib_in_one_write_are_refused_on_either_transport(
        server: Server) -> None:
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(20))
    data = await _raw_exchange(
        server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + padding + b"\r\n")
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
