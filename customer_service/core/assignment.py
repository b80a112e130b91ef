"""Auto-assignment: which waiting conversation goes to which agent, and agents' status.

``[routing] mode`` decides how new conversations reach agents:

- ``manual``: they wait in the queue until an agent accepts one (nothing here runs);
- ``round_robin``: each goes to the agent with room who was given one the longest ago
  (never-assigned agents first, then by id), so agents take turns;
- ``least_busy``: to the agent with room holding the fewest open conversations (ties:
  the one given a conversation the longest ago, then by id).

An agent takes part when it is signed in somewhere (a socket on any instance), its
status is ``online`` (``away``: keeps its conversations, gets no new ones; ``offline``:
signed in but taking nothing), it is not disabled, and it holds fewer open (assigned)
conversations than its capacity (its own, or ``[routing] default_capacity``).
Waiting conversations are handed out oldest first.

``plan`` only decides; the server (``server/assigner.py``) stores each assignment with a
compare-and-set that checks again that the conversation still waits and the agent still
has room, so two instances deciding at once never assign one conversation twice nor fill
an agent past its capacity.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

from customer_service.core.conversation import Transition
from customer_service.core.models import ConversationStatus
from customer_service.errors import BadRequest

AgentStatus = Literal["online", "away", "offline"]
AGENT_STATUSES: Final[tuple[AgentStatus, ...]] = get_args(AgentStatus)
RoutingMode = Literal["manual", "round_robin", "least_busy"]

MAX_CAPACITY: Final = 1000
"""The most open conversations one agent may be given (as ``[routing] default_capacity``)."""


def check_status(value: object) -> AgentStatus:
    """``value`` as an agent status, or ``BadRequest`` naming the allowed ones."""
    for status in AGENT_STATUSES:
        if value == status:
            return status
    raise BadRequest(f"status must be one of {', '.join(AGENT_STATUSES)} (got {value!r})")


def parse_capacity(text: str, option: str = "--capacity") -> int | None:
    """A capacity as typed: a whole number from 1 to ``MAX_CAPACITY``, or ``default``
    (None: the agent follows ``[routing] default_capacity``)."""
    cleaned = text.strip()
    if cleaned.lower() == "default":
        return None
    problem = f"{option} must be a whole number from 1 to {MAX_CAPACITY}, or 'default'"
    try:
        value = int(cleaned, 10)
    except ValueError:
        raise BadRequest(f"{problem} (got {text!r})") from None
    if not 1 <= value <= MAX_CAPACITY:
        raise BadRequest(f"{problem} (got {value})")
    return value


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """What routing knows of one agent (a row of ``Store.agent_loads``)."""

    agent_id: int
    username: str
    name: str
    status: AgentStatus
    capacity: int | None
    """The agent's own capacity; None: ``[routing] default_capacity``."""
    open_count: int
    """Conversations assigned to the agent and not closed."""
    last_assigned_at: int = 0
    """When auto-assignment last gave it a conversation (ms since the epoch; 0: never)."""
    disabled: bool = False
    bot: bool = False
    """An API token's bot agent: never given a conversation."""

    def capacity_or(self, default: int) -> int:
        return self.capacity if self.capacity is not None else default


@dataclass(frozen=True, slots=True)
class Assignment:
    conversation_id: int
    agent_id: int
    capacity: int
    """The agent's capacity the decision counted with (the store checks it again)."""


def eligible(agent: AgentLoad, online: Collection[int]) -> bool:
    """Whether the agent may be given new conversations at all (room aside)."""
    return (agent.status == "online" and not agent.disabled and not agent.bot
            and agent.agent_id in online)


def plan(waiting: Sequence[int], agents: Iterable[AgentLoad], online: Collection[int],
         mode: RoutingMode, default_capacity: int) -> list[Assignment]:
    """Assignments for ``waiting`` (conversation ids, oldest first): each to an eligible
    agent with room, chosen by ``mode``, until the conversations or the room run out.
    A conversation is never skipped for a younger one: the oldest go first."""
    if mode == "manual":
        return []
    # agent id -> [open count, turn (when last given one), capacity]
    pool: dict[int, list[int]] = {}
    for agent in agents:
        capacity = agent.capacity_or(default_capacity)
        if eligible(agent, online) and agent.open_count < capacity:
            pool[agent.agent_id] = [agent.open_count, agent.last_assigned_at, capacity]
    turn = max((entry[1] for entry in pool.values()), default=0)
    chosen: list[Assignment] = []
    for conversation_id in waiting:
        if not pool:
            break
        if mode == "least_busy":
            agent_id = min(pool, key=lambda a: (pool[a][0], pool[a][1], a))
        else:
            agent_id = min(pool, key=lambda a: (pool[a][1], a))
        entry = pool[agent_id]
        chosen.append(Assignment(conversation_id, agent_id, entry[2]))
        turn += 1
        entry[0] += 1
        entry[1] = turn
        if entry[0] >= entry[2]:
            del pool[agent_id]
    return chosen


def assigned(agent_id: int, agent_name: str) -> Transition:
    """The state change of an auto-assignment: what the visitor and agents see is the same
    as when the agent accepts it (``core.conversation.accept``)."""
    return Transition(ConversationStatus.ASSIGNED, agent_id,
                      f"{agent_name} joined the conversation")


class StatusBoard:
    """Agents' statuses as this instance knows them (read from the store, changed by the
    agents' ``status`` frames here and by the other instances' events). An agent it has
    not heard of is ``online``, the stored default."""

    def __init__(self) -> None:
        self._statuses: dict[int, AgentStatus] = {}

    def status(self, agent_id: int) -> AgentStatus:
        return self._statuses.get(agent_id, "online")

    def note(self, agent_id: int, status: AgentStatus) -> bool:
        """Note a status; True when it changed what this board said."""
        before = self.status(agent_id)
        self._statuses[agent_id] = status
        return before != status

    def replace(self, statuses: Mapping[int, AgentStatus]) -> set[int]:
        """Every agent's status (a fresh read of the store); returns the agents whose
        status changed by it."""
        changed = {a for a in set(self._statuses) | set(statuses)
                   if self._statuses.get(a, "online") != statuses.get(a, "online")}
        self._statuses = dict(statuses)
        return changed

    def available(self, online: Iterable[int]) -> set[int]:
        """The agents among ``online`` whose status is online: who can take a
        conversation now."""
        return {a for a in online if self.status(a) == "online"}
