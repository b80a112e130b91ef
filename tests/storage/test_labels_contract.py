"""The ``Store`` contract for conversation labels, run against every backend (see
conftest.py): add, remove, the limit, the list filter (every label: AND)."""

from __future__ import annotations

import pytest
import trio

from customer_service.core.labels import MAX_LABELS
from customer_service.core.models import ConversationStatus
from customer_service.errors import Conflict, NotFound
from customer_service.storage.base import Store


async def new_conversation(store: Store, token: str) -> int:
    visitor = await store.create_visitor(f"hash-{token}", "Vera", "", "/")
    return (await store.current_conversation(visitor.id)).id


async def test_add_and_remove_labels(store: Store) -> None:
    cid = await new_conversation(store, "a")
    assert await store.conversation_labels(cid) == []
    assert await store.add_conversation_labels(cid, ["vip", "billing"]) == ["billing", "vip"]
    # adding one it has changes nothing; a Chinese label is a label like any other
    assert await store.add_conversation_labels(cid, ["vip", "退款"]) == ["billing", "vip", "退款"]
    assert await store.conversation_labels(cid) == ["billing", "vip", "退款"]
    assert await store.remove_conversation_labels(cid, ["vip", "missing"]) == ["billing", "退款"]
    assert await store.remove_conversation_labels(cid, []) == ["billing", "退款"]
    assert await store.conversation_labels(cid) == ["billing", "退款"]


async def test_labels_compare_every_character(store: Store) -> None:
    """Labels arrive normalized; the store neither folds case nor ignores trailing spaces
    (MySQL's PAD collations would), so it never merges two stored spellings."""
    cid = await new_conversation(store, "a")
    assert await store.add_conversation_labels(cid, ["a", "a ", "A"]) == ["A", "a", "a "]
    assert await store.remove_conversation_labels(cid, ["a"]) == ["A", "a "]


async def test_unknown_conversation_is_not_found(store: Store) -> None:
    cid = await new_conversation(store, "a")
    with pytest.raises(NotFound, match=f"no conversation {cid + 100}"):
        await store.add_conversation_labels(cid + 100, ["vip"])
    with pytest.raises(NotFound, match=f"no conversation {cid + 100}"):
        await store.remove_conversation_labels(cid + 100, ["vip"])
    assert await store.conversation_labels(cid + 100) == []


async def test_at_most_max_labels(store: Store) -> None:
    cid = await new_conversation(store, "a")
    names = [f"l{i:02d}" for i in range(MAX_LABELS)]
    assert await store.add_conversation_labels(cid, names) == names
    with pytest.raises(Conflict, match=f"at most {MAX_LABELS}"):
        await store.add_conversation_labels(cid, ["one-more"])
    assert await store.add_conversation_labels(cid, names[:3]) == names  # no new one: fine
    assert await store.conversation_labels(cid) == names  # nothing of the refused batch


async def test_labels_are_per_conversation(store: Store) -> None:
    first, second = await new_conversation(store, "a"), await new_conversation(store, "b")
    await store.add_conversation_labels(first, ["vip"])
    await store.add_conversation_labels(second, ["vip", "billing"])
    await store.remove_conversation_labels(first, ["vip"])
    assert await store.conversation_labels(first) == []
    assert await store.conversation_labels(second) == ["billing", "vip"]


async def test_list_filters_by_every_label_and_carries_them(store: Store) -> None:
    vip = await new_conversation(store, "vip")
    await trio.sleep(0.01)
    both = await new_conversation(store, "both")
    await trio.sleep(0.01)
    plain = await new_conversation(store, "plain")
    await store.add_conversation_labels(vip, ["vip"])
    await store.add_conversation_labels(both, ["billing", "vip"])

    listed = await store.list_conversations()
    assert [(s.conversation.id, s.labels) for s in listed] == [
        (plain, ()), (both, ("billing", "vip")), (vip, ("vip",))]
    tagged = await store.list_conversations(labels=["vip"])
    assert [s.conversation.id for s in tagged] == [both, vip]
    assert tagged[0].labels == ("billing", "vip")  # all its labels, not only the filter's
    assert [s.conversation.id for s in await store.list_conversations(
        labels=["vip", "billing"])] == [both]
    assert await store.list_conversations(labels=["vip", "nobody"]) == []
    assert await store.list_conversations(labels=["VIP"]) == []
    # with the other filters
    assert [s.conversation.id for s in await store.list_conversations(
        ConversationStatus.OPEN, 1, labels=["vip"])] == [both]
    assert await store.list_conversations(ConversationStatus.CLOSED, labels=["vip"]) == []


async def test_conversation_extras_reads_the_contact_and_the_labels_at_once(
        store: Store) -> None:
    plain = await new_conversation(store, "extras-plain")
    assert await store.conversation_extras(plain) == (None, [])
    await store.add_conversation_labels(plain, ["vip", "billing"])
    assert await store.conversation_extras(plain) == (None, ["billing", "vip"])

    visitor = await store.create_visitor("extras-known", "", "", "")
    contact, conversation = await store.link_visitor(visitor.id, "u-extras", "Ann", None)
    found, labels = await store.conversation_extras(conversation.id)
    assert found is not None and (found.id, found.name) == (contact.id, "Ann")
    assert labels == []
