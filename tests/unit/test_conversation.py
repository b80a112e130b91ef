"""The conversation state machine, without an event loop."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from customer_service.core import conversation as machine
from customer_service.core.models import Agent, Conversation, ConversationStatus
from customer_service.errors import Conflict, Forbidden

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def agent(agent_id: int, *, disabled: bool = False) -> Agent:
    return Agent(agent_id, f"agent{agent_id}", f"Agent {agent_id}", "x", disabled, NOW)


def conv(status: ConversationStatus, assigned_to: int | None = None) -> Conversation:
    return Conversation(1, 7, status, assigned_to, 5, 0, 0, NOW, NOW)


OPEN = ConversationStatus.OPEN
ASSIGNED = ConversationStatus.ASSIGNED
CLOSED = ConversationStatus.CLOSED


def test_accept_an_open_conversation_assigns_it_and_notes_it() -> None:
    step = machine.accept(conv(OPEN), agent(1))
    assert (step.status, step.assigned_to) == (ASSIGNED, 1)
    assert step.note == "Agent 1 joined the conversation"


def test_accepting_twice_is_harmless_but_another_agent_conflicts() -> None:
    step = machine.accept(conv(ASSIGNED, 1), agent(1))
    assert (step.status, step.assigned_to, step.note) == (ASSIGNED, 1, None)
    with pytest.raises(Conflict):
        machine.accept(conv(ASSIGNED, 1), agent(2))
    with pytest.raises(Conflict):
        machine.accept(conv(CLOSED, 1), agent(2))


def test_transfer_rules() -> None:
    step = machine.transfer(conv(ASSIGNED, 1), agent(1), agent(2))
    assert (step.status, step.assigned_to) == (ASSIGNED, 2)
    with pytest.raises(Forbidden):
        machine.transfer(conv(ASSIGNED, 1), agent(3), agent(2))
    with pytest.raises(Forbidden):
        machine.transfer(conv(OPEN), agent(1), agent(2))
    with pytest.raises(Conflict):
        machine.transfer(conv(ASSIGNED, 1), agent(1), agent(2, disabled=True))
    with pytest.raises(Conflict):
        machine.transfer(conv(ASSIGNED, 1), agent(1), agent(1))
    with pytest.raises(Conflict):
        machine.transfer(conv(CLOSED, 1), agent(1), agent(2))


def test_close_rules() -> None:
    assert machine.close(conv(ASSIGNED, 1), agent(1)).status is CLOSED
    assert machine.close(conv(OPEN), agent(4)).status is CLOSED
    with pytest.raises(Forbidden):
        machine.close(conv(ASSIGNED, 1), agent(2))
    with pytest.raises(Conflict):
        machine.close(conv(CLOSED, 1), agent(1))


def test_agents_write_only_where_assigned() -> None:
    machine.agent_may_write(conv(ASSIGNED, 1), agent(1))
    with pytest.raises(Forbidden, match="accept"):
        machine.agent_may_write(conv(OPEN), agent(1))
    with pytest.raises(Forbidden, match="another agent"):
        machine.agent_may_write(conv(ASSIGNED, 2), agent(1))
    with pytest.raises(Conflict):
        machine.agent_may_write(conv(CLOSED, 1), agent(1))


def test_a_visitor_writing_reopens_a_closed_conversation_only() -> None:
    step = machine.visitor_writes(conv(CLOSED, 1))
    assert (step.status, step.assigned_to) == (OPEN, None)
    step = machine.visitor_writes(conv(ASSIGNED, 1))
    assert (step.status, step.assigned_to) == (ASSIGNED, 1)


def test_unread_counts_from_the_agent_read_mark() -> None:
    assert conv(OPEN).unread == 5


def test_with_last_seq_changes_only_last_seq() -> None:
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    before = Conversation(id=7, visitor_id=3, status=ConversationStatus.ASSIGNED, assigned_to=2,
                          last_seq=10, agent_read_seq=4, visitor_read_seq=9, created_at=moment,
                          updated_at=moment, needs_agent=True)
    assert before.with_last_seq(11) == dataclasses.replace(before, last_seq=11)


def test_release_gives_the_agents_conversation_back_to_the_queue() -> None:
    change = machine.release(conv(ASSIGNED, 2), agent(2))
    assert (change.status, change.assigned_to) == (OPEN, None)
    assert change.note == ("Agent 2 is no longer available; the conversation is back in the "
                           "queue")


@pytest.mark.parametrize("conversation", [conv(ASSIGNED, 3), conv(OPEN), conv(CLOSED, 2)])
def test_release_leaves_what_is_not_the_agents_as_it_is(conversation: Conversation) -> None:
    change = machine.release(conversation, agent(2))
    assert (change.status, change.assigned_to, change.note) == (
        conversation.status, conversation.assigned_to, None)
