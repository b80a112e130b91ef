"""The ``Store`` contract for business hours and auto-replies, run against every backend
(see conftest.py): the email a visitor leaves, and one auto-reply of each kind per
conversation however many times (and from however many connections) it is posted."""

from __future__ import annotations

import pytest
import trio

from customer_service.core.auto_replies import Kind, auto_client_id
from customer_service.core.models import AppendResult, NewMessage, Role
from customer_service.errors import NotFound
from customer_service.storage.base import Store


async def new_conversation(store: Store, token: str) -> int:
    visitor = await store.create_visitor(f"hash-{token}", "Vera", "", "/")
    return (await store.current_conversation(visitor.id)).id


def auto(conversation_id: int, kind: Kind = "welcome", text: str = "Hi!") -> NewMessage:
    return NewMessage(conversation_id, Role.SYSTEM, None, "system", text,
                      client_id=auto_client_id(kind, conversation_id))


async def test_a_left_email_is_stored_and_read_back_everywhere(store: Store) -> None:
    cid = await new_conversation(store, "a")
    other = await new_conversation(store, "b")
    before = await store.get_conversation(cid)
    assert before is not None and before.left_email == ""
    updated = await store.set_left_email(cid, "vera@example.com")
    assert updated.left_email == "vera@example.com" and updated.id == cid
    assert updated.updated_at >= before.updated_at
    found = await store.get_conversation(cid)
    assert found is not None and found.left_email == "vera@example.com"
    listed = {s.conversation.id: s.conversation.left_email
              for s in await store.list_conversations()}
    assert listed == {cid: "vera@example.com", other: ""}
    # a later address replaces it; the visitor's own details are not changed
    await store.set_left_email(cid, "维拉@例子.中国")
    found = await store.get_conversation(cid)
    assert found is not None and found.left_email == "维拉@例子.中国"
    visitor = await store.get_visitor(found.visitor_id)
    assert visitor is not None and visitor.email == ""


async def test_a_left_email_on_an_unknown_conversation_is_not_found(store: Store) -> None:
    cid = await new_conversation(store, "a")
    with pytest.raises(NotFound, match="no conversation"):
        await store.set_left_email(cid + 100, "vera@example.com")


async def test_an_auto_reply_is_stored_once_per_conversation(store: Store) -> None:
    cid = await new_conversation(store, "a")
    other = await new_conversation(store, "b")
    (first,) = await store.append_messages([auto(cid)])
    assert not first.duplicate and first.message.seq == 1
    # again (a second socket, a reconnect, another instance): the stored one comes back
    (again,) = await store.append_messages([auto(cid, text="Hi again!")])
    assert again.duplicate and again.message.seq == 1 and again.message.content == "Hi!"
    # the same kind in another conversation, another kind in this one: each stored
    (theirs,) = await store.append_messages([auto(other)])
    (away,) = await store.append_messages([auto(cid, "away", "Nobody is here.")])
    assert not theirs.duplicate and theirs.message.conversation_id == other
    assert not away.duplicate and away.message.seq == 2
    messages = await store.messages_after(cid, 0, 10)
    assert [(m.seq, m.sender_role, m.client_id) for m in messages] == [
        (1, Role.SYSTEM, f"auto:welcome:{cid}"), (2, Role.SYSTEM, f"auto:away:{cid}")]


async def test_concurrent_posts_of_one_auto_reply_store_one(store: Store) -> None:
    """Two instances noticing the conversation began at once: one welcome between them
    (on MySQL the posts race on separate pool connections)."""
    cid = await new_conversation(store, "a")
    results: list[AppendResult] = []

    async def post() -> None:
        results.extend(await store.append_messages([auto(cid)]))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(post)
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert {r.message.seq for r in results} == {1}
    conversation = await store.get_conversation(cid)
    assert conversation is not None and conversation.last_seq == 1
