"""Logins that fit real offices: only failures are throttled (per username and per
address, with a growing Retry-After), password hashes upgraded at login, /metrics
behind a token, and REST tokens never in the URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from customer_service.config import Config
from customer_service.core.login_failures import Failures, LoginLimits
from customer_service.errors import BusError
from customer_service.server.app import LOGIN_SLOTS
from customer_service.server.limits import SharedLoginThrottle
from customer_service.server.run import Server, open_server
from tests.integration.helpers import agent_socket, http_url, make_agent

PASSWORD = "correct horse"  # make_agent's default


@asynccontextmanager
async def serving(config: Config, **changes: Any) -> AsyncIterator[Server]:
    async with open_server(config.with_changes(**changes)) as srv, \
            trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def login(http: httpx.AsyncClient, server: Server, username: str, password: str,
                **headers: str) -> httpx.Response:
    return await http.post(http_url(server, "/api/v1/login"), headers=headers,
                           json={"username": username, "password": password})


async def test_twenty_agents_behind_one_address_all_log_in_within_a_minute(
        server: Server) -> None:
    """Successes never count: the old throttle refused the 11th login of the minute."""
    for n in range(20):
        await make_agent(server, f"agent{n}")
    async with httpx.AsyncClient() as http:
        answers = [await login(http, server, f"agent{n}", PASSWORD) for n in range(20)]
        again = [await login(http, server, "agent0", PASSWORD) for _ in range(5)]
    assert [a.status_code for a in answers + again] == [200] * 25


async def test_failures_for_one_user_lock_that_user_with_a_growing_retry_after(
        config: Config) -> None:
    async with serving(config, auth__login_failures_per_user=2,
                       auth__login_failures_per_address=20) as server, \
            httpx.AsyncClient() as http:
        await make_agent(server, "alice")
        await make_agent(server, "bob")
        first = [await login(http, server, "alice", "wrong password") for _ in range(2)]
        assert [a.status_code for a in first] == [401, 401]
        locked = await login(http, server, "alice", PASSWORD)  # even the right password
        assert locked.status_code == 429 and locked.json()["error"] == "rate_limited"
        assert locked.headers["retry-after"] == "1"
        # Bob, at the same address, is not locked by Alice's failures.
        assert (await login(http, server, "bob", PASSWORD)).status_code == 200
        await trio.sleep(1.1)
        assert (await login(http, server, "alice", "wrong again")).status_code == 401
        longer = await login(http, server, "alice", PASSWORD)
        assert longer.status_code == 429 and longer.headers["retry-after"] == "2"
        await trio.sleep(2.1)
        assert (await login(http, server, "alice", PASSWORD)).status_code == 200
        # The success cleared Alice's count: two new failures before the lock again.
        after = [await login(http, server, "alice", "wrong password") for _ in range(3)]
        assert [a.status_code for a in after] == [401, 401, 429]


async def test_a_burst_of_guesses_sent_at_once_gets_few_passwords_checked(
        config: Config) -> None:
    """The throttle is asked again once a login has its slot: a burst that passed the
    first look together cannot get every password checked."""
    async with serving(config, auth__login_failures_per_user=3) as server, \
            httpx.AsyncClient() as http:
        await make_agent(server, "alice")
        statuses: list[int] = []

        async def guess(n: int) -> None:
            statuses.append((await login(http, server, "alice", f"guess {n}")).status_code)

        async with trio.open_nursery() as nursery:
            for n in range(12):
                nursery.start_soon(guess, n)
    assert sorted(set(statuses)) == [401, 429]
    assert statuses.count(401) <= 3 + LOGIN_SLOTS - 1, statuses


async def test_without_redis_the_shared_throttle_counts_on_this_instance() -> None:
    class DeadBus:
        async def read_failures(self, keys: Sequence[str]) -> tuple[float, list[Failures]]:
            raise BusError("Redis: connection refused")

        async def record_failure(self, keys: Sequence[str], window: float) -> None:
            raise BusError("Redis: connection refused")

        async def clear_failures(self, keys: Sequence[str]) -> None:
            raise BusError("Redis: connection refused")

    throttle = SharedLoginThrottle(DeadBus(), LoginLimits(per_user=2, per_address=10,
                                                          window=60.0))
    assert await throttle.retry_after("10.0.0.1", "ann") == 0.0
    await throttle.failed("10.0.0.1", "ann")
    await throttle.failed("10.0.0.2", "ann")
    assert await throttle.retry_after("10.0.0.3", "ann") == pytest.approx(1.0, abs=0.1)
    assert await throttle.retry_after("10.0.0.3", "bob") == 0.0
    await throttle.succeeded("ann")
    assert await throttle.retry_after("10.0.0.3", "ann") == 0.0


async def test_failures_from_one_address_lock_that_address_only(config: Config) -> None:
    """The per-address limit is the trade-off: past it, every name from that address waits
    (it stops one address from trying many names), so it is set far above an office's typos.
    Behind a trusted proxy the address is the forwarded one."""
    async with serving(config, auth__login_failures_per_user=100,
                       auth__login_failures_per_address=4,
                       server__trusted_proxies=["127.0.0.1"]) as server, \
            httpx.AsyncClient() as http:
        await make_agent(server, "bob")
        office = {"x-forwarded-for": "203.0.113.7"}
        home = {"x-forwarded-for": "198.51.100.9"}
        tries = [await login(http, server, f"guess{n}", "wrong", **office) for n in range(4)]
        assert [a.status_code for a in tries] == [401] * 4
        blocked = await login(http, server, "bob", PASSWORD, **office)
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert (await login(http, server, "bob", PASSWORD, **home)).status_code == 200
        # Without a trusted proxy's header the TCP peer is the address: not locked either.
        assert (await login(http, server, "bob", PASSWORD)).status_code == 200


async def test_an_old_hash_logs_in_and_is_rewritten_at_the_configured_cost(
        server: Server) -> None:
    agent, token = await make_agent(server, "olga")  # hashed with N=2^4
    assert agent.password_hash.startswith("scrypt$16$8$1$")
    async with httpx.AsyncClient() as http:
        first = await login(http, server, "olga", PASSWORD)
        assert first.status_code == 200, first.text
        stored = await server.service.store.get_agent_by_username("olga")
        assert stored is not None and stored.password_hash.startswith("scrypt$16384$8$1$")
        assert (await login(http, server, "olga", PASSWORD)).status_code == 200
        assert (await login(http, server, "olga", "not it")).status_code == 401
        unchanged = await server.service.store.get_agent_by_username("olga")
        assert unchanged is not None and unchanged.password_hash == stored.password_hash
    async with agent_socket(server, token) as (_, welcome):  # the upgrade kept the tokens
        assert welcome["agent"]["username"] == "olga"


async def test_hashing_at_full_cost_does_not_block_other_requests(config: Config) -> None:
    """scrypt at 2^17 takes a good part of a second: it runs in worker threads."""
    async with serving(config, auth__scrypt_n=2**17) as server, httpx.AsyncClient() as http:
        slowest = 0.0

        async def logins() -> None:
            for _ in range(2):
                assert (await login(http, server, "nobody", "wrong")).status_code == 401

        async with trio.open_nursery() as nursery:
            nursery.start_soon(logins)
            started = trio.current_time()
            while trio.current_time() - started < 0.8:
                began = trio.current_time()
                assert (await http.get(http_url(server, "/healthz"))).status_code == 200
                slowest = max(slowest, trio.current_time() - began)
                await trio.sleep(0.02)
    assert slowest < 0.2


async def test_metrics_ask_for_the_configured_token(config: Config) -> None:
    async with serving(config, metrics__token="scrape-s3cret") as server, \
            httpx.AsyncClient() as http:
        url = http_url(server, "/metrics")
        anonymous = await http.get(url)
        wrong = await http.get(url, headers={"authorization": "Bearer scrape-s3cre"})
        in_url = await http.get(url + "?token=scrape-s3cret")
        right = await http.get(url, headers={"authorization": "Bearer scrape-s3cret"})
    for refused in (anonymous, wrong, in_url):
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert right.status_code == 200 and "cs_connections_open" in right.text


async def test_metrics_stay_open_without_a_token(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(http_url(server, "/metrics"))).status_code == 200


async def test_rest_refuses_a_token_in_the_url_and_the_agent_socket_accepts_it(
        server: Server) -> None:
    _, token = await make_agent(server, "ursula")
    async with httpx.AsyncClient() as http:
        in_url = await http.get(http_url(server, f"/api/v1/me?token={token}"))
        both = await http.get(http_url(server, f"/api/v1/me?token={token}"),
                              headers={"authorization": f"Bearer {token}"})
        header = await http.get(http_url(server, "/api/v1/me"),
                                headers={"authorization": f"Bearer {token}"})
        empty = await http.get(http_url(server, "/api/v1/me?token="),
                               headers={"authorization": f"Bearer {token}"})
        login = await http.post(http_url(server, f"/api/v1/login?token={token}"),
                                json={"username": "ursula", "password": "correct horse"})
    for refused in (in_url, both, empty, login):
        assert refused.status_code == 401
        assert "Authorization: Bearer" in refused.json()["message"]
    assert header.status_code == 200 and header.json()["username"] == "ursula"
    async with agent_socket(server, token) as (_, welcome):  # ?token= on the socket
        assert welcome["agent"]["username"] == "ursula"
