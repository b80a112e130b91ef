"""Agents' status (online, away, offline): set by the agent (the ``status`` frame, ``POST
/api/v1/me/status``), stored on its row so it outlives the socket and every instance reads
it, and announced to the instances and the dashboards (``hub.agent_status``)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from customer_service.core import frames
from customer_service.core.api_types import StatusBody
from customer_service.core.assignment import AgentLoad, AgentStatus, check_status
from customer_service.core.bus_events import StatusEvent
from customer_service.core.models import Agent
from customer_service.errors import BadRequest
from customer_service.server.hub import Hub
from customer_service.server.service import ChatService

log = logging.getLogger(__name__)


_body_decoder = msgspec.json.Decoder(StatusBody)


def status_text(agent_id: int, status: str) -> str:
    """The ``agent_status`` frame dashboards receive."""
    return frames.encode(frames.AgentStatusOut(agent_id=agent_id, status=status))


def announce(hub: Hub, agent_id: int, status: AgentStatus) -> None:
    """Tell this instance (its board, its dashboards when it changed) and the others."""
    hub.agent_status(StatusEvent(agent_id, status, status_text(agent_id, status)))


async def set_status(service: ChatService, agent: Agent, status: AgentStatus) -> AgentLoad:
    load = await service.store.set_agent_status(agent.id, status)
    log.info("[agent %s] %s set their status to %s", agent.id, agent.username, load.status)
    announce(service.hub, agent.id, load.status)
    return load


async def sign_in_status(service: ChatService, agent: Agent) -> AgentStatus:
    """The status an agent signing in keeps from before, made known to every instance."""
    load = await service.store.agent_load(agent.id)
    status: AgentStatus = load.status if load is not None else "online"
    announce(service.hub, agent.id, status)
    return status


async def rest_set_status(service: ChatService, agent: Agent, body: bytes) -> dict[str, Any]:
    """``POST /api/v1/me/status`` with ``{"status": "away"}``."""
    try:
        wanted = frames.decode_json(_body_decoder, body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid status body: {frames.explain(exc)}") from None
    load = await set_status(service, agent, check_status(wanted.status))
    return {"id": agent.id, "status": load.status}
