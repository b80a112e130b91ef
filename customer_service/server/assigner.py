"""Auto-assignment's edge: a task that hands waiting conversations to agents with room.

``[routing] mode`` manual: nothing runs. Otherwise the task wakes when something may
have made room or work (the hub's ``on_routing_change``: a conversation began waiting
or changed state here or on another instance, an agent came, went or changed status),
and every ``SWEEP_SECONDS`` for what it was not told (a capacity raised from the CLI, a
lost bus event). A pass reads the agents' loads and the waiting conversations, lets
``core.assignment.plan`` decide, and stores each assignment through
``ChatService.assign_waiting``: the store's compare-and-set (still waiting, the agent
still online with room), then the same system line, AI stop and ``conversation`` event
as an accept. Every instance runs a pass on the events it hears; the compare-and-set
makes exactly one of them assign each conversation, and a lost race only means another
look soon (``RETRY_SECONDS``).
"""

from __future__ import annotations

import logging

import trio

from customer_service.core.assignment import AgentLoad, eligible, plan
from customer_service.core.models import Agent
from customer_service.errors import CustomerServiceError
from customer_service.server.agent_status import status_text
from customer_service.server.service import ChatService

log = logging.getLogger(__name__)

SWEEP_SECONDS = 2.0
"""A pass at least this often, even when nothing said so."""
RETRY_SECONDS = 0.2
"""The next pass after a race lost to another instance, or with more waiting than a page."""
MIN_GAP_SECONDS = 0.05
"""Passes are at least this far apart: a burst of messages costs one pass, not one each."""
PAGE = 100
"""Waiting conversations considered per pass (the oldest)."""


class Assigner:
    def __init__(self, service: ChatService) -> None:
        self.service = service
        self._wake = trio.Event()
        self.passes = 0
        """Passes run so far (tests wait on it instead of on time)."""

    def poke(self) -> None:
        """Something changed: run a pass soon. Never waits."""
        self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        routing = self.service.config.routing
        if routing.mode == "manual":
            task_status.started()
            return
        self.service.hub.on_routing_change = self.poke
        task_status.started()
        log.info("auto-assignment: %s, %d open conversations per agent unless set",
                 routing.mode, routing.default_capacity)
        deadline = self.service.config.server.message_timeout * 4
        pause = 0.0
        try:
            while True:
                with trio.move_on_after(pause):
                    await self._wake.wait()
                self._wake = trio.Event()  # what arrives during the pass wakes the next
                again = False
                try:
                    with trio.fail_after(deadline):
                        again = await self.run_once()
                except trio.TooSlowError:
                    log.warning("an auto-assignment pass took over %ss; trying again", deadline)
                except CustomerServiceError as exc:
                    log.warning("an auto-assignment pass failed (%s); trying again", exc)
                self.passes += 1
                pause = RETRY_SECONDS if again else SWEEP_SECONDS
                await trio.sleep(MIN_GAP_SECONDS)
        finally:
            self.service.hub.on_routing_change = None

    async def run_once(self) -> bool:
        """One pass; True when another should follow soon."""
        service = self.service
        hub = service.hub
        routing = service.config.routing
        loads = await service.store.agent_loads()
        self._refresh_statuses(loads)
        online = hub.online_agents()
        if not any(eligible(load, online)
                   and load.open_count < load.capacity_or(routing.default_capacity)
                   for load in loads):
            return False  # nobody can take one: no need to read the queue
        waiting = await service.store.waiting_conversations(PAGE)
        chosen = plan([c.id for c in waiting], loads, online, routing.mode,
                      routing.default_capacity)
        agents: dict[int, Agent | None] = {}
        again = len(waiting) == PAGE and len(chosen) == len(waiting)
        for item in chosen:
            if item.agent_id not in agents:
                agents[item.agent_id] = await service.store.get_agent(item.agent_id)
            agent = agents[item.agent_id]
            if agent is None:
                continue
            done = await service.assign_waiting(item.conversation_id, agent, item.capacity)
            if done is None:
                log.info("[conv %s] not assigned to agent %s: it or the agent changed "
                         "meanwhile; looking again", item.conversation_id, agent.id)
                again = True
            else:
                log.info("[conv %s] auto-assigned to agent %s (%s)", item.conversation_id,
                         agent.id, agent.username)
        return again

    def _refresh_statuses(self, loads: list[AgentLoad]) -> None:
        """The stored statuses win over what this instance heard (an event may have been
        lost); dashboards here hear of the ones that changed."""
        hub = self.service.hub
        changed = hub.statuses.replace({load.agent_id: load.status for load in loads})
        for load in loads:
            if load.agent_id in changed:
                hub.to_agents(tuple(hub.agents), (0, 0, status_text(load.agent_id, load.status)))
