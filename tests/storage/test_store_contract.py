"""The ``Store`` contract, run against every backend (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from customer_service.config import Config
from customer_service.core.models import (
    AppendResult,
    ConversationStatus,
    NewMessage,
    Role,
    StoredMessage,
)
from customer_service.errors import Conflict, CustomerServiceError, NotFound, StorageError
from customer_service.storage import open_store
from customer_service.storage.base import Store


def visitor_says(conversation_id: int, content: str, client_id: str | None = None,
                 visitor_id: int | None = None) -> NewMessage:
    return NewMessage(conversation_id=conversation_id, sender_role=Role.VISITOR,
                      sender_id=visitor_id, sender_name="Vera", content=content,
                      client_id=client_id)


async def new_conversation(store: Store, token: str = "vt") -> int:
    visitor = await store.create_visitor(f"hash-{token}", "Vera", "vera@example.com", "/pricing")
    return (await store.current_conversation(visitor.id)).id


def seqs(results: list[AppendResult]) -> list[int]:
    return [r.message.seq for r in results]


# --- schema -----------------------------------------------------------------

async def test_migrate_reports_versions_and_is_idempotent(fresh_store: Store) -> None:
    assert await fresh_store.schema_version() == 0
    assert await fresh_store.migrate() == [1, 2, 3, 4, 5, 8]
    assert await fresh_store.schema_version() == 8
    assert await fresh_store.migrate() == []
    assert await fresh_store.schema_version() == 8
    await fresh_store.ping()


async def test_the_deployment_token_is_made_once_and_kept(
        open_test_store: Callable[[], AbstractAsyncContextManager[Store]]) -> None:
    async with open_test_store() as first:
        await first.migrate()
        token = await first.deployment_token()
        assert len(token) == 32 and int(token, 16) >= 0
        await first.migrate()
        assert await first.deployment_token() == token
    async with open_test_store() as again:
        assert await again.deployment_token() == token


async def test_an_unmigrated_database_has_no_deployment_token(fresh_store: Store) -> None:
    with pytest.raises(CustomerServiceError):
        await fresh_store.deployment_token()


async def test_migrated_schema_survives_reopening(
        open_test_store: Callable[[], AbstractAsyncContextManager[Store]]) -> None:
    async with open_test_store() as first:
        await first.migrate()
        agent = await first.create_agent("ann", "Ann", "h1")
    async with open_test_store() as second:
        assert await second.migrate() == []
        assert await second.get_agent(agent.id) == agent


async def test_closed_store_raises_storage_error(fresh_store: Store) -> None:
    await fresh_store.aclose()
    await fresh_store.aclose()
    with pytest.raises(StorageError):
        await fresh_store.ping()


async def test_probe_write_passes_on_a_writable_store_and_changes_nothing(store: Store) -> None:
    await store.create_agent("ann", "Ann", "h")
    before = (await store.schema_version(), await store.stats(), await store.list_agents())
    await store.probe_write()
    await store.probe_write()
    assert (await store.schema_version(), await store.stats(), await store.list_agents()) == before


async def test_probe_write_fails_where_the_database_may_only_be_read(
        store: Store, open_read_only_store: Callable[[], AbstractAsyncContextManager[Store]]
        ) -> None:
    """A read-only SQLite connection, a MySQL user with SELECT only: reading works,
    ``probe_write`` raises ``StorageError``, and the writable store is unaffected."""
    ann = await store.create_agent("ann", "Ann", "h")
    async with open_read_only_store() as read_only:
        await read_only.ping()
        assert await read_only.schema_version() == 8
        assert await read_only.get_agent(ann.id) == ann
        with pytest.raises(StorageError):
            await read_only.probe_write()
        with pytest.raises(StorageError):
            await read_only.create_agent("bob", "Bob", "h")
        await read_only.ping()
    await store.probe_write()
    assert await store.list_agents() == [ann]


# --- agents -----------------------------------------------------------------

async def test_create_and_read_agents(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann Smith", "hash-a")
    bob = await store.create_agent("bob", "Bob", "hash-b")
    assert ann.username == "ann" and ann.name == "Ann Smith" and ann.password_hash == "hash-a"
    assert not ann.disabled
    assert ann.created_at.tzinfo is not None and ann.created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - ann.created_at) < timedelta(minutes=1)
    assert await store.get_agent(ann.id) == ann
    assert await store.get_agent_by_username("bob") == bob
    assert await store.get_agent(10_000) is None
    assert await store.get_agent_by_username("nobody") is None
    assert await store.list_agents() == [ann, bob]


async def test_duplicate_username_conflicts(store: Store) -> None:
    await store.create_agent("ann", "Ann", "h")
    with pytest.raises(Conflict):
        await store.create_agent("ann", "Another Ann", "h2")
    assert len(await store.list_agents()) == 1


async def test_usernames_are_case_sensitive_everywhere(store: Store) -> None:
    await store.create_agent("ann", "Ann", "h")
    await store.create_agent("Ann", "Other Ann", "h")
    assert (await store.get_agent_by_username("ANN")) is None


async def test_disable_revokes_tokens_and_enable_does_not_restore_them(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    now = datetime.now(UTC)
    await store.add_agent_token(ann.id, "tok-1", "laptop", None)
    assert await store.agent_for_token("tok-1", now) == ann

    disabled = await store.set_agent_disabled("ann", True)
    assert disabled.disabled
    assert (await store.get_agent(ann.id)) == disabled
    assert await store.agent_for_token("tok-1", now) is None

    enabled = await store.set_agent_disabled("ann", False)
    assert not enabled.disabled
    assert await store.agent_for_token("tok-1", now) is None
    with pytest.raises(NotFound):
        await store.set_agent_disabled("nobody", True)


async def test_tokens_of_a_disabled_agent_never_authenticate(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    await store.set_agent_disabled("ann", True)
    await store.add_agent_token(ann.id, "tok-late", "cli", None)
    assert await store.agent_for_token("tok-late", datetime.now(UTC)) is None


async def test_revoking_a_token_leaves_the_agents_other_tokens(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    now = datetime.now(UTC)
    await store.add_agent_token(ann.id, "browser", "login", None)
    await store.add_agent_token(ann.id, "cli", "cli", None)
    assert await store.revoke_agent_token("browser") is True
    assert await store.agent_for_token("browser", now) is None
    assert await store.agent_for_token("cli", now) == ann
    assert await store.revoke_agent_token("browser") is False


async def test_usernames_with_trailing_spaces_are_other_usernames(store: Store) -> None:
    """MariaDB's utf8mb4_bin pads with spaces: 'ann ' found 'ann' and logged in as her."""
    ann = await store.create_agent("ann", "Ann", "h")
    assert await store.get_agent_by_username("ann ") is None
    assert await store.get_agent_by_username("ann\t") is None
    assert await store.get_agent_by_username(" ann") is None
    spaced = await store.create_agent("ann ", "Spaced Ann", "h2")
    assert spaced.id != ann.id
    assert await store.get_agent_by_username("ann ") == spaced
    assert await store.get_agent_by_username("ann") == ann
    with pytest.raises(NotFound):
        await store.set_agent_password("ann  ", "x")


async def test_set_password_revokes_every_token(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "old")
    bob = await store.create_agent("bob", "Bob", "h")
    now = datetime.now(UTC)
    await store.add_agent_token(ann.id, "a1", "login", None)
    await store.add_agent_token(ann.id, "a2", "cli", None)
    await store.add_agent_token(bob.id, "b1", "login", None)
    changed = await store.set_agent_password("ann", "new")
    assert changed.password_hash == "new" and changed.id == ann.id
    assert (await store.get_agent_by_username("ann")) == changed
    assert await store.agent_for_token("a1", now) is None
    assert await store.agent_for_token("a2", now) is None
    assert await store.list_agent_tokens(ann.id) == []
    assert await store.agent_for_token("b1", now) == bob
    with pytest.raises(NotFound):
        await store.set_agent_password("nobody", "x")


async def test_replace_password_hash_only_while_unchanged(store: Store) -> None:
    """The upgrade at login keeps the tokens and never undoes a password change."""
    ann = await store.create_agent("ann", "Ann", "old")
    await store.add_agent_token(ann.id, "a1", "login", None)
    assert await store.replace_password_hash(ann.id, "old", "old-stronger") is True
    assert (await store.get_agent(ann.id)).password_hash == "old-stronger"  # type: ignore[union-attr]
    assert await store.agent_for_token("a1", datetime.now(UTC)) is not None
    await store.set_agent_password("ann", "changed")
    assert await store.replace_password_hash(ann.id, "old-stronger", "stale") is False
    assert (await store.get_agent(ann.id)).password_hash == "changed"  # type: ignore[union-attr]
    assert await store.replace_password_hash(ann.id + 99, "changed", "x") is False


async def test_tokens_are_listed_with_last_use_and_revoked_by_their_short_id(
        store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    bob = await store.create_agent("bob", "Bob", "h")
    now = datetime.now(UTC).replace(microsecond=0)
    first, second = "ab" * 32, "ac" * 32
    await store.add_agent_token(ann.id, first, "login", now + timedelta(hours=1))
    await store.add_agent_token(ann.id, second, "cli", None)
    await store.add_agent_token(bob.id, "ad" * 32, "login", None)
    listed = await store.list_agent_tokens(ann.id)
    assert [(t.id, t.label, t.last_used_at) for t in listed] == [
        (first[:12], "login", None), (second[:12], "cli", None)]
    assert listed[0].expires_at == now + timedelta(hours=1) and listed[1].expires_at is None

    # Used: noted once, and not again within the minute.
    assert await store.agent_for_token(first, now) == ann
    assert (await store.list_agent_tokens(ann.id))[0].last_used_at == now
    assert await store.agent_for_token(first, now + timedelta(seconds=30)) == ann
    assert (await store.list_agent_tokens(ann.id))[0].last_used_at == now
    assert await store.agent_for_token(first, now + timedelta(seconds=61)) == ann
    assert (await store.list_agent_tokens(ann.id))[0].last_used_at == now + timedelta(seconds=61)

    with pytest.raises(Conflict):
        await store.revoke_agent_token_by_id(ann.id, "a")  # both start with "a"
    for wrong in ("ad", "zz", "a%", "", first[:12] + "0"):
        with pytest.raises(NotFound):
            await store.revoke_agent_token_by_id(ann.id, wrong)
    assert await store.revoke_agent_token_by_id(ann.id, first[:12].upper()) == first
    assert await store.agent_for_token(first, now) is None
    assert [t.id for t in await store.list_agent_tokens(ann.id)] == [second[:12]]
    assert len(await store.list_agent_tokens(bob.id)) == 1


async def test_tokens_expire(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    now = datetime.now(UTC)
    await store.add_agent_token(ann.id, "short", "phone", now + timedelta(hours=1))
    await store.add_agent_token(ann.id, "forever", "cli", None)
    assert await store.agent_for_token("short", now) == ann
    assert await store.agent_for_token("short", now + timedelta(hours=2)) is None
    assert await store.agent_for_token("forever", now + timedelta(days=3650)) == ann
    assert await store.agent_for_token("unknown", now) is None


async def test_token_for_unknown_agent_or_twice(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    with pytest.raises(NotFound):
        await store.add_agent_token(ann.id + 100, "t", "x", None)
    await store.add_agent_token(ann.id, "t", "x", None)
    with pytest.raises(Conflict):
        await store.add_agent_token(ann.id, "t", "y", None)


# --- visitors ---------------------------------------------------------------

async def test_visitors(store: Store) -> None:
    vera = await store.create_visitor("vh", "Vera", "vera@example.com", "/home")
    assert vera.name == "Vera" and vera.email == "vera@example.com" and vera.page == "/home"
    assert await store.visitor_for_token("vh") == vera
    assert await store.visitor_for_token("other") is None
    assert await store.get_visitor(vera.id) == vera

    moved = await store.update_visitor(vera.id, None, None, "/checkout")
    assert (moved.name, moved.email, moved.page) == ("Vera", "vera@example.com", "/checkout")
    renamed = await store.update_visitor(vera.id, "Véra", "v@example.org", None)
    assert (renamed.name, renamed.email, renamed.page) == ("Véra", "v@example.org", "/checkout")
    assert await store.get_visitor(vera.id) == renamed
    assert await store.update_visitor(vera.id, None, None, None) == renamed

    with pytest.raises(NotFound):
        await store.update_visitor(vera.id + 100, "x", None, None)
    assert await store.get_visitor(vera.id + 100) is None
    with pytest.raises(Conflict):
        await store.create_visitor("vh", "Twin", "", "")


# --- conversations ----------------------------------------------------------

async def test_current_conversation_is_created_once(store: Store) -> None:
    vera = await store.create_visitor("vh", "Vera", "", "")
    first = await store.current_conversation(vera.id)
    assert first.status is ConversationStatus.OPEN
    assert (first.last_seq, first.agent_read_seq, first.visitor_read_seq) == (0, 0, 0)
    assert first.assigned_to is None and first.visitor_id == vera.id
    assert await store.current_conversation(vera.id) == first
    assert await store.get_conversation(first.id) == first
    assert await store.get_conversation(first.id + 100) is None
    with pytest.raises(NotFound):
        await store.current_conversation(vera.id + 100)


async def test_current_conversation_concurrently_creates_one(store: Store) -> None:
    vera = await store.create_visitor("vh", "Vera", "", "")
    ids: list[int] = []

    async def fetch() -> None:
        ids.append((await store.current_conversation(vera.id)).id)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(fetch)
    assert len(set(ids)) == 1


async def test_set_conversation_state(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    cid = await new_conversation(store)
    before = await store.get_conversation(cid)
    assert before is not None
    assigned = await store.set_conversation_state(cid, ConversationStatus.ASSIGNED, ann.id)
    assert assigned.status is ConversationStatus.ASSIGNED and assigned.assigned_to == ann.id
    assert assigned.updated_at >= before.updated_at
    assert await store.get_conversation(cid) == assigned
    closed = await store.set_conversation_state(cid, ConversationStatus.CLOSED, None)
    assert closed.status is ConversationStatus.CLOSED and closed.assigned_to is None
    with pytest.raises(NotFound):
        await store.set_conversation_state(cid + 100, ConversationStatus.OPEN, None)
    with pytest.raises(NotFound):
        await store.set_conversation_state(cid, ConversationStatus.ASSIGNED, ann.id + 100)


async def test_mark_read_never_lowers_nor_passes_last_seq(store: Store) -> None:
    cid = await new_conversation(store)
    await store.append_messages([visitor_says(cid, f"m{i}") for i in range(5)])

    read = await store.mark_read(cid, by_visitor=False, seq=3)
    assert (read.agent_read_seq, read.visitor_read_seq, read.unread) == (3, 0, 2)
    assert (await store.mark_read(cid, by_visitor=False, seq=1)).agent_read_seq == 3
    assert (await store.mark_read(cid, by_visitor=False, seq=99)).agent_read_seq == 5
    visitor_read = await store.mark_read(cid, by_visitor=True, seq=4)
    assert (visitor_read.agent_read_seq, visitor_read.visitor_read_seq) == (5, 4)
    assert await store.get_conversation(cid) == visitor_read
    with pytest.raises(NotFound):
        await store.mark_read(cid + 100, by_visitor=True, seq=1)


async def test_list_conversations(store: Store) -> None:
    ann = await store.create_agent("ann", "Ann", "h")
    quiet = await new_conversation(store, "quiet")
    talked = await new_conversation(store, "talked")
    taken = await new_conversation(store, "taken")
    await store.append_messages([visitor_says(talked, "first"), visitor_says(talked, "last")])
    await trio.sleep(0.01)
    await store.set_conversation_state(taken, ConversationStatus.ASSIGNED, ann.id)

    listed = await store.list_conversations()
    assert [s.conversation.id for s in listed] == [taken, talked, quiet]
    by_id = {s.conversation.id: s for s in listed}
    last = by_id[talked].last_message
    assert last is not None and last.content == "last" and last.seq == 2
    assert by_id[quiet].last_message is None
    assert by_id[quiet].visitor.name == "Vera"
    assert by_id[talked].conversation.last_seq == 2

    opened = await store.list_conversations(ConversationStatus.OPEN)
    assert [s.conversation.id for s in opened] == [talked, quiet]
    assigned = await store.list_conversations(status=ConversationStatus.ASSIGNED)
    assert [s.conversation.id for s in assigned] == [taken]
    assert await store.list_conversations(ConversationStatus.CLOSED) == []
    assert len(await store.list_conversations(limit=2)) == 2


async def test_conversations_updated_since(store: Store) -> None:
    """Newest first, from ``since`` (inclusive), at most ``limit``; a new message and a
    change of state are updates, a read mark is not."""
    ann = await store.create_agent("ann", "Ann", "h")
    first = await new_conversation(store, "first")
    second = await new_conversation(store, "second")
    third = await new_conversation(store, "third")
    await store.append_messages([visitor_says(third, "before")])
    await trio.sleep(0.01)
    start = datetime.now(UTC)
    await trio.sleep(0.01)
    assert await store.conversations_updated_since(start) == []

    await store.append_messages([visitor_says(second, "hello")])
    await trio.sleep(0.01)
    await store.set_conversation_state(first, ConversationStatus.ASSIGNED, ann.id)
    await trio.sleep(0.01)
    read_second = await store.mark_read(second, by_visitor=False, seq=1)
    read_third = await store.mark_read(third, by_visitor=False, seq=1)
    assert (read_second.agent_read_seq, read_third.agent_read_seq) == (1, 1)

    updated = await store.conversations_updated_since(start)
    assert [c.id for c in updated] == [first, second]
    assert updated == [await store.get_conversation(first), await store.get_conversation(second)]
    assert updated[0].status is ConversationStatus.ASSIGNED and updated[1].last_seq == 1
    assert updated[0].updated_at > updated[1].updated_at > start

    assert [c.id for c in await store.conversations_updated_since(start, limit=1)] == [first]
    assert await store.conversations_updated_since(start, limit=0) == []
    assert [c.id for c in await store.conversations_updated_since(updated[1].updated_at)] == [
        first, second]
    assert [c.id for c in await store.conversations_updated_since(updated[0].updated_at)] == [
        first]
    assert await store.conversations_updated_since(
        updated[0].updated_at + timedelta(milliseconds=1)) == []
    everything = await store.conversations_updated_since(datetime(2000, 1, 1, tzinfo=UTC))
    assert [c.id for c in everything] == [first, second, third]


# --- messages ---------------------------------------------------------------

async def test_append_assigns_consecutive_seq_per_conversation(store: Store) -> None:
    a = await new_conversation(store, "a")
    b = await new_conversation(store, "b")
    results = await store.append_messages(
        [visitor_says(a, "a1"), visitor_says(b, "b1"), visitor_says(a, "a2")])
    assert [(r.message.conversation_id, r.message.seq) for r in results] == [(a, 1), (b, 1), (a, 2)]
    assert not any(r.duplicate for r in results)
    assert seqs(await store.append_messages([visitor_says(a, "a3")])) == [3]
    assert seqs(await store.append_messages([visitor_says(b, "b2")])) == [2]
    conversation = await store.get_conversation(a)
    assert conversation is not None and conversation.last_seq == 3
    assert [m.content for m in await store.messages_after(a, 0)] == ["a1", "a2", "a3"]
    assert await store.append_messages([]) == []


async def test_append_round_trips_every_field(store: Store) -> None:
    cid = await new_conversation(store)
    sent = NewMessage(conversation_id=cid, sender_role=Role.AI, sender_id=None,
                      sender_name="Assistant", content="Hello", client_id=None,
                      stream_id="stream-1")
    (result,) = await store.append_messages([sent])
    (stored,) = await store.messages_after(cid, 0)
    assert stored == result.message
    assert (stored.sender_role, stored.sender_id, stored.sender_name, stored.stream_id,
            stored.client_id) == (Role.AI, None, "Assistant", "stream-1", None)
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.created_at.microsecond % 1000 == 0
    conversation = await store.get_conversation(cid)
    assert conversation is not None and conversation.updated_at == stored.created_at


async def test_resend_is_idempotent(store: Store) -> None:
    cid = await new_conversation(store)
    (first,) = await store.append_messages([visitor_says(cid, "hi", client_id="c1", visitor_id=7)])
    await store.append_messages([visitor_says(cid, "other", client_id="c2", visitor_id=7)])
    (again,) = await store.append_messages(
        [visitor_says(cid, "hi (resent)", client_id="c1", visitor_id=7)])
    assert again.duplicate and again.message == first.message
    assert [m.content for m in await store.messages_after(cid, 0)] == ["hi", "other"]
    assert (await store.stats()).messages == 2


async def test_resend_within_one_batch_is_stored_once(store: Store) -> None:
    cid = await new_conversation(store)
    results = await store.append_messages([
        visitor_says(cid, "x", client_id="same", visitor_id=1),
        visitor_says(cid, "x", client_id="same", visitor_id=1),
    ])
    assert [r.duplicate for r in results] == [False, True]
    assert results[0].message == results[1].message
    assert len(await store.messages_after(cid, 0)) == 1


async def test_dedupe_key_is_per_sender_and_null_client_ids_never_collide(store: Store) -> None:
    cid = await new_conversation(store)
    ann = await store.create_agent("ann", "Ann", "h")
    batch = [
        visitor_says(cid, "no id"),
        visitor_says(cid, "no id"),
        visitor_says(cid, "visitor 1", client_id="k", visitor_id=1),
        visitor_says(cid, "visitor 2", client_id="k", visitor_id=2),
        NewMessage(cid, Role.AGENT, ann.id, "Ann", "agent", client_id="k"),
        NewMessage(cid, Role.SYSTEM, None, "System", "system", client_id="k"),
        NewMessage(cid, Role.AI, None, "AI", "ai", client_id="k"),
        visitor_says(cid, "case differs", client_id="K", visitor_id=1),
        visitor_says(cid, "trailing space", client_id="k ", visitor_id=1),
    ]
    results = await store.append_messages(batch)
    assert not any(r.duplicate for r in results)
    assert seqs(results) == list(range(1, len(batch) + 1))
    (resent,) = await store.append_messages([NewMessage(cid, Role.SYSTEM, None, "System", "again",
                                                        client_id="k")])
    assert resent.duplicate and resent.message.content == "system"


async def test_batch_with_unknown_conversation_stores_nothing(store: Store) -> None:
    cid = await new_conversation(store)
    with pytest.raises(NotFound):
        await store.append_messages([visitor_says(cid, "kept?", client_id="c1"),
                                     visitor_says(cid + 100, "bad")])
    assert await store.messages_after(cid, 0) == []
    conversation = await store.get_conversation(cid)
    assert conversation is not None and conversation.last_seq == 0
    (retried,) = await store.append_messages([visitor_says(cid, "kept?", client_id="c1")])
    assert not retried.duplicate and retried.message.seq == 1


async def test_messages_after_and_before(store: Store) -> None:
    cid = await new_conversation(store)
    other = await new_conversation(store, "other")
    await store.append_messages([visitor_says(cid, f"m{i}") for i in range(1, 11)])
    await store.append_messages([visitor_says(other, "elsewhere")])

    def contents(messages: list[StoredMessage]) -> list[str]:
        return [m.content for m in messages]

    assert contents(await store.messages_after(cid, 0)) == [f"m{i}" for i in range(1, 11)]
    assert contents(await store.messages_after(cid, 7)) == ["m8", "m9", "m10"]
    assert contents(await store.messages_after(cid, 2, limit=3)) == ["m3", "m4", "m5"]
    assert await store.messages_after(cid, 10) == []
    assert await store.messages_after(cid + 100, 0) == []

    assert contents(await store.messages_before(cid, None, limit=3)) == ["m8", "m9", "m10"]
    assert contents(await store.messages_before(cid, 5, limit=2)) == ["m3", "m4"]
    assert contents(await store.messages_before(cid, 3)) == ["m1", "m2"]
    assert await store.messages_before(cid, 1) == []
    assert len(await store.messages_before(cid, None)) == 10
    assert [m.seq for m in await store.messages_before(cid, None, limit=100)] == list(range(1, 11))


async def test_unicode_and_long_content_round_trip(store: Store) -> None:
    cid = await new_conversation(store)
    texts = [
        "Grüße aus Köln — 你好世界 — مرحبا — 🙂👍🏽🇫🇷 — \U0001d518\U0001d52b\u0000 nul",
        "x" * 4000,
        "🙂" * 4000,
        "line one\nline two\ttab \\ backslash ' quote \" double % percent ? question",
    ]
    await store.append_messages([
        NewMessage(cid, Role.VISITOR, None, "Zoë 👩‍💻", text, client_id=f"ü-{i}")
        for i, text in enumerate(texts)])
    stored = await store.messages_after(cid, 0)
    assert [m.content for m in stored] == texts
    assert all(m.sender_name == "Zoë 👩‍💻" for m in stored)
    assert [m.client_id for m in stored] == [f"ü-{i}" for i in range(len(texts))]


async def test_stats(store: Store) -> None:
    empty = await store.stats()
    assert (empty.agents, empty.agents_disabled, empty.visitors, empty.messages) == (0, 0, 0, 0)
    assert empty.conversations_by_status == {"open": 0, "assigned": 0, "closed": 0}

    ann = await store.create_agent("ann", "Ann", "h")
    await store.create_agent("bob", "Bob", "h")
    await store.set_agent_disabled("bob", True)
    a = await new_conversation(store, "a")
    b = await new_conversation(store, "b")
    await new_conversation(store, "c")
    await store.set_conversation_state(a, ConversationStatus.ASSIGNED, ann.id)
    await store.set_conversation_state(b, ConversationStatus.CLOSED, None)
    await store.append_messages([visitor_says(a, "1"), visitor_says(a, "2"), visitor_says(b, "3"),
                                 visitor_says(b, "3", client_id="d"),
                                 visitor_says(b, "3", client_id="d")])
    stats = await store.stats()
    assert (stats.agents, stats.agents_disabled, stats.visitors, stats.messages) == (2, 1, 3, 4)
    assert stats.conversations_by_status == {"open": 1, "assigned": 1, "closed": 1}


async def test_concurrent_appends_get_distinct_consecutive_seqs(store: Store) -> None:
    cid = await new_conversation(store)
    results: list[AppendResult] = []

    async def send(i: int) -> None:
        results.extend(await store.append_messages([visitor_says(cid, str(i)),
                                                    visitor_says(cid, f"{i}b")]))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(send, i)
    assert sorted(seqs(results)) == list(range(1, 41))
    stored = await store.messages_after(cid, 0)
    assert [m.seq for m in stored] == list(range(1, 41))


async def test_two_instances_on_one_database(
        open_test_store: Callable[[], AbstractAsyncContextManager[Store]]) -> None:
    """Two stores on one database, as two server instances: seqs stay dense and
    unique, and a resend racing through both instances is stored once."""
    async with open_test_store() as one, open_test_store() as two:
        await one.migrate()
        assert await two.migrate() == []
        a = await new_conversation(one, "a")
        b = await new_conversation(two, "b")
        results: list[AppendResult] = []

        async def send(instance: Store, i: int) -> None:
            first, second = (a, b) if i % 2 else (b, a)
            results.extend(await instance.append_messages([
                visitor_says(first, f"{i}-1"), visitor_says(second, f"{i}-2"),
                visitor_says(first, "resend", client_id="same", visitor_id=1)]))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(send, one if i % 2 else two, i)

        fresh = [r.message for r in results if not r.duplicate]
        assert len(fresh) == 41
        for cid in (a, b):
            stored = await one.messages_after(cid, 0)
            assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
            assert {(m.conversation_id, m.seq) for m in fresh if m.conversation_id == cid} == {
                (cid, m.seq) for m in stored}
        assert sum(1 for r in results if r.message.content == "resend" and not r.duplicate) == 1


async def test_resend_racing_into_different_conversations_is_stored_once(
        open_test_store: Callable[[], AbstractAsyncContextManager[Store]]) -> None:
    """The same sender and client id arriving at once through two instances, each
    copy for another conversation: exactly one is stored, the rest are duplicates."""
    async with open_test_store() as one, open_test_store() as two:
        await one.migrate()
        conversations = [await new_conversation(one, str(i)) for i in range(6)]

        async def send(i: int, key: str, results: list[AppendResult]) -> None:
            instance = one if i % 2 else two
            results.extend(await instance.append_messages([NewMessage(
                conversations[i], Role.AGENT, 1, "Ann", f"copy {i}", client_id=key)]))

        for round_ in range(15):
            results: list[AppendResult] = []
            async with trio.open_nursery() as nursery:
                for i in range(len(conversations)):
                    nursery.start_soon(send, i, f"key-{round_}", results)
            originals = {r.message for r in results}
            assert len(originals) == 1
            assert sum(not r.duplicate for r in results) == 1
        assert (await one.stats()).messages == 15


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)],
                         indirect=True)
async def test_mysql_reconnects_after_losing_its_connections(
        store: Store, mysql_database: str) -> None:
    from customer_service.storage import mysql  # noqa: PLC0415

    assert isinstance(store, mysql.MysqlStore)
    await store.create_agent("ann", "Ann", "h")

    def kill_connections() -> None:
        import pymysql  # noqa: PLC0415

        admin = pymysql.connect(host="127.0.0.1", user="root", password="")
        try:
            with admin.cursor() as cursor:
                cursor.execute("SELECT id FROM information_schema.processlist"
                               " WHERE db = %s AND id <> CONNECTION_ID()", (mysql_database,))
                for (thread_id,) in cursor.fetchall():
                    cursor.execute(f"KILL {int(thread_id)}")
        finally:
            admin.close()

    for round_ in range(3):
        await trio.to_thread.run_sync(kill_connections)
        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(store.create_agent, f"agent-{round_}-{i}", "A", "h")
        await trio.to_thread.run_sync(kill_connections)
        for _ in range(10):
            assert await store.get_agent_by_username("ann") is not None
        await trio.to_thread.run_sync(kill_connections)
        await store.ping()
    assert len(await store.list_agents()) == 13


async def test_open_store_chooses_the_configured_backend(
        backend: str, tmp_path: Path, mysql_database: str) -> None:
    from customer_service.storage.mysql import MysqlStore  # noqa: PLC0415
    from customer_service.storage.sqlite import SqliteStore  # noqa: PLC0415

    config = Config(source=str(tmp_path / "cs.toml")).with_changes(
        storage__backend=backend, storage__sqlite_path="relative.db",
        storage__mysql_database=mysql_database, storage__mysql_pool_size=1)
    async with open_store(config) as opened:
        assert isinstance(opened, SqliteStore if backend == "sqlite" else MysqlStore)
        assert await opened.schema_version() == 0
        await opened.ping()
    assert (tmp_path / "relative.db").exists() == (backend == "sqlite")


async def test_needs_agent_flag_is_set_and_cleared_by_assignment(store: Store) -> None:
    visitor = await store.create_visitor("flag-token", "", "", "")
    conversation = await store.current_conversation(visitor.id)
    assert conversation.needs_agent is False
    flagged = await store.set_needs_agent(conversation.id, True)
    assert flagged.needs_agent is True
    assert (await store.get_conversation(conversation.id)).needs_agent is True  # type: ignore[union-attr]
    listed = await store.list_conversations(None, 10)
    assert [s.conversation.needs_agent for s in listed] == [True]
    agent = await store.create_agent("flagger", "Flagger", "x")
    assigned = await store.set_conversation_state(conversation.id, ConversationStatus.ASSIGNED,
                                                  agent.id)
    assert assigned.needs_agent is False
    assert (await store.get_conversation(conversation.id)).needs_agent is False  # type: ignore[union-attr]
    assert (await store.set_needs_agent(conversation.id, True)).needs_agent is False
    with pytest.raises(NotFound):
        await store.set_needs_agent(999_999, True)


async def test_list_conversations_filters_by_assigned_agent(store: Store) -> None:
    alice = await store.create_agent("alice-f", "Alice", "x")
    bob = await store.create_agent("bob-f", "Bob", "x")
    ids = []
    for n in range(3):
        visitor = await store.create_visitor(f"filter-{n}", "", "", "")
        ids.append((await store.current_conversation(visitor.id)).id)
    await store.set_conversation_state(ids[0], ConversationStatus.ASSIGNED, alice.id)
    await store.set_conversation_state(ids[1], ConversationStatus.ASSIGNED, bob.id)
    mine = await store.list_conversations(None, 10, assigned_to=alice.id)
    assert [s.conversation.id for s in mine] == [ids[0]]
    waiting = await store.list_conversations(ConversationStatus.OPEN, 10)
    assert [s.conversation.id for s in waiting] == [ids[2]]
    none = await store.list_conversations(ConversationStatus.OPEN, 10, assigned_to=bob.id)
    assert none == []
