"""REST: ``GET /api/v1/canned`` (every canned reply), ``POST /api/v1/canned`` (add one:
``{"shortcut": …, "text": …}``, 201) and ``DELETE /api/v1/canned/{shortcut}``.

The app authenticates the agent and turns the ``BadRequest`` / ``Conflict`` /
``NotFound`` raised here into JSON errors; these handlers check the input
(``core.canned``) and call the store.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final

import msgspec

from customer_service.core.api_types import CannedBody
from customer_service.core.canned import canned_dict, check_shortcut, check_text
from customer_service.core.frames import decode_json, explain
from customer_service.core.models import Agent
from customer_service.errors import BadRequest, NotFound
from customer_service.storage.base import Store
from customer_service.transport.interface import Scope

log = logging.getLogger(__name__)

_ONE: Final = re.compile(r"/api/v1/canned/([^/]*)")
_BODY_SHAPE: Final = '{"shortcut": "refund", "text": "Hi {visitor.name}, …"}'


_decoder: Final = msgspec.json.Decoder(CannedBody)


async def list_canned(store: Store, agent: Agent, scope: Scope,
                      body: bytes) -> tuple[int, Any]:
    """``{"canned": [...]}``, by shortcut."""
    return 200, {"canned": [canned_dict(r) for r in await store.list_canned_replies()]}


async def add_canned(store: Store, agent: Agent, scope: Scope,
                     body: bytes) -> tuple[int, Any]:
    """Add one; 400 for a bad shortcut or text (an unknown field named), 409 when the
    shortcut is taken."""
    try:
        data = decode_json(_decoder, body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid canned reply: {explain(exc)}; the body must be "
                         f"{_BODY_SHAPE}") from None
    except BadRequest as exc:
        raise BadRequest(f"{exc.message}; the body must be {_BODY_SHAPE}") from None
    shortcut = check_shortcut(data.shortcut)
    reply = await store.add_canned_reply(shortcut, check_text(data.text))
    log.info("canned reply %s (id %s) added by agent %s", shortcut, reply.id, agent.username)
    return 201, canned_dict(reply)


async def delete_canned(store: Store, agent: Agent, scope: Scope,
                        body: bytes) -> tuple[int, Any]:
    """Delete one by shortcut; 404 when there is none."""
    found = _ONE.fullmatch(scope["path"])
    if found is None:
        raise NotFound(f"no route {scope['path']}")
    shortcut = check_shortcut(found.group(1))
    await store.delete_canned_reply(shortcut)
    log.info("canned reply %s deleted by agent %s", shortcut, agent.username)
    return 200, {"deleted": shortcut}
