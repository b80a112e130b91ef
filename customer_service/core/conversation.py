"""The conversation state machine: open → assigned → closed, and who may do what.

Each function takes the current ``Conversation`` and the actor, and returns a
``Transition`` (the new status and assignee plus the system line the
conversation records) or raises ``Forbidden`` / ``Conflict``. The server stores
the transition; nothing here touches a database or a socket.

    open ──accept──▶ assigned ──transfer──▶ assigned (another agent)
      ▲                 │
      │               close
      │                 ▼
      └─visitor text── closed ◀──close── open

A visitor writing into a closed conversation reopens it (status open, nobody
assigned): the visitor keeps one thread and one ``seq`` history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from customer_service.core.models import Agent, Conversation, ConversationStatus
from customer_service.errors import Conflict, Forbidden


@dataclass(frozen=True, slots=True)
class Transition:
    status: ConversationStatus
    assigned_to: int | None
    note: str | None
    """A system message to record in the conversation, or None."""


Decision = Callable[[Conversation], Transition]
"""A state-machine step with its actor bound, applied to the conversation's current state."""


def accept(conversation: Conversation, agent: Agent) -> Transition:
    if conversation.status is ConversationStatus.CLOSED:
        raise Conflict(f"conversation {conversation.id} is closed")
    if conversation.status is ConversationStatus.ASSIGNED:
        if conversation.assigned_to == agent.id:
            return Transition(ConversationStatus.ASSIGNED, agent.id, None)
        raise Conflict(f"conversation {conversation.id} is already assigned to another agent")
    return Transition(ConversationStatus.ASSIGNED, agent.id, f"{agent.name} joined the conversation")


def transfer(conversation: Conversation, agent: Agent, target: Agent) -> Transition:
    if conversation.status is ConversationStatus.CLOSED:
        raise Conflict(f"conversation {conversation.id} is closed")
    if conversation.assigned_to != agent.id:
        raise Forbidden("only the agent a conversation is assigned to may transfer it")
    if target.bot:
        raise Conflict(f"'{target.username}' is a bot agent (an API token's): it takes no "
                       "conversation")
    if target.disabled:
        raise Conflict(f"agent '{target.username}' is disabled")
    if target.id == agent.id:
        raise Conflict("the conversation is already yours")
    return Transition(ConversationStatus.ASSIGNED, target.id,
                      f"{agent.name} transferred the conversation to {target.name}")


def release(conversation: Conversation, agent: Agent) -> Transition:
    """An agent who can no longer answer (disabled) gives their conversation back to the
    queue, where any agent may accept it; a conversation not theirs stays as it is."""
    if (conversation.status is not ConversationStatus.ASSIGNED
            or conversation.assigned_to != agent.id):
        return Transition(conversation.status, conversation.assigned_to, None)
    return Transition(ConversationStatus.OPEN, None,
                      f"{agent.name} is no longer available; the conversation is back in "
                      "the queue")


def close(conversation: Conversation, agent: Agent) -> Transition:
    if conversation.status is ConversationStatus.CLOSED:
        raise Conflict(f"conversation {conversation.id} is already closed")
    if conversation.status is ConversationStatus.ASSIGNED and conversation.assigned_to != agent.id:
        raise Forbidden("only the agent a conversation is assigned to may close it")
    return Transition(ConversationStatus.CLOSED, conversation.assigned_to,
                      f"{agent.name} closed the conversation")


def agent_may_write(conversation: Conversation, agent: Agent) -> None:
    """An agent writes only in a conversation assigned to them (accept it first)."""
    if conversation.status is ConversationStatus.CLOSED:
        raise Conflict(f"conversation {conversation.id} is closed")
    if conversation.assigned_to != agent.id:
        if conversation.status is ConversationStatus.OPEN:
            raise Forbidden(f"accept conversation {conversation.id} before writing in it")
        raise Forbidden(f"conversation {conversation.id} is assigned to another agent")


def visitor_writes(conversation: Conversation) -> Transition:
    """What a visitor's message does to the state: reopen a closed conversation."""
    if conversation.status is ConversationStatus.CLOSED:
        return Transition(ConversationStatus.OPEN, None, None)
    return Transition(conversation.status, conversation.assigned_to, None)


def bot_may_write(conversation: Conversation) -> None:
    """A bot agent (an API token's, ``docs/api.md``) writes in any conversation that is not
    closed, whoever it is assigned to: it takes no conversation, so it accepts none."""
    if conversation.status is ConversationStatus.CLOSED:
        raise Conflict(f"conversation {conversation.id} is closed")


def bot_close(conversation: Conversation, bot: Agent) -> Transition:
    """A bot agent closes any conversation that is not closed yet, as an automation would."""
    if conversation.status is ConversationStatus.CLOSED:
        raise Conflict(f"conversation {conversation.id} is already closed")
    return Transition(ConversationStatus.CLOSED, conversation.assigned_to,
                      f"{bot.name} closed the conversation")
