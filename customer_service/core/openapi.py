"""The OpenAPI 3.1 document of the REST API, built from the route table
(``server/rest_api.py``) with ``msgspec.json.schema_components``: every path, method,
parameter, body, answer and error comes from the types the handlers use, so the document
cannot drift from what the server does. Pure: no I/O, no event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Final, Protocol

import msgspec

from customer_service.core.api_tokens import Access
from customer_service.core.api_types import ErrorOut

REF: Final = "#/components/schemas/{name}"
SECURITY_SCHEME: Final = "bearer"
WHO: Final[dict[Access, tuple[str, ...]]] = {
    "public": (),
    "agent": ("agent",),
    "read": ("agent", "read", "write"),
    "write": ("agent", "write"),
}
"""Which credentials may call an endpoint of each access (``core/api_tokens.may``)."""
WHO_TEXT: Final[dict[Access, str]] = {
    "public": "Public: no token.",
    "agent": "An agent's login token only (API tokens get 403).",
    "read": "An agent's login token, or an API token of scope read or write.",
    "write": "An agent's login token, or an API token of scope write (read: 403).",
}

DESCRIPTION: Final = """\
The REST API of customer-service (docs/api.md).

**Authentication**: `Authorization: Bearer <token>`, never in the URL (a `?token=` on
an /api/ path is refused with 401). Tokens are an agent's login token (POST /api/v1/login,
`customer-service agents token`) or an API token (`customer-service tokens create NAME
--scope read|write`). A read token reads conversations, messages, contacts, search, agents,
canned replies and reports; a write token also sends messages and closes conversations as its bot
agent (named like the token). Each operation's `x-token-kinds` lists who may call it.

**Errors** are JSON `{"error": code, "message": text}` with the status; a method a path
does not accept is a 405 naming the methods it does (also in `Allow`).

**WebSockets** (not operations here): `GET /ws/visitor` (the widget's socket) and
`GET /ws/agent` (the dashboard's; the login token as `Authorization: Bearer` or
`?token=`, `?queue=off` not to follow the waiting queue). Frames: docs/protocol.md.
"""


class Operation(Protocol):
    """What the document reads of a route (``server/routes.Route``)."""

    @property
    def method(self) -> str: ...
    @property
    def openapi_path(self) -> str: ...
    @property
    def auth(self) -> Access: ...
    @property
    def summary(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def response(self) -> Any: ...
    @property
    def status(self) -> int: ...
    @property
    def also(self) -> tuple[int, ...]: ...
    @property
    def errors(self) -> tuple[int, ...]: ...
    @property
    def path_params(self) -> Any: ...
    @property
    def query(self) -> Any: ...
    @property
    def body(self) -> Any: ...
    @property
    def content_type(self) -> str: ...
    @property
    def tag(self) -> str: ...


def _parameters(schema: dict[str, Any], where: str) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    found = []
    for name, given in schema.get("properties", {}).items():
        prop = given
        alternatives = [a for a in given.get("anyOf", ()) if a != {"type": "null"}]
        if len(alternatives) == 1:  # an optional parameter is left out, never null
            prop = {**alternatives[0], **{k: v for k, v in given.items()
                                          if k not in ("anyOf", "default")}}
        parameter: dict[str, Any] = {"name": name, "in": where,
                                     "required": where == "path" or name in required,
                                     "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        if prop.get("type") == "array":
            parameter |= {"style": "form", "explode": True}
        found.append(parameter)
    return found


def _content(media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": schema}}


def openapi_document(routes: Iterable[Operation], version: str) -> dict[str, Any]:
    routes = list(routes)
    parameter_types = [t for r in routes for t in (r.path_params, r.query) if t is not None]
    body_types = [t for r in routes for t in (r.body, r.response) if t is not None]
    every: list[Any] = [ErrorOut, *body_types, *parameter_types]
    schemas, components = msgspec.json.schema_components(every, ref_template=REF)
    by_type: dict[Any, dict[str, Any]] = {}
    for kind, schema in zip(every, schemas, strict=True):
        by_type.setdefault(kind, schema)
    error_ref = by_type[ErrorOut]

    def inline(kind: Any) -> dict[str, Any]:
        """A parameter Struct's own schema (not a ``$ref``)."""
        schema = by_type[kind]
        ref = schema.get("$ref", "")
        return dict(components[ref.rsplit("/", 1)[-1]]) if ref else schema

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": _operation_id(route),
            "tags": [route.tag],
            "description": " ".join(filter(None, [WHO_TEXT[route.auth], route.description])),
            "x-token-kinds": list(WHO[route.auth]),
            "security": [{SECURITY_SCHEME: []}] if route.auth != "public" else [],
        }
        parameters: list[dict[str, Any]] = []
        if route.path_params is not None:
            parameters += _parameters(inline(route.path_params), "path")
        if route.query is not None:
            parameters += _parameters(inline(route.query), "query")
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": _content(
                "application/json", by_type[route.body])}
        success: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
        if route.response is not None:
            success["content"] = _content(route.content_type, by_type[route.response])
        responses: dict[str, Any] = {str(route.status): success}
        for status in route.also:
            responses[str(status)] = {"description": HTTPStatus(status).phrase,
                                      "content": success.get("content", {})}
        for status in sorted(set(_errors(route))):
            responses[str(status)] = {"description": HTTPStatus(status).phrase,
                                      "content": _content("application/json", error_ref)}
        operation["responses"] = responses
        paths.setdefault(route.openapi_path, {})[route.method.lower()] = operation
    used = {name for name in components if f"/{name}\"" in msgspec.json.encode(
        [paths, components]).decode()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "customer-service REST API", "version": version,
                 "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": {name: components[name] for name in sorted(used)},
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer",
                "description": "An agent's login token or an API token"}},
        },
    }


def _errors(route: Operation) -> Sequence[int]:
    """The route's errors, with what any request may meet: 504 when the database is too
    slow for ``[server] message_timeout`` (every route but the public ones that need none),
    401 and 403 for a route needing a token."""
    extra = [] if route.auth == "public" else [401, 403, 504]
    if route.body is not None:
        extra.append(413)
    return [*route.errors, *extra]


def _operation_id(route: Operation) -> str:
    words = [w.strip("{}") for w in route.openapi_path.split("/") if w and w not in ("api",
                                                                                      "v1")]
    return "_".join([route.method.lower(), *words]).replace(".", "_").replace("-", "_")
