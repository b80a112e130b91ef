"""``agents add|list|disable|enable|passwd|token|tokens|revoke-token``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from click.testing import Result

from customer_service.auth import token_hash, verify_password
from customer_service.core.models import Agent, ConversationStatus, utc_now
from customer_service.storage.base import Store

PASSWORD = "correct horse battery"  # as in conftest.py

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]
AddAgent = Callable[..., Result]


def _agent(store_call: StoreCall, username: str) -> Agent | None:
    async def work(store: Store) -> Agent | None:
        return await store.get_agent_by_username(username)

    result: Agent | None = store_call(work)
    return result


def _clean_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "Error: " in result.output
    for fragment in fragments:
        assert fragment in result.output


# --- add ---------------------------------------------------------------------------

def test_add_prompts_twice_with_hidden_input(run: CliRun, store_call: StoreCall) -> None:
    result = run("agents", "add", "alice", "--name", "Alice Martin",
                 input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Password: " in result.output and "Repeat password: " in result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert "Added agent alice" in result.output
    agent = _agent(store_call, "alice")
    assert agent is not None
    assert agent.name == "Alice Martin"
    assert agent.password_hash.startswith("scrypt$")
    assert verify_password(PASSWORD, agent.password_hash)


def test_add_asks_again_when_the_two_passwords_differ(run: CliRun) -> None:
    result = run("agents", "add", "alice",
                 input=f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output


def test_add_asks_again_for_a_too_short_password(run: CliRun) -> None:
    result = run("agents", "add", "alice", input=f"short\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "at least 8 characters" in result.output


def test_add_password_stdin(add_agent: AddAgent, store_call: StoreCall) -> None:
    result = add_agent("bob")
    assert "Password:" not in result.output
    agent = _agent(store_call, "bob")
    assert agent is not None and agent.name == "bob"
    assert verify_password(PASSWORD, agent.password_hash)


def test_add_too_short_password_from_stdin(run: CliRun, store_call: StoreCall) -> None:
    result = run("agents", "add", "alice", "--password-stdin", input="short\n")
    _clean_error(result, "at least 8 characters")
    assert _agent(store_call, "alice") is None


def test_add_empty_stdin(run: CliRun) -> None:
    _clean_error(run("agents", "add", "alice", "--password-stdin", input=""), "no password")


def test_add_duplicate_is_a_clean_error(run: CliRun, add_agent: AddAgent) -> None:
    add_agent("alice")
    result = run("agents", "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    _clean_error(result, "an agent named 'alice' exists already")
    result = run("agents", "add", "alice", input=f"{PASSWORD}\n{PASSWORD}\n")
    _clean_error(result, "exists already")
    assert "Password:" not in result.output  # refused before asking


def test_add_invalid_username(run: CliRun) -> None:
    result = run("agents", "add", "has space", "--password-stdin", input=PASSWORD + "\n")
    _clean_error(result, "invalid username")


# --- list ------------------------------------------------------------------------

def test_list_table_and_json(run: CliRun, add_agent: AddAgent) -> None:
    add_agent("alice", "--name", "Alice [admin]")
    add_agent("bob")
    result = run("agents", "list")
    assert result.exit_code == 0, result.output
    assert "alice" in result.output and "bob" in result.output
    assert "Alice [admin]" in result.output  # names are data, not rich markup
    assert "enabled" in result.output

    result = run("agents", "list", "--json")
    assert result.exit_code == 0, result.output
    agents = json.loads(result.stdout)
    assert [a["username"] for a in agents] == ["alice", "bob"]
    assert agents[0]["name"] == "Alice [admin]"
    assert agents[0]["disabled"] is False
    assert set(agents[0]) == {"id", "username", "name", "disabled", "created_at",
                              "availability", "capacity", "effective_capacity",
                              "open_conversations", "bot"}


def test_list_empty_json(run: CliRun) -> None:
    result = run("agents", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


# --- disable / enable -----------------------------------------------------------------

def test_disable_and_enable(run: CliRun, add_agent: AddAgent, store_call: StoreCall) -> None:
    add_agent("alice")
    result = run("agents", "disable", "alice")
    assert result.exit_code == 0, result.output
    assert "Disabled agent alice" in result.output
    agent = _agent(store_call, "alice")
    assert agent is not None and agent.disabled
    assert json.loads(run("agents", "list", "--json").stdout)[0]["disabled"] is True

    result = run("agents", "enable", "alice")
    assert result.exit_code == 0, result.output
    assert "Enabled agent alice" in result.output
    agent = _agent(store_call, "alice")
    assert agent is not None and not agent.disabled


def test_disable_unknown_agent(run: CliRun) -> None:
    _clean_error(run("agents", "disable", "ghost"), "ghost")


def test_enable_unknown_agent(run: CliRun) -> None:
    _clean_error(run("agents", "enable", "ghost"), "ghost")


# --- passwd ---------------------------------------------------------------------------

def test_passwd_prompt(run: CliRun, add_agent: AddAgent, store_call: StoreCall) -> None:
    add_agent("alice")
    new = "a much better passphrase"
    result = run("agents", "passwd", "alice", input=f"{new}\n{new}\n")
    assert result.exit_code == 0, result.output
    assert "Password changed for alice" in result.output
    agent = _agent(store_call, "alice")
    assert agent is not None
    assert verify_password(new, agent.password_hash)
    assert not verify_password(PASSWORD, agent.password_hash)


def test_passwd_stdin(run: CliRun, add_agent: AddAgent, store_call: StoreCall) -> None:
    add_agent("alice")
    result = run("agents", "passwd", "alice", "--password-stdin", input="another-secret\n")
    assert result.exit_code == 0, result.output
    agent = _agent(store_call, "alice")
    assert agent is not None and verify_password("another-secret", agent.password_hash)


def test_passwd_unknown_agent_fails_before_prompting(run: CliRun) -> None:
    result = run("agents", "passwd", "ghost", input=f"{PASSWORD}\n{PASSWORD}\n")
    _clean_error(result, "no agent named 'ghost'")
    assert "Password:" not in result.output


def test_passwd_revokes_every_token_of_the_agent(run: CliRun, add_agent: AddAgent,
                                                 store_call: StoreCall) -> None:
    add_agent("alice")
    add_agent("bob")
    first = run("agents", "token", "alice").stdout.strip()
    second = run("agents", "token", "alice", "--label", "phone").stdout.strip()
    bobs = run("agents", "token", "bob").stdout.strip()
    result = run("agents", "passwd", "alice", "--password-stdin", input="another-secret\n")
    assert result.exit_code == 0, result.output
    assert "their tokens are revoked" in result.output
    assert _owner(store_call, first) is None and _owner(store_call, second) is None
    bob = _owner(store_call, bobs)
    assert bob is not None and bob.username == "bob"


def test_passwd_uses_the_configured_scrypt_cost(run: CliRun, add_agent: AddAgent,
                                               store_call: StoreCall) -> None:
    add_agent("alice")
    agent = _agent(store_call, "alice")
    assert agent is not None and agent.password_hash.startswith("scrypt$16384$8$1$")


def test_passwd_too_short(run: CliRun, add_agent: AddAgent) -> None:
    add_agent("alice")
    result = run("agents", "passwd", "alice", "--password-stdin", input="1234\n")
    _clean_error(result, "at least 8 characters")


# --- token ----------------------------------------------------------------------------

def _owner(store_call: StoreCall, token: str) -> Agent | None:
    async def work(store: Store) -> Agent | None:
        return await store.agent_for_token(token_hash(token), utc_now())

    result: Agent | None = store_call(work)
    return result


def test_token_prints_a_token_stored_hashed(run: CliRun, add_agent: AddAgent,
                                            store_call: StoreCall) -> None:
    add_agent("alice")
    result = run("agents", "token", "alice", "--label", "ops")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert len(token) >= 40 and "\n" not in token  # stdout is only the token
    assert "valid until" in result.stderr and "ops" in result.stderr
    owner = _owner(store_call, token)
    assert owner is not None and owner.username == "alice"
    assert _owner(store_call, token + "x") is None


def test_token_expires_after_ttl(run: CliRun, add_agent: AddAgent,
                                 store_call: StoreCall) -> None:
    add_agent("alice")
    token = run("agents", "token", "alice", "--ttl-hours", "1").stdout.strip()

    async def later(store: Store) -> Agent | None:
        return await store.agent_for_token(token_hash(token), utc_now() + timedelta(hours=2))

    assert _owner(store_call, token) is not None
    assert store_call(later) is None


def test_token_without_expiry(run: CliRun, add_agent: AddAgent, store_call: StoreCall) -> None:
    add_agent("alice")
    result = run("agents", "token", "alice", "--ttl-hours", "0")
    assert result.exit_code == 0, result.output
    assert "no expiry" in result.stderr
    token = result.stdout.strip()

    async def much_later(store: Store) -> Agent | None:
        return await store.agent_for_token(token_hash(token),
                                           utc_now() + timedelta(days=3650))

    assert store_call(much_later) is not None


def test_token_unknown_agent(run: CliRun) -> None:
    _clean_error(run("agents", "token", "ghost"), "no agent named 'ghost'")


def test_token_disabled_agent(run: CliRun, add_agent: AddAgent) -> None:
    add_agent("alice")
    run("agents", "disable", "alice")
    _clean_error(run("agents", "token", "alice"), "disabled", "agents enable alice")


def test_disabling_revokes_tokens(run: CliRun, add_agent: AddAgent,
                                  store_call: StoreCall) -> None:
    add_agent("alice")
    token = run("agents", "token", "alice").stdout.strip()
    run("agents", "disable", "alice")
    assert _owner(store_call, token) is None
    run("agents", "enable", "alice")
    assert _owner(store_call, token) is None  # enabling does not bring old tokens back


def test_negative_ttl_is_a_usage_error(run: CliRun, add_agent: AddAgent) -> None:
    add_agent("alice")
    result = run("agents", "token", "alice", "--ttl-hours", "-1")
    assert result.exit_code == 2
    assert "--ttl-hours" in result.output


# --- tokens / revoke-token --------------------------------------------------------------

def _token_rows(run: CliRun, username: str) -> list[dict[str, Any]]:
    result = run("agents", "tokens", username, "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_tokens_lists_created_last_used_and_expiry_never_the_secret(
        run: CliRun, add_agent: AddAgent, store_call: StoreCall) -> None:
    add_agent("alice")
    add_agent("bob")
    used = run("agents", "token", "alice", "--label", "laptop").stdout.strip()
    unused = run("agents", "token", "alice", "--label", "ops", "--ttl-hours", "0").stdout.strip()
    run("agents", "token", "bob")
    assert _owner(store_call, used) is not None  # a use, noted as last_used_at

    rows = _token_rows(run, "alice")
    assert [r["label"] for r in rows] == ["laptop", "ops"]
    assert [r["id"] for r in rows] == [token_hash(used)[:12], token_hash(unused)[:12]]
    assert rows[0]["last_used_at"] is not None and rows[1]["last_used_at"] is None
    assert rows[0]["expires_at"] is not None and rows[1]["expires_at"] is None
    assert all(r["created_at"] for r in rows)

    table = run("agents", "tokens", "alice")
    assert table.exit_code == 0, table.output
    assert "2 token(s) of alice" in table.output
    assert token_hash(used)[:12] in table.output and "laptop" in table.output
    assert "never" in table.output  # the unused token's last use, and its expiry
    for secret in (used, unused):
        assert secret not in table.output and token_hash(secret) not in table.output
    _clean_error(run("agents", "tokens", "ghost"), "no agent named 'ghost'")


def test_revoke_token_ends_that_token_only(run: CliRun, add_agent: AddAgent,
                                           store_call: StoreCall) -> None:
    add_agent("alice")
    add_agent("bob")
    keep = run("agents", "token", "alice").stdout.strip()
    end = run("agents", "token", "alice").stdout.strip()
    bobs = run("agents", "token", "bob").stdout.strip()
    end_id = token_hash(end)[:12]

    result = run("agents", "revoke-token", "alice", end_id[:5])  # a prefix will do
    assert result.exit_code == 0, result.output
    assert f"Revoked token {end_id} of alice" in result.output  # named in full
    assert _owner(store_call, end) is None
    assert _owner(store_call, keep) is not None and _owner(store_call, bobs) is not None
    assert [r["id"] for r in _token_rows(run, "alice")] == [token_hash(keep)[:12]]

    _clean_error(run("agents", "revoke-token", "alice", end_id), "no token")
    _clean_error(run("agents", "revoke-token", "bob", token_hash(keep)[:12]), "no token")
    _clean_error(run("agents", "revoke-token", "alice", "not-hex"), "hex digits")
    _clean_error(run("agents", "revoke-token", "ghost", end_id), "no agent named 'ghost'")


def test_disable_gives_the_agents_conversations_back_to_the_queue(
        run: CliRun, add_agent: AddAgent, store_call: StoreCall) -> None:
    add_agent("alice")
    add_agent("bob")

    async def assign(store: Store) -> tuple[int, int]:
        alice = await store.get_agent_by_username("alice")
        bob = await store.get_agent_by_username("bob")
        assert alice is not None and bob is not None
        ids = []
        for n, owner in enumerate((alice, bob)):
            visitor = await store.create_visitor(f"hash{n}", "", "", "")
            conversation = await store.current_conversation(visitor.id)
            await store.set_conversation_state(conversation.id, ConversationStatus.ASSIGNED,
                                               owner.id)
            ids.append(conversation.id)
        return ids[0], ids[1]

    alices, bobs = store_call(assign)
    result = run("agents", "disable", "alice")
    assert result.exit_code == 0, result.output
    assert "1 conversation(s) assigned to them are back in the queue" in result.output

    async def states(store: Store) -> list[tuple[str, int | None, list[str]]]:
        found = []
        for cid in (alices, bobs):
            conversation = await store.get_conversation(cid)
            assert conversation is not None
            notes = [m.content for m in await store.messages_after(cid, 0, 10)]
            found.append((conversation.status.value, conversation.assigned_to, notes))
        return found

    (status, owner, notes), (bobs_status, bobs_owner, bobs_notes) = store_call(states)
    assert (status, owner) == ("open", None)
    assert notes == ["alice is no longer available; the conversation is back in the queue"]
    assert bobs_status == "assigned" and bobs_owner is not None and bobs_notes == []


def test_without_a_bus_the_commands_say_when_sockets_close(run: CliRun,
                                                           add_agent: AddAgent) -> None:
    add_agent("alice")
    result = run("agents", "tokens", "alice")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("alice has no tokens (none issued, or all revoked or "
                                     "expired).")
    result = run("agents", "disable", "alice")
    assert "Their open sockets close within 30 s" in result.output
