"""REST: ``GET/POST /api/v1/blocks`` and ``DELETE /api/v1/blocks/{id}`` (an agent's token).

``POST`` blocks a visitor (``visitor_id``, or the visitor of ``conversation_id``) and/or
a network (``ip``: an address or CIDR; or ``block_address``: the address the visitor is
connected from, when its socket is on this instance), for a ``duration`` (``7d``) or
until removed, with an optional ``reason``. The app authenticates the agent and turns
the errors raised here into JSON errors.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import msgspec

from customer_service.core.api_types import BlockBody
from customer_service.core.blocks import (
    Block,
    applies_to,
    check_reason,
    parse_address,
    parse_duration,
    parse_network,
)
from customer_service.core.frames import MAX_INT, decode_json, explain
from customer_service.core.models import Agent, format_ts, utc_now
from customer_service.errors import BadRequest, Conflict
from customer_service.server.service import ChatService

log = logging.getLogger(__name__)



_body = msgspec.json.Decoder(BlockBody)


def block_dict(block: Block, now: datetime | None = None) -> dict[str, Any]:
    return {"id": block.id, "visitor_id": block.visitor_id, "network": block.network,
            "reason": block.reason, "created_by": block.created_by,
            "created_at": format_ts(block.created_at),
            "expires_at": None if block.expires_at is None else format_ts(block.expires_at),
            "active": block.active(now or utc_now())}


def _id(raw: str, name: str) -> int:
    value = int(raw) if re.fullmatch(r"-?[0-9]{1,20}", raw.strip()) else 0
    if not 1 <= value <= MAX_INT:
        raise BadRequest(f"the {name} must be an integer between 1 and {MAX_INT}, "
                         f"not {raw[:40]!r}")
    return value


async def remove_block(service: ChatService, agent: Agent, raw_id: str) -> dict[str, Any]:
    """``DELETE /api/v1/blocks/{id}``: the removed block."""
    block = await service.store.remove_block(_id(raw_id, "block id"))
    service.blocks.removed(block)
    log.info("block %s removed by agent %s", block.id, agent.username)
    return {"block": block_dict(block)}


async def list_blocks(service: ChatService, query_string: bytes) -> dict[str, Any]:
    """The active blocks (``all=1``: expired ones too); ``conversation_id=N``: those that
    apply to that conversation's visitor (by id, or by the address it is connected from
    here)."""
    try:
        query = {k: v[-1] for k, v in parse_qs(query_string.decode(), errors="strict").items()}
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8") from None
    every = query.get("all", "0").lower() in ("1", "true", "on", "yes")
    now = utc_now()
    blocks = await service.store.list_blocks(None if every else now)
    if "conversation_id" in query:
        conversation = await service.conversation(_id(query["conversation_id"],
                                                      "conversation_id"))
        visitor_id = conversation.visitor_id
        addresses = [parse_address(peer.address)
                     for peer in service.hub.visitors.get(conversation.id, ())] or [None]
        blocks = [b for b in blocks if any(applies_to(b, visitor_id, a) for a in addresses)]
    return {"blocks": [block_dict(b, now) for b in blocks]}


def _visitor_address(service: ChatService, visitor_id: int) -> str:
    for peers in service.hub.visitors.values():
        for peer in peers:
            if peer.identity == visitor_id and parse_address(peer.address) is not None:
                return peer.address
    raise Conflict("the visitor's address is not known here (they are not connected to this "
                   "server): block the visitor alone, or give the address as ip")


async def add_block(service: ChatService, agent: Agent, body: bytes) -> dict[str, Any]:
    try:
        data = decode_json(_body, body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid block: {explain(exc)}") from None
    except BadRequest as exc:
        raise BadRequest(f'{exc.message}; the body must be JSON: {{"visitor_id": …, "ip": …, '
                         '"duration": "7d", "reason": …}') from None
    visitor_id = data.visitor_id
    if data.conversation_id is not None:
        conversation = await service.conversation(_id(str(data.conversation_id),
                                                      "conversation_id"))
        if visitor_id is not None and visitor_id != conversation.visitor_id:
            raise BadRequest(f"visitor {visitor_id} is not the visitor of conversation "
                             f"{conversation.id}")
        visitor_id = conversation.visitor_id
    elif visitor_id is not None:
        visitor_id = _id(str(visitor_id), "visitor_id")
    if data.ip is not None and data.block_address:
        raise BadRequest("give ip or block_address, not both")
    network = None
    if data.ip is not None:
        network = str(parse_network(data.ip))
    elif data.block_address:
        if visitor_id is None:
            raise BadRequest("block_address needs the visitor_id or conversation_id")
        network = str(parse_network(_visitor_address(service, visitor_id)))
    if visitor_id is None and network is None:
        raise BadRequest("a block needs a visitor (visitor_id or conversation_id), an "
                         "address (ip or block_address), or both")
    expires = None if data.duration is None else utc_now() + parse_duration(data.duration)
    block = await service.store.add_block(visitor_id=visitor_id, network=network,
                                          reason=check_reason(data.reason),
                                          created_by=agent.username, expires_at=expires)
    service.blocks.added(block)
    log.info("block %s added by agent %s: visitor %s, network %s, until %s", block.id,
             agent.username, block.visitor_id, block.network,
             block.expires_at.astimezone(UTC).isoformat() if block.expires_at else "removed")
    return {"block": block_dict(block)}
