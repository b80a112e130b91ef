"""Auto-assignment decisions (core/assignment.py): never over capacity, never an away,
offline, disabled or signed-out agent, oldest first, agents taking turns (round_robin),
the least busy first (least_busy), and the statuses and capacities as typed."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.assignment import (
    AGENT_STATUSES,
    MAX_CAPACITY,
    AgentLoad,
    StatusBoard,
    assigned,
    check_status,
    parse_capacity,
    plan,
)
from customer_service.core.models import ConversationStatus
from customer_service.errors import BadRequest


def load(agent_id: int, *, status: str = "online", capacity: int | None = None,
         open_count: int = 0, last: int = 0, disabled: bool = False) -> AgentLoad:
    return AgentLoad(agent_id, f"agent{agent_id}", f"Agent {agent_id}", check_status(status),
                     capacity, open_count, last, disabled)


def pairs(result: list) -> list[tuple[int, int]]:  # type: ignore[type-arg]
    return [(a.conversation_id, a.agent_id) for a in result]


def test_manual_assigns_nothing() -> None:
    assert plan([1, 2], [load(1)], {1}, "manual", 5) == []


def test_round_robin_three_agents_with_capacity_one_the_fourth_waits() -> None:
    agents = [load(1, capacity=1), load(2, capacity=1), load(3, capacity=1)]
    result = plan([10, 11, 12, 13], agents, {1, 2, 3}, "round_robin", 5)
    assert pairs(result) == [(10, 1), (11, 2), (12, 3)]
    assert [a.capacity for a in result] == [1, 1, 1]


def test_round_robin_starts_with_who_waited_longest_for_a_turn() -> None:
    agents = [load(1, last=300), load(2, last=100), load(3, last=200)]
    assert pairs(plan([1, 2, 3, 4], agents, {1, 2, 3}, "round_robin", 5)) == [
        (1, 2), (2, 3), (3, 1), (4, 2)]


def test_least_busy_picks_the_agent_with_fewest_open() -> None:
    agents = [load(1, open_count=3), load(2, open_count=1), load(3, open_count=2)]
    assert pairs(plan([7], agents, {1, 2, 3}, "least_busy", 5)) == [(7, 2)]
    # then it fills up to the others' level, ties going to who waited longest
    result = plan([7, 8, 9, 10], agents, {1, 2, 3}, "least_busy", 5)
    assert pairs(result) == [(7, 2), (8, 3), (9, 2), (10, 1)]


def test_away_offline_disabled_and_signed_out_agents_get_nothing() -> None:
    agents = [load(1, status="away"), load(2, status="offline"), load(3, disabled=True),
              load(4), load(5)]
    assert pairs(plan([1, 2], agents, {1, 2, 3, 4}, "round_robin", 5)) == [(1, 4), (2, 4)]
    assert plan([1], agents[:3], {1, 2, 3}, "least_busy", 5) == []


def test_the_default_capacity_applies_to_agents_without_their_own() -> None:
    agents = [load(1), load(2, capacity=3)]
    counts = Counter(a.agent_id for a in plan(list(range(10)), agents, {1, 2},
                                             "round_robin", 2))
    assert counts == {1: 2, 2: 3}


def test_a_full_agent_gets_nothing() -> None:
    assert plan([1], [load(1, capacity=2, open_count=2)], {1}, "least_busy", 5) == []
    assert plan([1], [load(1, open_count=9)], {1}, "round_robin", 5) == []  # over: manual


def test_auto_assignment_reads_as_an_accept() -> None:
    change = assigned(4, "Alice")
    assert change.status is ConversationStatus.ASSIGNED and change.assigned_to == 4
    assert change.note == "Alice joined the conversation"


agent_loads = st.lists(
    st.builds(load, st.integers(1, 12), status=st.sampled_from(AGENT_STATUSES),
              capacity=st.none() | st.integers(1, 4), open_count=st.integers(0, 5),
              last=st.integers(0, 50), disabled=st.booleans()),
    max_size=8, unique_by=lambda a: a.agent_id)


@given(agents=agent_loads, waiting=st.lists(st.integers(1, 10_000), unique=True, max_size=30),
       online=st.sets(st.integers(1, 12)), mode=st.sampled_from(["round_robin", "least_busy"]),
       default=st.integers(1, 4))
def test_never_over_capacity_never_an_unavailable_agent_oldest_first(
        agents: list[AgentLoad], waiting: list[int], online: set[int], mode: str,
        default: int) -> None:
    result = plan(waiting, agents, online, mode, default)  # type: ignore[arg-type]
    by_id = {a.agent_id: a for a in agents}
    given_to = Counter(a.agent_id for a in result)
    for agent_id, count in given_to.items():
        agent = by_id[agent_id]
        assert agent.status == "online" and not agent.disabled and agent_id in online
        assert agent.open_count + count <= agent.capacity_or(default)
    # each conversation at most once, the oldest first, as many as there is room for
    assert [a.conversation_id for a in result] == waiting[:len(result)]
    room = sum(max(0, a.capacity_or(default) - a.open_count) for a in agents
               if a.status == "online" and not a.disabled and a.agent_id in online)
    assert len(result) == min(len(waiting), room)


@given(count=st.integers(1, 6), rounds=st.integers(0, 40),
       start=st.lists(st.integers(0, 1000), min_size=6, max_size=6))
def test_round_robin_takes_turns(count: int, rounds: int, start: list[int]) -> None:
    agents = [load(i, capacity=MAX_CAPACITY, last=start[i - 1]) for i in range(1, count + 1)]
    result = plan(list(range(rounds)), agents, set(range(1, count + 1)), "round_robin", 5)
    given_to = Counter(a.agent_id for a in result)
    shares = [given_to.get(i, 0) for i in range(1, count + 1)]
    assert max(shares) - min(shares) <= 1
    # nobody gets a second before everybody had a first
    firsts = [a.agent_id for a in result[:count]]
    assert len(set(firsts)) == len(firsts)


@given(agents=agent_loads, waiting=st.lists(st.integers(1, 100), unique=True, max_size=20))
def test_least_busy_always_picks_a_minimum(agents: list[AgentLoad], waiting: list[int]) -> None:
    online = {a.agent_id for a in agents}
    default = 3
    result = plan(waiting, agents, online, "least_busy", default)
    counts = {a.agent_id: a.open_count for a in agents}
    for item in result:
        with_room = [a.agent_id for a in agents if a.status == "online" and not a.disabled
                     and counts[a.agent_id] < a.capacity_or(default)]
        assert counts[item.agent_id] == min(counts[a] for a in with_room)
        counts[item.agent_id] += 1


@pytest.mark.parametrize(("text", "value"), [("2", 2), (" 1000 ", 1000), ("default", None),
                                             ("DEFAULT", None)])
def test_capacity_as_typed(text: str, value: int | None) -> None:
    assert parse_capacity(text) == value


@pytest.mark.parametrize("text", ["-1", "0", "1001", "two", "2.5", ""])
def test_bad_capacity_names_the_option(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_capacity(text)
    assert caught.value.message.startswith("--capacity must be a whole number from 1 to 1000")


def test_statuses() -> None:
    assert [check_status(s) for s in ("online", "away", "offline")] == list(AGENT_STATUSES)
    with pytest.raises(BadRequest, match="status must be one of online, away, offline"):
        check_status("busy")


def test_status_board() -> None:
    board = StatusBoard()
    assert board.status(1) == "online"  # not heard of: the stored default
    assert board.note(1, "away") is True
    assert board.note(1, "away") is False
    assert board.available({1, 2}) == {2}
    assert board.replace({1: "online", 3: "offline"}) == {1, 3}
    assert board.available({1, 2, 3}) == {1, 2}
