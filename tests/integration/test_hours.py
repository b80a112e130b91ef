"""Auto-replies, business hours and leave-a-message on a real server.

The welcome is stored as a ``system`` message before the visitor's first message, once per
conversation (two sockets, a reconnect, a second message: still one) and replayed; the away
message follows the first message when no agent is online; outside business hours (a fixed
clock given to the server) the closed message says when the team is back; both in the
visitor's language from ``hello``. ``leave_message`` stores an address agents see; a bad
one is an ``error`` frame. ``GET /api/v1/widget`` and the welcome say online, away or
closed, and an ``availability`` frame tells connected visitors of a change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import trio

from customer_service.config import Config
from customer_service.server.run import Server, open_server
from tests.integration.helpers import (
    Client,
    agent_socket,
    http_url,
    make_agent,
    next_id,
    open_ws,
    visitor,
    ws_url,
)

WELCOME = {"en": "Hi! How can we help?", "zh-CN": "您好！有什么可以帮您？"}
AWAY = {"en": "Nobody is online. Leave your email.", "zh-CN": "目前没有客服在线。"}
CLOSED = {"en": "We are closed, back {back}.", "zh-CN": "我们已下班，{back}回来。"}
HOURS = {"hours__enabled": True, "hours__timezone": "Europe/Paris",
         "hours__open": ["mon-fri 09:00-17:00"], "hours__holidays": ["2026-12-25"]}

FRIDAY_EVENING = datetime(2026, 12, 11, 19, 0, tzinfo=UTC)   # 20:00 in Paris
MONDAY_MORNING = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)    # 10:00 in Paris


def replies_config(config: Config, **changes: Any) -> Config:
    texts = {"auto_replies__welcome": WELCOME, "auto_replies__away": AWAY,
             "auto_replies__closed": CLOSED}
    return config.with_changes(**{**texts, **changes})


@asynccontextmanager
async def serving(config: Config, clock: Callable[[], datetime] | None = None
                  ) -> AsyncIterator[Server]:
    async with open_server(config) as srv, trio.open_nursery() as nursery:
        if clock is not None:
            srv.service.clock = clock
        await nursery.start(srv.serve)
        yield srv
        srv.shutdown()


async def say(vis: Client, content: str) -> dict[str, Any]:
    client_id = next_id("v")
    await vis.send(type="text", id=client_id, content=content)
    return await vis.recv_type("ack", id=client_id)


async def messages(server: Server, cid: int) -> list[tuple[int, str, str]]:
    stored = await server.service.store.messages_after(cid, 0, 100)
    return [(m.seq, str(m.sender_role), m.content) for m in stored]


async def test_the_welcome_is_stored_once_before_the_first_message_and_replayed(
        config: Config) -> None:
    async with serving(replies_config(config, auto_replies__away={})) as server:
        async with visitor(server) as (vis, welcome):
            cid, token = welcome["conversation_id"], welcome["visitor_token"]
            assert welcome["last_seq"] == 0  # nothing stored before the visitor writes
            async with visitor(server, visitor_token=token) as (second, _):
                ack = await say(vis, "Hello?")
                assert ack["seq"] == 2
                greeting = await vis.recv_type("message", seq=1)
                assert greeting["sender"]["role"] == "system"
                assert greeting["content"] == WELCOME["en"]
                await second.recv_type("message", seq=1)
                await second.recv_type("message", seq=2)
                assert (await say(second, "Anyone?"))["seq"] == 3  # no second welcome
            await say(vis, "Still here")
        # a reconnect with the token: the replay shows the welcome first, and no new one
        async with visitor(server, visitor_token=token, last_seq=0,
                           conversation_id=cid) as (again, rewelcome):
            assert rewelcome["last_seq"] == 4
            replay = [await again.recv_type("message") for _ in range(4)]
            assert [(m["seq"], m["sender"]["role"]) for m in replay] == [
                (1, "system"), (2, "visitor"), (3, "visitor"), (4, "visitor")]
            await say(again, "Back again")
        assert await messages(server, cid) == [
            (1, "system", WELCOME["en"]), (2, "visitor", "Hello?"), (3, "visitor", "Anyone?"),
            (4, "visitor", "Still here"), (5, "visitor", "Back again")]


async def test_the_away_message_follows_the_first_message_when_nobody_is_online(
        config: Config) -> None:
    async with serving(replies_config(config)) as server:
        async with visitor(server) as (vis, welcome):
            cid = welcome["conversation_id"]
            assert welcome["availability"] == "away" and "back_at" not in welcome
            assert (await say(vis, "Is anyone there?"))["seq"] == 2
            away = await vis.recv_type("message", seq=3)
            assert away["sender"]["role"] == "system" and away["content"] == AWAY["en"]
            await say(vis, "Hello??")
        assert [role for _, role, _ in await messages(server, cid)] == [
            "system", "visitor", "system", "visitor"]


async def test_no_away_message_while_an_agent_is_online(config: Config) -> None:
    async with serving(replies_config(config)) as server:
        _, token = await make_agent(server, "alice")
        async with agent_socket(server, token) as (alice, _), \
                visitor(server) as (vis, welcome):
            assert welcome["availability"] == "online"
            cid = welcome["conversation_id"]
            await say(vis, "Hello")
            await alice.recv_type("message", conversation_id=cid, seq=2)
        assert [role for _, role, _ in await messages(server, cid)] == ["system", "visitor"]


async def test_outside_hours_the_closed_message_says_when_the_team_is_back(
        config: Config) -> None:
    async with serving(replies_config(config, **HOURS), clock=lambda: FRIDAY_EVENING
                       ) as server, httpx.AsyncClient() as http:
        _, token = await make_agent(server, "alice")
        # closed, whoever is online: the hours are the promise
        async with agent_socket(server, token), visitor(server) as (vis, welcome):
            assert welcome["availability"] == "closed"
            assert welcome["back_at"] == "2026-12-14T09:00:00+01:00"
            settings = (await http.get(http_url(server, "/api/v1/widget"))).json()
            assert settings["status"] == "closed"
            assert settings["back_at"] == "2026-12-14T09:00:00+01:00"
            assert settings["timezone"] == "Europe/Paris"
            await say(vis, "Are you open?")
            closed = await vis.recv_type("message", seq=3)
            assert closed["sender"]["role"] == "system"
            assert closed["content"] == "We are closed, back Monday 09:00 (Europe/Paris)."


async def test_within_hours_with_an_agent_no_closed_message(config: Config) -> None:
    async with serving(replies_config(config, **HOURS), clock=lambda: MONDAY_MORNING
                       ) as server, httpx.AsyncClient() as http:
        _, token = await make_agent(server, "alice")
        async with agent_socket(server, token), visitor(server) as (vis, welcome):
            assert welcome["availability"] == "online"
            settings = (await http.get(http_url(server, "/api/v1/widget"))).json()
            assert settings["status"] == "online" and settings["back_at"] is None
            cid = welcome["conversation_id"]
            await say(vis, "Hi")
        assert [role for _, role, _ in await messages(server, cid)] == ["system", "visitor"]


async def test_auto_replies_come_in_the_language_of_hello(config: Config) -> None:
    async with serving(replies_config(config, **HOURS), clock=lambda: FRIDAY_EVENING
                       ) as server:
        async with visitor(server, lang="zh-CN") as (vis, welcome):
            cid = welcome["conversation_id"]
            await say(vis, "你好")
            await vis.recv_type("message", seq=3)
        assert await messages(server, cid) == [
            (1, "system", WELCOME["zh-CN"]), (2, "visitor", "你好"),
            (3, "system", "我们已下班，星期一 09:00（Europe/Paris）回来。")]
        # an unknown language: the default's; a language missing from a table: the default's
        async with visitor(server, lang="fr-FR") as (vis, welcome):
            await say(vis, "Bonjour")
            first = (await messages(server, welcome["conversation_id"]))[0]
            assert first == (1, "system", WELCOME["en"])


async def test_an_empty_text_sends_nothing_in_that_language(config: Config) -> None:
    cfg = replies_config(config, auto_replies__welcome={"en": "Hi!", "zh-CN": ""})
    async with serving(cfg) as server:
        async with visitor(server, lang="zh-CN") as (vis, welcome):
            ack = await say(vis, "你好")
            assert ack["seq"] == 1  # no welcome; the away message follows
            await vis.recv_type("message", seq=2)
        assert [role for _, role, _ in await messages(server, welcome["conversation_id"])] == [
            "visitor", "system"]


async def test_leave_message_stores_the_email_and_agents_see_it(config: Config) -> None:
    async with serving(replies_config(config)) as server, httpx.AsyncClient() as http:
        _, token = await make_agent(server, "alice")
        async with visitor(server, name="Vera") as (vis, welcome):
            cid = welcome["conversation_id"]
            await say(vis, "Please call me back")
            async with agent_socket(server, token) as (alice, _):
                await vis.send(type="leave_message", id="lm1", email=" vera@example.com ")
                ack = await vis.recv_type("ack", id="lm1")
                assert "seq" not in ack
                event = await alice.recv_type(
                    "conversation", where=lambda f: f["conversation"]["conversation_id"] == cid
                    and f["conversation"]["left_email"] != "")
                assert event["conversation"]["left_email"] == "vera@example.com"
        auth = {"Authorization": f"Bearer {token}"}
        one = (await http.get(http_url(server, f"/api/v1/conversations/{cid}"),
                              headers=auth)).json()
        assert one["conversation"]["left_email"] == "vera@example.com"
        listed = (await http.get(http_url(server, "/api/v1/conversations"),
                                 headers=auth)).json()["conversations"]
        assert [c["left_email"] for c in listed if c["conversation_id"] == cid] == [
            "vera@example.com"]
        async with agent_socket(server, token) as (_, agent_welcome):
            (shown,) = [c for c in agent_welcome["conversations"] if c["conversation_id"] == cid]
            assert shown["left_email"] == "vera@example.com"


async def test_a_bad_email_is_an_error_frame_and_nothing_is_stored(config: Config) -> None:
    async with serving(replies_config(config)) as server:
        async with visitor(server) as (vis, welcome):
            for bad in ("not-an-address", "", "vera@example", "a b@example.com"):
                await vis.send(type="leave_message", id="bad", email=bad)
                error = await vis.recv_type("error", id="bad")
                assert error["error"] == "bad_request" and "email" in error["message"]
            await vis.send(type="leave_message", id="none")
            error = await vis.recv_type("error", id="none")
            assert error["error"] == "bad_request" and "email" in error["message"]
            # the socket is still served
            await vis.send(type="ping", id="p")
            await vis.recv_type("pong", id="p")
        conversation = await server.service.store.get_conversation(welcome["conversation_id"])
        assert conversation is not None and conversation.left_email == ""


async def test_a_pre_chat_email_in_hello_is_checked(config: Config) -> None:
    async with serving(replies_config(config)) as server:
        async with visitor(server, email="vera@example.com", name="Vera") as (_, welcome):
            visitor_row = await server.service.store.get_visitor(welcome["visitor_id"])
            assert visitor_row is not None and visitor_row.email == "vera@example.com"
        async with open_ws(ws_url(server, "/ws/visitor")) as ws:
            vis = Client(ws)
            await vis.send(type="hello", email="vera at example")
            error = await vis.recv_type("error")
            assert error["error"] == "bad_request" and "email" in error["message"]
            await vis.send(type="hello", email="vera@example.com")  # a good one is welcome
            await vis.recv_type("welcome")


async def test_the_widget_settings_and_a_live_change_of_availability(config: Config) -> None:
    async with serving(replies_config(config)) as server, httpx.AsyncClient() as http:
        settings = (await http.get(http_url(server, "/api/v1/widget"))).json()
        assert settings["status"] == "away" and settings["back_at"] is None
        assert settings["welcome"] == WELCOME
        _, token = await make_agent(server, "alice")
        async with visitor(server) as (vis, welcome):
            assert welcome["availability"] == "away"
            availability = server.service.availability
            availability.tell_visitors()  # the watcher's look (every 10 s), taken now
            async with agent_socket(server, token):
                settings = (await http.get(http_url(server, "/api/v1/widget"))).json()
                assert settings["status"] == "online"
                availability.tell_visitors()
                frame = await vis.recv_type("availability")
                assert frame == {"type": "availability", "status": "online"}
                availability.tell_visitors()  # unchanged: nothing sent
                await vis.nothing_more(0.2)
            with trio.fail_after(5):
                while server.service.hub.online_agents():
                    await trio.sleep(0.02)
            availability.tell_visitors()
            assert (await vis.recv_type("availability"))["status"] == "away"
