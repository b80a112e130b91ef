"""The ``Store`` contract for auto-assignment (migration 0010), run against every backend
(see conftest.py): capacity and status set and read, open counts, the waiting
conversations oldest first, and the compare-and-set assignment, raced by two stores."""

from __future__ import annotations

import pytest
import trio

from customer_service.core.models import ConversationStatus, NewMessage, Role
from customer_service.errors import NotFound
from customer_service.storage.base import Store
from tests.storage.conftest import OpenStore


async def new_conversation(store: Store, token: str, *, wrote: bool = True) -> int:
    visitor = await store.create_visitor(f"hash-{token}", "Vera", "", "/")
    cid = (await store.current_conversation(visitor.id)).id
    if wrote:
        await store.append_messages([NewMessage(cid, Role.VISITOR, visitor.id, "Vera", "hi")])
    return cid


async def test_capacity_and_status_are_set_and_read(store: Store) -> None:
    alice = await store.create_agent("alice", "Alice", "x")
    await store.create_agent("bob", "Bob", "x")
    loads = {a.username: a for a in await store.agent_loads()}
    assert [a.username for a in await store.agent_loads()] == ["alice", "bob"]  # by id
    assert loads["alice"].capacity is None and loads["alice"].status == "online"
    assert loads["alice"].open_count == 0 and loads["alice"].last_assigned_at == 0
    assert loads["alice"].name == "Alice" and not loads["alice"].disabled

    changed = await store.set_agent_capacity("alice", 2)
    assert changed.capacity == 2 and changed.agent_id == alice.id
    assert (await store.agent_load(alice.id)).capacity == 2  # type: ignore[union-attr]
    assert (await store.set_agent_capacity("alice", None)).capacity is None

    away = await store.set_agent_status(alice.id, "away")
    assert away.status == "away"
    assert (await store.agent_load(alice.id)).status == "away"  # type: ignore[union-attr]
    assert (await store.set_agent_status(alice.id, "offline")).status == "offline"
    # the other agent is untouched
    assert (await store.agent_load(loads["bob"].agent_id)).status == "online"  # type: ignore[union-attr]


async def test_unknown_agents(store: Store) -> None:
    with pytest.raises(NotFound, match="no agent named 'nobody'"):
        await store.set_agent_capacity("nobody", 3)
    with pytest.raises(NotFound, match="no agent with id 999"):
        await store.set_agent_status(999, "away")
    assert await store.agent_load(999) is None


async def test_open_counts_are_assigned_conversations_not_closed_ones(store: Store) -> None:
    alice = await store.create_agent("alice", "Alice", "x")
    first, second, third = [await new_conversation(store, t) for t in "abc"]
    for cid in (first, second, third):
        await store.set_conversation_state(cid, ConversationStatus.ASSIGNED, alice.id)
    await store.set_conversation_state(third, ConversationStatus.CLOSED, alice.id)
    assert (await store.agent_load(alice.id)).open_count == 2  # type: ignore[union-attr]
    await store.set_conversation_state(second, ConversationStatus.OPEN, None)
    assert (await store.agent_loads())[0].open_count == 1


async def test_waiting_conversations_oldest_first_once_the_visitor_wrote(store: Store) -> None:
    alice = await store.create_agent("alice", "Alice", "x")
    first = await new_conversation(store, "a")
    await new_conversation(store, "b", wrote=False)  # a page view: not waiting
    third = await new_conversation(store, "c")
    fourth = await new_conversation(store, "d")
    await store.set_conversation_state(fourth, ConversationStatus.ASSIGNED, alice.id)
    assert [c.id for c in await store.waiting_conversations()] == [first, third]
    assert [c.id for c in await store.waiting_conversations(limit=1)] == [first]
    await store.set_conversation_state(first, ConversationStatus.CLOSED, None)
    assert [c.id for c in await store.waiting_conversations()] == [third]


async def test_only_a_system_line_is_not_waiting(store: Store) -> None:
    cid = await new_conversation(store, "a", wrote=False)
    await store.append_messages([NewMessage(cid, Role.SYSTEM, None, "system", "Hello!")])
    assert await store.waiting_conversations() == []


async def test_assign_waiting_is_a_compare_and_set(store: Store) -> None:
    alice = await store.create_agent("alice", "Alice", "x")
    bob = await store.create_agent("bob", "Bob", "x")
    cid = await new_conversation(store, "a")
    await store.set_needs_agent(cid, True)
    assigned = await store.assign_waiting(cid, alice.id, 1)
    assert assigned is not None
    assert assigned.status is ConversationStatus.ASSIGNED and assigned.assigned_to == alice.id
    assert not assigned.needs_agent
    stored = await store.get_conversation(cid)
    assert stored is not None and stored.assigned_to == alice.id and not stored.needs_agent
    assert stored.status is ConversationStatus.ASSIGNED
    # no longer waiting: nobody else gets it, nothing changes
    assert await store.assign_waiting(cid, bob.id, 5) is None
    assert (await store.get_conversation(cid)).assigned_to == alice.id  # type: ignore[union-attr]
    loads = {a.agent_id: a for a in await store.agent_loads()}
    assert loads[alice.id].last_assigned_at > 0 and loads[bob.id].last_assigned_at == 0
    assert await store.assign_waiting(cid + 100, bob.id, 5) is None  # unknown conversation


async def test_assign_waiting_respects_capacity_status_and_disabled(store: Store) -> None:
    alice = await store.create_agent("alice", "Alice", "x")
    first, second = await new_conversation(store, "a"), await new_conversation(store, "b")
    assert await store.assign_waiting(first, alice.id, 1) is not None
    assert await store.assign_waiting(second, alice.id, 1) is None  # full
    assert (await store.get_conversation(second)).status is ConversationStatus.OPEN  # type: ignore[union-attr]
    await store.set_agent_status(alice.id, "away")
    assert await store.assign_waiting(second, alice.id, 5) is None  # away
    await store.set_agent_status(alice.id, "online")
    await store.set_agent_disabled("alice", True)
    assert await store.assign_waiting(second, alice.id, 5) is None  # disabled
    await store.set_agent_disabled("alice", False)
    assigned = await store.assign_waiting(second, alice.id, 2)
    assert assigned is not None and assigned.assigned_to == alice.id
    assert await store.assign_waiting(second, 999, 5) is None  # unknown agent


async def test_turns_grow_strictly(store: Store) -> None:
    agents = [await store.create_agent(name, name, "x") for name in ("a1", "a2", "a3")]
    for index, agent in enumerate(agents):
        cid = await new_conversation(store, f"t{index}")
        assert await store.assign_waiting(cid, agent.id, 5) is not None
    turns = [a.last_assigned_at for a in await store.agent_loads()]
    assert turns == sorted(turns) and len(set(turns)) == 3


async def test_two_stores_racing_assign_each_conversation_once_within_capacity(
        store: Store, open_test_store: OpenStore) -> None:
    """Two instances (two stores on one database) assign the same conversations to the
    same agents at once: each conversation goes to one agent, nobody past capacity."""
    agents = [await store.create_agent(name, name, "x") for name in ("alice", "bob")]
    waiting = [await new_conversation(store, f"r{i}") for i in range(8)]
    won: list[tuple[int, int]] = []

    async def race(racer: Store, order: list[int]) -> None:
        for cid in waiting:
            for agent_id in order:
                if await racer.assign_waiting(cid, agent_id, 3) is not None:
                    won.append((cid, agent_id))
                    break

    async with open_test_store() as other, trio.open_nursery() as nursery:
        nursery.start_soon(race, store, [a.id for a in agents])
        nursery.start_soon(race, other, [a.id for a in reversed(agents)])
    assigned = [cid for cid, _ in won]
    assert len(assigned) == len(set(assigned)) == 6  # 2 agents x capacity 3
    loads = await store.agent_loads()
    assert [a.open_count for a in loads] == [3, 3]
    for cid, agent_id in won:
        stored = await store.get_conversation(cid)
        assert stored is not None and stored.assigned_to == agent_id
