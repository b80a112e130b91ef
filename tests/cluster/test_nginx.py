"""Two instances behind a real nginx running deploy/nginx.conf (Debian's nginx package)."""

from __future__ import annotations

import json
import re

import httpx

from tests.cluster.conftest import Cluster
from tests.deploy.nginx import nginx_in_front_of
from tests.integration.helpers import Client, open_ws

PROXIED = {"server": {"trusted_proxies": ["127.0.0.1"]}}


async def test_a_conversation_through_nginx_balancing_two_instances(cluster: Cluster) -> None:
    a = await cluster.start("a", **PROXIED)
    b = await cluster.start("b", **PROXIED)
    agent, token = await cluster.make_agent("alice")
    with nginx_in_front_of([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
                           cluster.folder / "nginx") as nginx:
        async with open_ws(f"{nginx.ws_url}/ws/agent?token={token}") as agent_ws, \
                open_ws(f"{nginx.ws_url}/ws/visitor") as visitor_ws:
            alice, vera = Client(agent_ws), Client(visitor_ws)
            assert (await alice.recv())["type"] == "welcome"
            await vera.send(type="hello", name="Vera")
            welcome = await vera.recv()
            cid = welcome["conversation_id"]
            # nginx (least_conn) put the two sockets on different instances.
            assert (a.health() or {}).get("connections") == 1
            assert (b.health() or {}).get("connections") == 1

            await vera.send(type="text", id="v1", content="hello through nginx")
            await vera.recv_type("ack", id="v1")
            assert (await alice.recv_type("message", conversation_id=cid))["seq"] == 1
            await alice.send(type="accept", id="acc", conversation_id=cid)
            await alice.recv_type("ack", id="acc")
            await alice.send(type="text", id="a1", conversation_id=cid, content="hi back")
            assert (await vera.recv_type("message", seq=3))["content"] == "hi back"
            await vera.send(type="typing", active=True)
            assert (await alice.recv_type("typing", conversation_id=cid))["active"] is True
            await vera.send(type="read", seq=3)
            assert (await alice.recv_type("read", conversation_id=cid))["seq"] == 3
            await alice.send(type="history", id="h", conversation_id=cid)
            history = await alice.recv_type("history", id="h")
            assert [m["seq"] for m in history["messages"]] == [1, 2, 3]

        # Plain HTTP through nginx reaches both instances' shared state.
        async with httpx.AsyncClient(base_url=nginx.url) as http:
            for _ in range(4):
                answer = await http.get(f"/api/v1/conversations/{cid}/messages",
                                        headers={"authorization": f"Bearer {token}"})
                assert [m["sender"]["role"] for m in answer.json()["messages"]] == \
                    ["visitor", "system", "agent"]
        assert agent.id == history["messages"][2]["sender"]["id"]


async def test_behind_nginx_throttling_sees_the_client_not_what_it_claims(
        cluster: Cluster) -> None:
    """The client connects from 127.0.0.2 (nginx is 127.0.0.1, the only trusted proxy) and
    sends a different X-Forwarded-For each time, guessing a different username each time:
    its failures add up for 127.0.0.2 all the same, on both instances."""
    limits = {**PROXIED, "auth": {"login_failures_per_address": 4, "scrypt_n": 16384}}
    a = await cluster.start("a", **limits)
    b = await cluster.start("b", **limits)
    await cluster.make_agent("alice")
    with nginx_in_front_of([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
                           cluster.folder / "nginx") as nginx:
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        statuses = []
        async with httpx.AsyncClient(base_url=nginx.url, transport=transport) as http:
            for attempt in range(5):
                answer = await http.post(
                    "/api/v1/login", headers={"x-forwarded-for": f"198.51.100.{attempt}"},
                    content=json.dumps({"username": f"alice{attempt}", "password": "not it"}))
                statuses.append(answer.status_code)
        assert statuses == [401] * 4 + [429]
    logs = a.log_text() + b.log_text()
    refused = re.findall(r"login refused for 'alice\d' from (\S+)", logs)
    assert refused and set(refused) == {"127.0.0.2"}
