"""The REST route table's machinery: what a route is, how a request finds its route, and the
request a handler gets.

A ``Route`` declares everything about one operation: method, path template, who may call
it (``auth``), the Structs of its path, query, body and answer, the error statuses it may
return, and its handler. The app dispatches through the table (``server/rest_api.py``)
and ``core/openapi.py`` turns the same table into the OpenAPI document, so the two cannot
drift. Adding an endpoint is one ``Route(...)`` line in ``rest_api.ROUTES``.

Path templates: ``{name}`` matches one segment, maybe empty (``[^/]*``); ``{name:regex}``
matches ``regex`` (the OpenAPI path drops ``:regex``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from customer_service.core.api_tokens import Access, Credential
from customer_service.core.models import Agent
from customer_service.transport.interface import Receive, Scope

if TYPE_CHECKING:
    from customer_service.server.app import App
    from customer_service.server.service import ChatService
    from customer_service.storage.base import Store


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ((b"cache-control", b"no-store"),)


Reply = Response | tuple[int, Any]
"""A handler's answer: a ready response, or a status and a payload (a Struct, or a dict
shaped like the route's ``response`` Struct) to encode as JSON."""


@dataclass(slots=True)
class Request:
    """One REST request as its handler sees it: authenticated (``agent`` is the caller, the
    bot agent for an API token; None on a public route), its path parameters raw."""

    app: App
    scope: Scope
    receive: Receive
    params: dict[str, str]
    agent: Agent | None = None
    credential: Credential | None = None
    token_hash: str | None = None

    @property
    def service(self) -> ChatService:
        return self.app.service

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def caller(self) -> Agent:
        """The authenticated agent (a route with ``auth`` other than public has one)."""
        assert self.agent is not None, "caller on a public route"
        return self.agent

    async def body(self) -> bytes:
        return await self.app.read_body(self.receive)


Handler = Callable[[Request], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    """The template: ``/api/v1/conversations/{conversation_id:-?[0-9]+}``."""
    handler: Handler
    auth: Access
    summary: str
    response: Any = None
    """The Struct (or type) of the success body; None: not JSON (``content_type``)."""
    status: int = 200
    """The success status; ``also`` lists more success statuses with the same body."""
    errors: tuple[int, ...] = ()
    path_params: Any = None
    query: Any = None
    body: Any = None
    description: str = ""
    content_type: str = "application/json"
    also: tuple[int, ...] = ()
    raw_path: bool = False
    """Match the raw (still percent-encoded) path: a ``%2F`` stays inside its segment."""
    tag: str = "api"
    deadline: float | None = None
    """Seconds the request may take; None: ``[server] message_timeout``. A report over a
    long range may need more than a chat request ever should."""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", compile_template(self.path))

    @property
    def openapi_path(self) -> str:
        return re.sub(r"\{([a-z_]+):[^}]*\}", r"{\1}", self.path)


def compile_template(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for found in re.finditer(r"\{([a-z_]+)(?::([^}]*))?\}", template):
        parts.append(re.escape(template[position:found.start()]))
        parts.append(f"(?P<{found.group(1)}>{found.group(2) or '[^/]*'})")
        position = found.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts))


class RouteTable:
    """The routes by path: ``match`` finds those of a path (every method) and its params."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        seen = {(r.method, r.path) for r in self.routes}
        if len(seen) != len(self.routes):
            raise ValueError("a method and path is in the route table twice")

    def match(self, path: str, raw_path: str) -> tuple[dict[str, Route], dict[str, str]]:
        """The routes matching the path, by method (empty: none), and the path parameters
        (of the first match: every route of one path has the same template)."""
        found: dict[str, Route] = {}
        params: dict[str, str] = {}
        for route in self.routes:
            matched = route.pattern.fullmatch(raw_path if route.raw_path else path)
            if matched is not None:
                found.setdefault(route.method, route)
                params = params or matched.groupdict()
        return found, params


def english_list(items: Sequence[str]) -> str:
    """``GET``, ``GET and POST``, ``GET, POST and DELETE``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
