"""Routing decisions: which agents receive what happens in a conversation.

- A conversation's messages, AI deltas and typing go to its visitor's sockets
  and to: every online agent while nobody is assigned to it, or else only the
  assigned agent (who keeps a conversation they closed), plus any agent
  watching it (an agent watches a conversation after asking for its history).
- ``conversation`` events (opened, assigned, transferred, closed, visitor came
  or went) go to every online agent, so each dashboard's list stays live.
"""

from __future__ import annotations

from collections.abc import Collection, Set

from customer_service.core.models import Conversation


def agents_for_conversation(conversation: Conversation, online_agents: Collection[int],
                            watchers: Set[int] = frozenset()) -> set[int]:
    if conversation.assigned_to is None:
        return set(online_agents)
    chosen = {a for a in watchers if a in online_agents}
    if conversation.assigned_to in online_agents:
        chosen.add(conversation.assigned_to)
    return chosen
