"""The ``Store`` contract for API tokens, run against every backend (see conftest.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import pytest

from customer_service.auth import new_token, token_hash
from customer_service.core.models import utc_now
from customer_service.errors import Conflict, NotFound
from customer_service.storage._sql import Tx
from customer_service.storage.base import Store
from customer_service.storage.sql_store import SqlStore


async def test_create_list_and_look_up(store: Store) -> None:
    secret = new_token()
    created = await store.create_api_token("crm-bot", "write", token_hash(secret))
    assert (created.name, created.scope, created.revoked) == ("crm-bot", "write", False)
    reader = await store.create_api_token("reports", "read", token_hash(new_token()))
    assert [t.name for t in await store.list_api_tokens()] == ["crm-bot", "reports"]
    found = await store.api_token_for(token_hash(secret), utc_now())
    assert found is not None
    token, agent = found
    assert token.id == created.id and token.last_used_at is not None
    assert (agent.id, agent.username, agent.name, agent.bot) == (
        created.agent_id, "crm-bot", "crm-bot", True)
    assert reader.agent_id != created.agent_id
    assert await store.api_token_for(token_hash("not a token"), utc_now()) is None


async def test_only_the_hash_is_stored(store: Store) -> None:
    secret = new_token()
    await store.create_api_token("crm-bot", "read", token_hash(secret))

    def everything(tx: Tx) -> list[tuple[object, ...]]:
        return [tuple(row) for row in tx.all("SELECT * FROM api_tokens")]

    rows = await cast(SqlStore, store)._run(everything, write=False)
    assert rows and secret not in repr(rows)
    assert token_hash(secret) in repr(rows)


async def test_the_bot_agent_is_listed_never_logs_in_nor_is_assigned(store: Store) -> None:
    secret = new_token()
    created = await store.create_api_token("crm-bot", "write", token_hash(secret))
    bot = await store.get_agent_by_username("crm-bot")
    assert bot is not None and bot.bot and bot.password_hash == "!"
    assert [a.bot for a in await store.list_agents()] == [True]
    (load,) = await store.agent_loads()
    assert load.bot
    # A login token made for it (agents token) authenticates nobody.
    login = new_token()
    await store.add_agent_token(created.agent_id, token_hash(login), "cli",
                                utc_now() + timedelta(hours=1))
    assert await store.agent_for_token(token_hash(login), utc_now()) is None


async def test_revoked_at_once_and_kept_in_the_list(store: Store) -> None:
    secret = new_token()
    await store.create_api_token("crm-bot", "write", token_hash(secret))
    revoked = await store.revoke_api_token("crm-bot")
    assert revoked.revoked
    assert await store.api_token_for(token_hash(secret), utc_now()) is None
    (listed,) = await store.list_api_tokens()
    assert listed.revoked and listed.revoked_at == revoked.revoked_at
    assert (await store.revoke_api_token("crm-bot")).revoked_at == revoked.revoked_at


async def test_bad_names_and_scopes(store: Store) -> None:
    await store.create_api_token("crm-bot", "write", token_hash(new_token()))
    with pytest.raises(Conflict, match="'crm-bot' exists already"):
        await store.create_api_token("crm-bot", "read", token_hash(new_token()))
    await store.revoke_api_token("crm-bot")
    with pytest.raises(Conflict, match="exists already"):
        await store.create_api_token("crm-bot", "read", token_hash(new_token()))
    await store.create_agent("alice", "Alice", "hash")
    with pytest.raises(Conflict, match="an agent named 'alice'"):
        await store.create_api_token("alice", "read", token_hash(new_token()))
    with pytest.raises(NotFound, match="'nope'"):
        await store.revoke_api_token("nope")
    assert [t.name for t in await store.list_api_tokens()] == ["crm-bot"]
    assert [a.username for a in await store.list_agents()] == ["crm-bot", "alice"]


async def test_a_disabled_bot_authenticates_nobody(store: Store) -> None:
    secret = new_token()
    await store.create_api_token("crm-bot", "read", token_hash(secret))
    await store.set_agent_disabled("crm-bot", True)
    assert await store.api_token_for(token_hash(secret), utc_now()) is None
