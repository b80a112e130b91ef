"""The ASGI application: HTTP routes and the two WebSocket endpoints on one port.

HTTP errors are converted here, in one place: a ``CustomerServiceError`` becomes
``{"error": code, "message": …}`` with its ``http_status``.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import msgspec
import trio

from customer_service import __version__, auth
from customer_service.core.client_address import client_address, trusted_networks
from customer_service.core.frames import MAX_INT, decode_json, explain, message_out
from customer_service.core.login_failures import retry_after_header
from customer_service.core.models import Agent, Conversation, ConversationStatus, utc_now
from customer_service.core.origin import AllowedOrigins
from customer_service.errors import (
    BadRequest,
    CustomerServiceError,
    DeadlineExceeded,
    Forbidden,
    HeadTooLarge,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from customer_service.server import (
    agent_status,
    notes,
    rest_blocks,
    rest_canned,
    rest_contacts,
    rest_context,
    rest_labels,
    rest_reports,
    rest_search,
)
from customer_service.server.agent import AgentSession
from customer_service.server.limits import LoginThrottle
from customer_service.server.service import ChatService, contact_info
from customer_service.server.static import Asset, load_assets
from customer_service.server.transport import AsgiWebSocket
from customer_service.server.visitor import VisitorSession
from customer_service.server.widget_settings import widget_settings
from customer_service.storage.base import Store
from customer_service.transport.interface import (
    CONNECTION_ID,
    MAX_BODY,
    Connection,
    Receive,
    Scope,
    Send,
    SessionRunner,
)

log = logging.getLogger(__name__)

LOGIN_SLOTS = 2
"""Logins checking a password at once, each in a worker thread (a hash takes ~0.3 s of CPU
and 128 MiB at the default cost)."""
LOGIN_QUEUE_TIMEOUT = 10.0
"""Seconds a login may wait for a slot before a 503."""
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ((b"cache-control", b"no-store"),)


MAX_REQUEST_HEAD = 16 * 1024
"""Bytes of request line and headers; the native transport holds the same limit."""


def framing_problem(headers: Iterable[tuple[bytes, bytes]]) -> CustomerServiceError | None:
    """A request the app must refuse whatever served it (hypercorn's h11 lets both through):
    one with ``Content-Length`` and ``Transfer-Encoding`` (the request-smuggling setup
    behind a proxy, RFC 9112 §6.1), or headers over ``MAX_REQUEST_HEAD``."""
    names: set[bytes] = set()
    size = 0
    for name, value in headers:
        names.add(bytes(name).lower())
        size += len(name) + len(value) + 4
    if b"content-length" in names and b"transfer-encoding" in names:
        return BadRequest("a request must not carry both Content-Length and Transfer-Encoding")
    if size > MAX_REQUEST_HEAD:
        return HeadTooLarge(f"request headers over {MAX_REQUEST_HEAD} bytes")
    return None


def json_response(status: int, payload: Any) -> Response:
    return Response(status, _json.encode(payload))


def error_response(error: CustomerServiceError) -> Response:
    response = json_response(error.http_status, {"error": error.code, "message": error.message})
    extra: tuple[tuple[bytes, bytes], ...] = ()
    if isinstance(error, RateLimited) and error.retry_after is not None:
        extra = ((b"retry-after", str(error.retry_after).encode()),)
    elif isinstance(error, Unauthorized):
        extra = ((b"www-authenticate", b"Bearer"),)
    return Response(response.status, response.body, response.content_type,
                    response.headers + extra)


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


_login_body = msgspec.json.Decoder(LoginBody)


def agent_json(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "username": agent.username, "name": agent.name,
            "disabled": agent.disabled}


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison against an ``If-None-Match`` list (or ``*``)."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one."""
    authorization = _headers(scope).get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _url_carries_token(scope: Scope) -> bool:
    """Whether the query string has a ``token`` parameter, even an empty one."""
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return "token" in parsed


URL_TOKEN_REFUSED = ("a token in the URL (?token=) is not accepted here: send it as the header "
                     "Authorization: Bearer <token>")


def _query(scope: Scope) -> dict[str, str]:
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return {k: v[-1] for k, v in parsed.items()}


def _int_param(query: dict[str, str], name: str, default: int | None, low: int,
               high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{name}' must be an integer") from None
    if not low <= value <= high:
        raise BadRequest(f"query parameter '{name}' must be between {low} and {high}")
    return value


def _path_id(raw: str, name: str) -> int:
    """An id in a path (ASCII digits, maybe a minus sign), within what a database row can
    have: 1 to 2^63-1."""
    value = int(raw) if len(raw) <= 40 else MAX_INT + 1
    if not 1 <= value <= MAX_INT:
        raise BadRequest(f"the {name} must be an integer between 1 and {MAX_INT}")
    return value


def _switch(query: dict[str, str], name: str, *, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("on", "true", "1", "yes"):
        return True
    if raw.lower() in ("off", "false", "0", "no"):
        return False
    raise BadRequest(f"query parameter '{name}' must be on or off")


class App:
    def __init__(self, service: ChatService, *, ai_status: Callable[[], str],
                 bus_status: Callable[[], str], logins: LoginThrottle,
                 instance: str) -> None:
        self.service = service
        self.store = service.store
        self.metrics = service.metrics
        self.ai_status = ai_status
        self.bus_status = bus_status
        self.instance = instance
        self.logins = logins
        """Failed logins per username and per address (shared by the instances on a bus)."""
        self._trusted = trusted_networks(service.config.server.trusted_proxies)
        self._origins = AllowedOrigins(service.config.server.allowed_origins)
        self._dummy_hash: str | None = None
        """Checked against for unknown users, so a login takes as long whether or not they exist."""
        self._login_slots = trio.CapacityLimiter(LOGIN_SLOTS)
        self.assets = load_assets(service.config.web.logo_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    @staticmethod
    async def lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- HTTP ---------------------------------------------------------------
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout = self.service.config.server.message_timeout
        try:
            refused = framing_problem(scope.get("headers", []))
            if refused is not None:
                # The native transport refuses these before the app; hypercorn's h11 does
                # not, so the app refuses them and has the connection closed.
                log.info("%s %s refused: %s", scope["method"], scope["path"], refused.message)
                # hypercorn wants the body read before it sends the answer; one too large
                # is answered all the same.
                with trio.move_on_after(timeout), suppress(CustomerServiceError):
                    await self._read_body(receive)
                response = error_response(refused)
                response = Response(response.status, response.body, response.content_type,
                                    (*response.headers, (b"connection", b"close")))
            else:
                with trio.fail_after(timeout):
                    response = await self.route(scope, receive)
        except trio.TooSlowError:
            log.warning("%s %s was not answered within its %ss deadline", scope["method"],
                        scope["path"], timeout)
            response = error_response(DeadlineExceeded(
                f"not answered within {timeout:g} s (the database is slow or locked); "
                "try again"))
        except CustomerServiceError as exc:
            if exc.http_status >= 500:
                log.warning("%s %s failed: %s", scope["method"], scope["path"], exc)
            response = error_response(exc)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            response = json_response(500, {"error": "internal", "message": "internal error"})
        length = [] if response.status == 304 else [
            (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": [
            (b"content-type", response.content_type),
            *length,
            (b"x-content-type-options", b"nosniff"),
            *response.headers,
        ]})
        body = b"" if scope["method"] == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    async def route(self, scope: Scope, receive: Receive) -> Response:
        method, path = scope["method"], scope["path"]
        routes: dict[str, dict[str, Callable[[], Awaitable[Response]]]] = {
            "/healthz": {"GET": self.healthz},
            "/metrics": {"GET": lambda: self.metrics_page(scope)},
            "/api/v1/login": {"POST": lambda: self.login(scope, receive)},
            "/api/v1/logout": {"POST": lambda: self.logout(scope)},
            "/api/v1/me": {"GET": lambda: self.me(scope)},
            "/api/v1/me/status": {"POST": lambda: self.me_status(scope, receive)},
            "/api/v1/agents": {"GET": lambda: self.agents(scope)},
            "/api/v1/widget": {"GET": self.widget},
            "/api/v1/conversations": {"GET": lambda: self.conversations(scope)},
            "/api/v1/contacts": {"GET": lambda: self.rest(scope, rest_contacts.list_contacts)},
            "/api/v1/search": {"GET": lambda: self.rest(scope, rest_search.search)},
            "/api/v1/reports": {"GET": lambda: self.rest(scope, partial(
                rest_reports.reports, default_zone=self.service.config.hours.timezone,
                now=utc_now()))},
            "/api/v1/canned": {"GET": lambda: self.call(scope, receive, rest_canned.list_canned),
                               "POST": lambda: self.call(scope, receive, rest_canned.add_canned)},
        }
        if path.startswith("/api/") and _url_carries_token(scope):
            raise Unauthorized(URL_TOKEN_REFUSED)  # the login included: nothing reads it there
        if (labelled := rest_labels.match(scope)) is not None:
            if method not in ("POST", "DELETE"):
                return json_response(405, {"error": "method_not_allowed",
                                           "message": f"{path} accepts POST and DELETE"})
            return json_response(200, await rest_labels.change(
                self.service, await self.authenticate(scope), method, *labelled))
        if (context_id := rest_context.match(path)) is not None:
            return await self.context(scope, method, context_id)
        notes_path = path.startswith("/api/v1/conversations/") and path.endswith("/notes")
        if path.startswith("/api/v1/conversations/") and not notes_path:
            return await self.conversation_path(scope, method, path)
        if path == "/api/v1/blocks" or path.startswith("/api/v1/blocks/"):
            return await self.blocks(scope, receive, method)
        asset = self.assets.get(path)
        if asset is not None:
            return self.static(scope, method, path, asset)
        handlers = routes.get(path)
        if handlers is None and notes_path:
            handlers = {"GET": lambda: self.rest(scope, notes.list_notes)}
        if handlers is None and path.startswith("/api/v1/contacts/"):
            handlers = {"GET": lambda: self.rest(scope, rest_contacts.get_contact)}
        if handlers is None and path.startswith("/api/v1/canned/"):
            handlers = {"DELETE": lambda: self.call(scope, receive, rest_canned.delete_canned)}
        if handlers is None:
            raise NotFound(f"no route {path}")
        handler = handlers.get(method)
        if handler is None:
            return json_response(405, {"error": "method_not_allowed",
                                       "message": f"{path} accepts {', '.join(handlers)}"})
        return await handler()

    @staticmethod
    def static(scope: Scope, method: str, path: str, asset: Asset) -> Response:
        if method not in ("GET", "HEAD"):
            return json_response(405, {"error": "method_not_allowed",
                                       "message": f"{path} accepts GET, HEAD"})
        if _etag_matches(_headers(scope).get("if-none-match", ""), asset.etag):
            return Response(304, b"", asset.content_type.encode(), asset.headers)
        return Response(200, asset.body, asset.content_type.encode(), asset.headers)

    async def widget(self) -> Response:
        """Public: any page embedding the widget may read it (no credentials are involved)."""
        status, back_at = self.service.availability.now_status()
        payload = widget_settings(self.service.config, status=status, back_at=back_at)
        return Response(200, _json.encode(payload), headers=(
            (b"cache-control", b"no-store"), (b"access-control-allow-origin", b"*")))

    async def healthz(self) -> Response:
        db = "ok"
        with trio.move_on_after(min(2.0, self.service.config.server.message_timeout / 2)
                                ) as waited:
            try:
                await self.store.ping()
            except CustomerServiceError:
                db = "error"
        if waited.cancelled_caught:
            db = "timeout"
        elif db == "ok" and self.store.write_health.degraded(time.monotonic()):
            # It answers a ping, but writes time out or fail (a lock, a full disk): the
            # instance still serves what needs no write, so it stays in the balancer.
            db = "degraded"
        status = {"ok": "ok", "degraded": "degraded"}.get(db, "error")
        body = {"status": status, "version": __version__, "db": db,
                "ai": self.ai_status(), "bus": self.bus_status(), "instance": self.instance,
                "connections": self.service.hub.connection_count()}
        return json_response(503 if status == "error" else 200, body)

    async def metrics_page(self, scope: Scope) -> Response:
        """The Prometheus exposition; with ``[metrics] token`` set, only for a request
        bearing it (compared in constant time)."""
        wanted = self.service.config.metrics.token
        if wanted:
            given = _bearer_token(scope) or ""
            # Header values arrive as latin-1 text: back to their bytes, against UTF-8.
            if not hmac.compare_digest(given.encode("latin-1"), wanted.encode()):
                raise Unauthorized("/metrics needs Authorization: Bearer <[metrics] token>")
        return Response(200, self.metrics.exposition(), self.metrics.content_type.encode())

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise TooLarge(f"request body over {MAX_BODY} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    async def login(self, scope: Scope, receive: Receive) -> Response:
        """Check a password (in a worker thread: scrypt takes a good part of a second) and
        hand out a token. Only failures are throttled, per username and per address."""
        client = self.client(scope)
        body = await self._read_body(receive)
        try:
            data = decode_json(_login_body, body)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"invalid login body: {explain(exc)}") from None
        except BadRequest as exc:
            raise BadRequest(f'{exc.message}; the body must be JSON: {{"username": …, '
                             '"password": …}') from None
        await self._unless_throttled(client, data.username)  # before queueing for a slot
        async with self._login_slot():
            # Again: attempts that queued alongside this one may have failed meanwhile, and
            # a burst sent at once must not get all its passwords checked.
            await self._unless_throttled(client, data.username)
            agent = await self._check_password(client, data)
        token = auth.new_token()
        ttl = self.service.config.auth.token_ttl_hours
        await self.store.add_agent_token(agent.id, auth.token_hash(token), "login",
                                         utc_now() + timedelta(hours=ttl))
        log.info("agent %s logged in from %s", agent.username, client)
        return json_response(200, {"token": token, "agent": agent_json(agent)})

    async def _unless_throttled(self, client: str, username: str) -> None:
        wait = await self.logins.retry_after(client, username)
        if wait > 0:
            seconds = retry_after_header(wait)
            log.info("login for %r from %s throttled for %d s after failures", username[:64],
                     client, seconds)
            raise RateLimited(f"too many failed logins; retry in {seconds} s",
                              retry_after=seconds)

    @asynccontextmanager
    async def _login_slot(self) -> AsyncIterator[None]:
        """One of ``LOGIN_SLOTS`` password checks at once (each hash takes ~0.3 s of CPU
        and 128 MiB at the default cost), after a wait of at most ``LOGIN_QUEUE_TIMEOUT``."""
        try:
            with trio.fail_after(LOGIN_QUEUE_TIMEOUT):
                await self._login_slots.acquire()
        except trio.TooSlowError:
            raise Unavailable("too many logins at once; retry in a few seconds") from None
        try:
            yield
        finally:
            self._login_slots.release()

    async def _check_password(self, client: str, data: LoginBody) -> Agent:
        """The agent whose password this is, counting a failure otherwise (in a slot)."""
        cost = self.service.config.auth.scrypt_n
        agent = await self.store.get_agent_by_username(data.username)
        usable = agent is not None and not agent.disabled
        if self._dummy_hash is None:
            self._dummy_hash = await trio.to_thread.run_sync(
                partial(auth.hash_password, "not a password", n=cost))
        stored = agent.password_hash if agent is not None and usable else self._dummy_hash
        matches = await trio.to_thread.run_sync(auth.verify_password, data.password, stored)
        if not (usable and matches) or agent is None:
            await self.logins.failed(client, data.username)
            log.info("login refused for %r from %s", data.username[:64], client)
            raise Unauthorized("wrong username or password")
        await self.logins.succeeded(data.username)
        if auth.needs_rehash(agent.password_hash, cost):
            await self._upgrade_hash(agent, data.password, cost)
        return agent

    async def _upgrade_hash(self, agent: Agent, password: str, cost: int) -> None:
        """Store the password again at today's cost, unless it changed meanwhile."""
        new_hash = await trio.to_thread.run_sync(partial(auth.hash_password, password, n=cost))
        if await self.store.replace_password_hash(agent.id, agent.password_hash, new_hash):
            log.info("agent %s: password hash upgraded to scrypt N=%d", agent.username, cost)

    def client(self, scope: Scope) -> str:
        """The client's address: the TCP peer, or what a trusted proxy says it is."""
        peer = str((scope.get("client") or ("?", 0))[0])
        if not self._trusted:
            return peer
        return client_address(peer, _headers(scope).get("x-forwarded-for"), self._trusted)

    async def authenticate(self, scope: Scope) -> Agent:
        agent, _ = await self.authenticate_token(scope)
        return agent

    async def authenticate_token(self, scope: Scope, *, in_query: bool = False
                                 ) -> tuple[Agent, str]:
        """The agent owning the request's bearer token, and that token's hash.

        REST requests carry the token in ``Authorization: Bearer`` only: a token in the URL
        ends up in access logs, proxies and browser history. The agent WebSocket
        (``in_query``) may also carry it as ``?token=``, since browsers cannot set headers
        on a WebSocket (``route`` refuses a URL token on every REST path)."""
        token = _bearer_token(scope) or (_query(scope).get("token") if in_query else None)
        if not token:
            raise Unauthorized("a token is needed: Authorization: Bearer <token>"
                               + (" or ?token=" if in_query else ""))
        hashed = auth.token_hash(token)
        agent = await self.store.agent_for_token(hashed, utc_now())
        if agent is None:
            raise Unauthorized("invalid or expired token")
        return agent, hashed

    async def logout(self, scope: Scope) -> Response:
        """Revoke the request's own token and close the sockets opened with it, on every
        instance (those a lost bus event misses close at their next token check)."""
        agent, token_hash = await self.authenticate_token(scope)
        await self.store.revoke_agent_token(token_hash)
        self.service.hub.revoke(agent.id, token_hash)
        log.info("agent %s logged out", agent.username)
        return json_response(200, {"ok": True})

    async def me(self, scope: Scope) -> Response:
        return json_response(200, agent_json(await self.authenticate(scope)))

    async def me_status(self, scope: Scope, receive: Receive) -> Response:
        agent = await self.authenticate(scope)
        return json_response(200, await agent_status.rest_set_status(
            self.service, agent, await self._read_body(receive)))

    async def agents(self, scope: Scope) -> Response:
        await self.authenticate(scope)
        online = self.service.hub.online_agents()
        statuses = {load.agent_id: load.status for load in await self.store.agent_loads()}
        return json_response(200, {"agents": [
            {**agent_json(a), "online": a.id in online, "status": statuses.get(a.id, "online")}
            for a in await self.store.list_agents()]})

    async def rest(self, scope: Scope,
                   handler: Callable[[Store, Scope], Awaitable[Any]]) -> Response:
        """An agent's GET answered with what ``handler`` makes of the store and request."""
        await self.authenticate(scope)
        return Response(200, _json.encode(await handler(self.store, scope)))

    async def call(self, scope: Scope, receive: Receive,
                   handler: Callable[[Store, Agent, Scope, bytes], Awaitable[tuple[int, Any]]]
                   ) -> Response:
        """An agent's request (any method) answered with the status and payload ``handler``
        makes of the store, the agent, the request and its body."""
        agent = await self.authenticate(scope)
        status, payload = await handler(self.store, agent, scope, await self._read_body(receive))
        return Response(status, _json.encode(payload))

    async def blocks(self, scope: Scope, receive: Receive, method: str) -> Response:
        reply = await rest_blocks.route(self.service, scope, method,
                                        partial(self.authenticate, scope),
                                        partial(self._read_body, receive))
        if reply is None:
            allowed = "GET, POST" if scope["path"] == "/api/v1/blocks" else "DELETE"
            return json_response(405, {"error": "method_not_allowed",
                                       "message": f"{scope['path']} accepts {allowed}"})
        return json_response(*reply)

    async def conversations(self, scope: Scope) -> Response:
        await self.authenticate(scope)
        query = _query(scope)
        status = query.get("status")
        if status is not None and status not in {s.value for s in ConversationStatus}:
            raise BadRequest("status must be open, assigned or closed")
        limit = _int_param(query, "limit", 100, 1, 1000) or 100
        summaries = await self.store.list_conversations(
            ConversationStatus(status) if status else None, limit,
            labels=rest_labels.query_labels(scope))
        infos = [self.service.conversation_info(s.conversation, s.visitor, s.last_message,
                                                labels=s.labels) for s in summaries]
        return Response(200, _json.encode({"conversations": infos}))

    async def conversation_path(self, scope: Scope, method: str, path: str) -> Response:
        found = re.fullmatch(r"/api/v1/conversations/(-?[0-9]+)(/messages)?", path)
        if found is None:
            raise NotFound(f"no route {path}")
        if method != "GET":
            return json_response(405, {"error": "method_not_allowed",
                                       "message": f"{path} accepts GET"})
        await self.authenticate(scope)
        conversation_id = _path_id(found.group(1), "conversation id")
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound(f"no conversation {conversation_id}")
        if found.group(2) is None:
            return await self.conversation_one(conversation)
        query = _query(scope)
        before = _int_param(query, "before_seq", None, 0, MAX_INT)
        limit = _int_param(query, "limit", 50, 1, 500) or 50
        messages = await self.store.messages_before(conversation_id, before, limit)
        return Response(200, _json.encode(
            {"conversation_id": conversation_id,
             "messages": [message_out(m) for m in messages]}))

    async def context(self, scope: Scope, method: str, conversation_id: int) -> Response:
        """``GET /api/v1/conversations/{id}/context``: the visitor context panel."""
        if method != "GET":
            return json_response(405, {"error": "method_not_allowed",
                                       "message": f"{scope['path']} accepts GET"})
        await self.authenticate(scope)
        return json_response(200, await rest_context.get_context(self.store, conversation_id))

    async def conversation_one(self, conversation: Conversation) -> Response:
        """One conversation as the dashboard shows it, with its contact's profile."""
        visitor = await self.store.get_visitor(conversation.visitor_id)
        last = await self.store.messages_before(conversation.id, None, 1)
        contact, labels = await self.store.conversation_extras(conversation.id)
        info = self.service.conversation_info(conversation, visitor, last[-1] if last else None,
                                              contact_info(contact), labels)
        return Response(200, _json.encode({"conversation": info}))

    # ---- WebSocket ----------------------------------------------------------
    async def websocket_route(self, scope: Scope) -> SessionRunner:
        """What an upgrade request becomes, whatever the transport under it.

        Returns the session to run on the accepted connection, or raises a
        ``CustomerServiceError`` whose ``http_status`` refuses the upgrade (401 bad
        token, 403 origin not allowed, 404 unknown path, 400 bad query, 503 shutting down).
        """
        path = scope["path"]
        client = self.client(scope)
        if self.service.hub.draining:
            raise Unavailable("the server is shutting down; retry")
        self.check_origin(scope, client)
        # The runners are plain functions returning the session's coroutine, so an idle
        # socket's stack holds no frame of theirs.
        if path == "/ws/visitor":
            user_agent = _headers(scope).get("user-agent", "")

            def visitor(conn: Connection) -> Awaitable[None]:
                session = VisitorSession(conn, self.service, client, user_agent)
                return session.run(session.start)
            return visitor
        if path == "/ws/agent":
            timeout = self.service.config.server.message_timeout
            try:
                with trio.fail_after(timeout):
                    agent, token_hash = await self.authenticate_token(scope, in_query=True)
            except trio.TooSlowError:
                raise DeadlineExceeded(f"the token could not be checked within {timeout:g} s "
                                       "(the database is slow or locked); try again") from None
            follows_queue = _switch(_query(scope), "queue", default=True)

            def agent_session(conn: Connection) -> Awaitable[None]:
                session = AgentSession(conn, self.service, agent, token_hash,
                                       follows_queue=follows_queue, client=client)
                return session.run(session.start)
            return agent_session
        raise NotFound(f"no WebSocket endpoint {path}")

    def check_origin(self, scope: Scope, client: str) -> None:
        """Refuse (403) an upgrade whose ``Origin`` is not in ``[server] allowed_origins``."""
        if self._origins.any:
            return
        values = [bytes(v).decode("latin-1") for k, v in scope.get("headers", [])
                  if bytes(k).lower() == b"origin"]
        origin = ", ".join(values) if values else None  # several headers: not one origin
        if self._origins.allows(origin):
            return
        log.warning("[%s] WebSocket %s from %s refused: origin %r is not in "
                    "[server] allowed_origins", scope.get(CONNECTION_ID, "-"), scope["path"],
                    client, origin)
        raise Forbidden(f"origin {origin!r} may not open this socket: it is not in "
                        "[server] allowed_origins")

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI side of a WebSocket: accept or refuse, then run the session."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            run_session = await self.websocket_route(scope)
        except CustomerServiceError as exc:
            await self._refuse(scope, send, exc)
            return
        await send({"type": "websocket.accept"})
        await run_session(AsgiWebSocket(scope, receive, send))

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: CustomerServiceError) -> None:
        """Refuse the handshake with an HTTP status (401, 404, 503) and a JSON body."""
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        response = error_response(error)
        await send({"type": "websocket.http.response.start", "status": response.status,
                    "headers": [(b"content-type", response.content_type),
                                (b"content-length", str(len(response.body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": response.body})
