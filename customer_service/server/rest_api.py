"""The REST API's route table: every endpoint, declared once. The app dispatches through
``ROUTES`` and ``GET /api/v1/openapi.json`` is generated from it (``core/openapi.py``).

To add an endpoint, add one ``Route(...)`` here: method, path, auth (``public``,
``agent``: a login token only, ``read`` / ``write``: an API token of that scope or an
agent's login token), the Structs of its query, body and answer (``core/api_types.py``),
the error statuses it may return, and its handler (``async (Request) -> Reply``).
Static assets and the WebSockets are served beside the table (``server/app.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from customer_service.core import api_types as t
from customer_service.core.frames import MessageOut
from customer_service.core.models import Agent, utc_now
from customer_service.core.reports import Report, ReportQuery
from customer_service.server import (
    agent_status,
    notes,
    rest_blocks,
    rest_canned,
    rest_contacts,
    rest_context,
    rest_conversations,
    rest_labels,
    rest_reports,
    rest_search,
)
from customer_service.server.routes import Handler, Reply, Request, Route, RouteTable
from customer_service.storage.base import Store
from customer_service.transport.interface import Scope

ID: Final = "-?[0-9]+"
"""A conversation id in the paths that took only digits before (other text: 404)."""
SEGMENT: Final = "[^/]+"
REPORT_DEADLINE: Final = 30.0
"""Seconds a report may take (a year by label on a million messages: seconds, not the
chat's deadline); past it the database statement is ended (``storage/mysql.py``)."""


def _get(handler: Callable[[Store, Scope], Awaitable[Any]]) -> Handler:
    """A handler of the store and the request, answering 200."""
    async def run(req: Request) -> Reply:
        return 200, await handler(req.store, req.scope)
    return run


def _call(handler: Callable[[Store, Agent, Scope, bytes], Awaitable[tuple[int, Any]]]
          ) -> Handler:
    """A handler of the store, the caller, the request and its body, answering a status."""
    async def run(req: Request) -> Reply:
        return await handler(req.store, req.caller, req.scope, await req.body())
    return run


async def _healthz(req: Request) -> Reply:
    return await req.app.healthz()


async def _metrics(req: Request) -> Reply:
    return await req.app.metrics_page(req.scope)


async def _openapi(req: Request) -> Reply:
    return req.app.openapi_response()


async def _login(req: Request) -> Reply:
    return await req.app.login(req.scope, req.receive)


async def _logout(req: Request) -> Reply:
    assert req.token_hash is not None
    return await req.app.logout(req.caller, req.token_hash)


def agent_out(agent: Agent) -> t.AgentOut:
    return t.AgentOut(id=agent.id, username=agent.username, name=agent.name,
                      disabled=agent.disabled)


async def _me(req: Request) -> Reply:
    return 200, agent_out(req.caller)


async def _me_status(req: Request) -> Reply:
    return 200, await agent_status.rest_set_status(req.service, req.caller, await req.body())


async def _agents(req: Request) -> Reply:
    online = req.service.hub.online_agents()
    statuses = {load.agent_id: load.status for load in await req.store.agent_loads()}
    return 200, t.AgentsOut(agents=[
        t.AgentListItem(id=a.id, username=a.username, name=a.name, disabled=a.disabled,
                        online=a.id in online, status=statuses.get(a.id, "online"))
        for a in await req.store.list_agents() if not a.bot])  # bots take no conversation


async def _widget(req: Request) -> Reply:
    return await req.app.widget()


async def _labels(req: Request) -> Reply:
    found = rest_labels.match(req.scope)
    assert found is not None, "the route matched the path"
    return 200, await rest_labels.change(req.service, req.caller, req.scope["method"], *found)


async def _context(req: Request) -> Reply:
    conversation_id = rest_context.match(req.scope["path"])
    assert conversation_id is not None, "the route matched the path"
    return 200, await rest_context.get_context(req.store, conversation_id)


async def _reports(req: Request) -> Reply:
    return 200, await rest_reports.reports(req.store, req.scope,
                                           default_zone=req.service.config.hours.timezone,
                                           now=utc_now())


async def _blocks(req: Request) -> Reply:
    return 200, await rest_blocks.list_blocks(req.service, req.scope.get("query_string", b""))


async def _add_block(req: Request) -> Reply:
    return 201, await rest_blocks.add_block(req.service, req.caller, await req.body())


async def _remove_block(req: Request) -> Reply:
    return 200, await rest_blocks.remove_block(req.service, req.caller, req.params["block_id"])


CONV = f"/api/v1/conversations/{{conversation_id:{ID}}}"
ONE_CONV = "/api/v1/conversations/{conversation_id}"
AUTH_ERRORS: Final = (401, 403)

ROUTES: Final = (
    Route("GET", "/healthz", _healthz, "public", "Health: the database, AI, bus and load",
          response=t.HealthOut, also=(503,), tag="server",
          description="503 (same body) when the database does not answer: take the instance "
                      "out of the balancer."),
    Route("GET", "/metrics", _metrics, "public", "Prometheus metrics", response=str,
          content_type="text/plain", errors=(401,), tag="server",
          description="With [metrics] token set, only with Authorization: Bearer <that token> "
                      "(401 otherwise)."),
    Route("GET", "/api/v1/openapi.json", _openapi, "public", "This OpenAPI document",
          response=dict[str, Any], tag="server"),
    Route("GET", "/api/v1/widget", _widget, "public",
          "The widget's settings: branding, greetings, availability", response=t.WidgetOut,
          tag="visitors"),
    Route("POST", "/api/v1/login", _login, "public", "An agent logs in: a login token",
          body=t.LoginBody, response=t.LoginOut, errors=(400, 401, 413, 429, 503),
          tag="agents"),
    Route("POST", "/api/v1/logout", _logout, "agent", "Revoke this login token",
          response=t.OkOut, errors=AUTH_ERRORS, tag="agents"),
    Route("GET", "/api/v1/me", _me, "agent", "The agent owning the token",
          response=t.AgentOut, errors=AUTH_ERRORS, tag="agents"),
    Route("POST", "/api/v1/me/status", _me_status, "agent",
          "Set the agent's status (online, away, offline)", body=t.StatusBody,
          response=t.StatusOut, errors=(400, 401, 403, 413), tag="agents"),
    Route("GET", "/api/v1/agents", _agents, "read",
          "Every agent, online or not (not API tokens' bot agents)",
          response=t.AgentsOut, errors=AUTH_ERRORS, tag="agents"),
    Route("GET", "/api/v1/conversations", rest_conversations.list_conversations, "read",
          "Conversations, newest activity first", query=t.ConversationsQuery,
          response=t.ConversationsOut, errors=(400, 401, 403), tag="conversations"),
    Route("GET", CONV, rest_conversations.conversation_one, "read",
          "One conversation, with its contact", path_params=t.ConversationPath,
          response=t.ConversationOne, errors=(400, 401, 403, 404), tag="conversations"),
    Route("GET", f"{CONV}/messages", rest_conversations.messages, "read",
          "A page of a conversation's messages, oldest first",
          path_params=t.ConversationPath, query=t.MessagesQuery, response=t.MessagesOut,
          errors=(400, 401, 403, 404), tag="conversations"),
    Route("POST", f"{CONV}/messages", rest_conversations.send_message, "write",
          "Send a message as the caller (an API token: its bot agent)",
          path_params=t.ConversationPath, body=t.SendBody, response=MessageOut,
          status=201, also=(200,), errors=(400, 401, 403, 404, 409, 413),
          tag="conversations",
          description="201 with the stored message; 200 with the message stored earlier "
                      "when client_id was sent before. An agent's login token writes only "
                      "in a conversation assigned to it; a bot agent in any not closed."),
    Route("POST", f"{CONV}/close", rest_conversations.close, "write",
          "Close a conversation as the caller", path_params=t.ConversationPath,
          response=t.ConversationOne, errors=(400, 401, 403, 404, 409), tag="conversations"),
    Route("GET", f"{ONE_CONV}/context", _context, "read",
          "The visitor context panel: pages, browser, earlier conversations",
          path_params=t.ConversationPath, response=t.ContextOut,
          errors=(400, 401, 403, 404), tag="conversations"),
    Route("GET", f"{ONE_CONV}/notes", _get(notes.list_notes), "agent",
          "A conversation's private notes", path_params=t.ConversationPath,
          response=t.NotesOut, errors=(400, 401, 403, 404), tag="conversations"),
    Route("POST", f"{ONE_CONV}/labels/{{label}}", _labels, "agent", "Add a label",
          path_params=t.LabelPath, response=t.LabelsOut, raw_path=True,
          errors=(400, 401, 403, 404, 409), tag="conversations"),
    Route("DELETE", f"{ONE_CONV}/labels/{{label}}", _labels, "agent", "Remove a label",
          path_params=t.LabelPath, response=t.LabelsOut, raw_path=True,
          errors=(400, 401, 403, 404), tag="conversations"),
    Route("GET", "/api/v1/contacts", _get(rest_contacts.list_contacts), "read",
          "A page of contacts, by id", query=t.ContactsQuery, response=t.ContactsOut,
          errors=(400, 401, 403), tag="contacts"),
    Route("GET", f"/api/v1/contacts/{{contact_id:{SEGMENT}}}", _get(rest_contacts.get_contact),
          "read", "One contact", path_params=t.ContactPath, response=t.ContactOut,
          errors=(400, 401, 403, 404), tag="contacts"),
    Route("GET", "/api/v1/search", _get(rest_search.search), "read",
          "Full-text search over messages and visitors", query=t.SearchQuery,
          response=t.SearchOut, errors=(400, 401, 403), tag="conversations"),
    Route("GET", "/api/v1/reports", _reports, "read",
          "Figures of a range: conversations, reply and resolution times, messages, campaigns",
          query=ReportQuery, response=Report, errors=(400, 401, 403), tag="reports",
          deadline=REPORT_DEADLINE,
          description="Definitions of every figure: docs/reports.md."),
    Route("GET", "/api/v1/canned", _call(rest_canned.list_canned), "read",
          "Every canned reply", response=t.CannedListOut, errors=AUTH_ERRORS, tag="canned"),
    Route("POST", "/api/v1/canned", _call(rest_canned.add_canned), "agent",
          "Add a canned reply", body=t.CannedBody, response=t.CannedOut, status=201,
          errors=(400, 401, 403, 409, 413), tag="canned"),
    Route("DELETE", "/api/v1/canned/{shortcut}", _call(rest_canned.delete_canned), "agent",
          "Delete a canned reply", path_params=t.CannedPath, response=t.CannedDeleted,
          errors=(400, 401, 403, 404), tag="canned"),
    Route("GET", "/api/v1/blocks", _blocks, "agent", "Blocked visitors and networks",
          query=t.BlocksQuery, response=t.BlocksOut, errors=(400, 401, 403, 404),
          tag="blocks"),
    Route("POST", "/api/v1/blocks", _add_block, "agent", "Block a visitor or a network",
          body=t.BlockBody, response=t.BlockOne, status=201,
          errors=(400, 401, 403, 404, 409, 413), tag="blocks"),
    Route("DELETE", f"/api/v1/blocks/{{block_id:{SEGMENT}}}", _remove_block, "agent",
          "Remove a block", path_params=t.BlockPath, response=t.BlockOne,
          errors=(400, 401, 403, 404), tag="blocks"),
)

TABLE: Final = RouteTable(ROUTES)
