"""Routing decisions: which agents receive what happens in a conversation.

Agents either follow the waiting queue (the default: a dashboard) or not (an
integration or a load generator that only handles its own conversations,
``?queue=off`` on the agent socket).

- A conversation's messages, AI deltas and typing go to its visitor's sockets
  and to: the agents following the queue while nobody is assigned to it, or
  else only the assigned agent (who keeps a conversation they closed), plus any
  agent watching it (an agent watches a conversation after asking for its
  history).
- ``conversation`` events (opened, assigned, transferred, closed, reopened,
  flagged, visitor came or went) go to the agents it concerns (assignee before
  and after, watchers) and, while it is waiting or as it leaves the queue, to
  every agent following the queue, so each queue view stays live.
"""

from __future__ import annotations

from collections.abc import Collection, Set

from customer_service.core.models import Conversation


def agents_for_assignee(assigned_to: int | None, online_agents: Collection[int],
                        watchers: Set[int] = frozenset(),
                        queue: Collection[int] | None = None) -> set[int]:
    """Who receives the messages of a conversation assigned to ``assigned_to`` (None:
    waiting). ``queue``: the agents following the waiting queue (all ``online_agents``
    when None)."""
    if assigned_to is None:
        chosen = set(online_agents if queue is None else queue)
        chosen.update(a for a in watchers if a in online_agents)
        return chosen
    chosen = {a for a in watchers if a in online_agents}
    if assigned_to in online_agents:
        chosen.add(assigned_to)
    return chosen


def agents_for_conversation(conversation: Conversation, online_agents: Collection[int],
                            watchers: Set[int] = frozenset(),
                            queue: Collection[int] | None = None) -> set[int]:
    """``agents_for_assignee`` for a conversation record."""
    return agents_for_assignee(conversation.assigned_to, online_agents, watchers, queue)


def agents_for_change(assigned_to: int | None, online_agents: Collection[int],
                      queue: Collection[int], watchers: Set[int] = frozenset(), *,
                      was_assigned_to: int | None = None, was_waiting: bool = False) -> set[int]:
    """Who receives a ``conversation`` event about a conversation now assigned to
    ``assigned_to``; ``was_assigned_to`` and ``was_waiting`` describe it before a change."""
    concerned = set(watchers)
    concerned.update(a for a in (assigned_to, was_assigned_to) if a is not None)
    chosen = {a for a in concerned if a in online_agents}
    if assigned_to is None or was_waiting:
        chosen.update(queue)
    return chosen


def agents_for_event(before: Conversation | None, after: Conversation,
                     online_agents: Collection[int], queue: Collection[int],
                     watchers: Set[int] = frozenset()) -> set[int]:
    """Who receives a ``conversation`` event about ``after`` (``before``: its state before
    the change, when the event is a change of state)."""
    return agents_for_change(
        after.assigned_to, online_agents, queue, watchers,
        was_assigned_to=before.assigned_to if before is not None else None,
        was_waiting=before is not None and before.assigned_to is None)
