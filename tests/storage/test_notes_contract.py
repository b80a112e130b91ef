"""The ``Store`` contract for private notes, run against every backend (see conftest.py)."""

from __future__ import annotations

import pytest

from customer_service.core.models import NewMessage, Role
from customer_service.core.notes import timeline_key
from customer_service.errors import NotFound
from customer_service.storage.base import Store


async def setup(store: Store) -> tuple[int, int, int]:
    """A conversation with two messages, and two agents: (conversation, alice, bob)."""
    alice = await store.create_agent("alice", "Alice", "x")
    bob = await store.create_agent("bob", "Bob", "x")
    visitor = await store.create_visitor("hash-v", "Vera", "", "/")
    cid = (await store.current_conversation(visitor.id)).id
    await store.append_messages([
        NewMessage(cid, Role.VISITOR, visitor.id, "Vera", "hello", client_id="m1"),
        NewMessage(cid, Role.VISITOR, visitor.id, "Vera", "anyone?", client_id="m2")])
    return cid, alice.id, bob.id


async def test_a_note_is_stored_after_the_last_message_and_listed_oldest_first(
        store: Store) -> None:
    cid, alice, bob = await setup(store)
    first = await store.add_note(cid, alice, "Alice", "VIP, be nice", client_id="n1")
    assert not first.duplicate
    note = first.note
    assert (note.conversation_id, note.agent_id, note.agent_name, note.content,
            note.after_seq, note.client_id) == (cid, alice, "Alice", "VIP, be nice", 2, "n1")
    await store.append_messages([NewMessage(cid, Role.AGENT, bob, "Bob", "Hi!", client_id="r")])
    second = (await store.add_note(cid, bob, "Bob", "我来处理", client_id="n1")).note
    assert second.after_seq == 3
    listed = await store.list_notes(cid)
    assert [(n.id, n.content, n.agent_name) for n in listed] == [
        (note.id, "VIP, be nice", "Alice"), (second.id, "我来处理", "Bob")]
    assert listed[0].created_at == note.created_at
    assert sorted(listed, key=timeline_key) == listed
    assert [n.id for n in await store.list_notes(cid, limit=1)] == [second.id]


async def test_a_resend_with_the_same_client_id_is_stored_once(store: Store) -> None:
    cid, alice, _ = await setup(store)
    first = await store.add_note(cid, alice, "Alice", "call back at 5", client_id="same")
    again = await store.add_note(cid, alice, "Alice", "call back at 5", client_id="same")
    assert again.duplicate and again.note == first.note
    without_id = [await store.add_note(cid, alice, "Alice", "twice") for _ in range(2)]
    assert not any(added.duplicate for added in without_id)
    assert len(await store.list_notes(cid)) == 3


async def test_notes_never_enter_the_message_stream(store: Store) -> None:
    cid, alice, _ = await setup(store)
    conversation = await store.get_conversation(cid)
    await store.add_note(cid, alice, "Alice", "secret: refund approved", client_id="n")
    after = await store.get_conversation(cid)
    assert after is not None and conversation is not None
    assert after.last_seq == conversation.last_seq == 2
    contents = [m.content for m in await store.messages_after(cid, 0)]
    contents += [m.content for m in await store.messages_before(cid, None, 100)]
    assert contents and not any("secret" in c for c in contents)
    summaries = await store.list_conversations()
    assert all(s.last_message is None or "secret" not in s.last_message.content
               for s in summaries)


async def test_unknown_conversation(store: Store) -> None:
    _, alice, _ = await setup(store)
    with pytest.raises(NotFound, match="no conversation 999"):
        await store.add_note(999, alice, "Alice", "lost")
    assert await store.list_notes(999) == []


async def test_notes_of_one_conversation_stay_there(store: Store) -> None:
    cid, alice, _ = await setup(store)
    other_visitor = await store.create_visitor("hash-w", "Walt", "", "/")
    other = (await store.current_conversation(other_visitor.id)).id
    await store.add_note(cid, alice, "Alice", "here")
    await store.add_note(other, alice, "Alice", "there")
    assert [n.content for n in await store.list_notes(cid)] == ["here"]
    assert [n.content for n in await store.list_notes(other)] == ["there"]
    assert (await store.list_notes(other))[0].after_seq == 0
