"""The ASGI application: HTTP routes and the two WebSocket endpoints on one port.

HTTP errors are converted here, in one place: a ``CustomerServiceError`` becomes
``{"error": code, "message": …}`` with its ``http_status``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qs

import msgspec
import trio

from customer_service import __version__, auth
from customer_service.core.api_tokens import Access, Credential, may
from customer_service.core.api_types import (
    ErrorOut,
    HealthOut,
    LoginBody,
    LoginOut,
    OkOut,
)
from customer_service.core.client_address import client_address, trusted_networks
from customer_service.core.frames import decode_json, explain
from customer_service.core.login_failures import retry_after_header
from customer_service.core.models import Agent, utc_now
from customer_service.core.openapi import openapi_document
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
from customer_service.server.agent import AgentSession
from customer_service.server.limits import LoginThrottle
from customer_service.server.rest_api import ROUTES, TABLE, agent_out
from customer_service.server.routes import Request, Response, english_list
from customer_service.server.service import ChatService
from customer_service.server.static import Asset, load_assets
from customer_service.server.transport import AsgiWebSocket
from customer_service.server.visitor import VisitorSession
from customer_service.server.widget_settings import widget_settings
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


_login_body = msgspec.json.Decoder(LoginBody)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison against an ``If-None-Match`` list (or ``*``)."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if there is one. Several
    ``Authorization`` headers are refused (401): which one counts would depend on who reads
    them (a proxy checking the first, this app the last)."""
    values = [bytes(v).decode("latin-1") for k, v in scope.get("headers", [])
              if bytes(k).lower() == b"authorization"]
    if len(values) > 1:
        raise Unauthorized(f"the request has {len(values)} Authorization headers: send one")
    authorization = values[0] if values else ""
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
        self._openapi: bytes | None = None

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
                    await self.read_body(receive)
                response = error_response(refused)
                response = Response(response.status, response.body, response.content_type,
                                    (*response.headers, (b"connection", b"close")))
            else:
                response = await self.route(scope, receive)
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
        """Dispatch through the route table (``server/rest_api.py``): the path's routes,
        405 for another method, the caller authenticated and allowed (401, 403), then the
        handler; a path no route has may be a static asset."""
        method, path = scope["method"], scope["path"]
        if path.startswith("/api/") and _url_carries_token(scope):
            raise Unauthorized(URL_TOKEN_REFUSED)  # the login included: nothing reads it there
        raw = bytes(scope.get("raw_path") or path.encode()).decode("latin-1")
        routes, params = TABLE.match(path, raw)
        if not routes:
            asset = self.assets.get(path)
            if asset is not None:
                return self.static(scope, method, path, asset)
            raise NotFound(f"no route {path}")
        # HEAD is GET without the body (RFC 9110 §9.3.2; ``http`` drops it): a balancer's
        # HEAD /healthz included.
        route = routes.get("GET" if method == "HEAD" else method)
        if route is None:
            allowed = [*routes, "HEAD"] if "GET" in routes else list(routes)
            return Response(405, _json.encode(ErrorOut(
                "method_not_allowed", f"{path} accepts {english_list(allowed)}")),
                headers=((b"cache-control", b"no-store"), (b"allow", ", ".join(allowed).encode())))
        request = Request(self, scope, receive, params)
        timeout = route.deadline or self.service.config.server.message_timeout
        try:
            with trio.fail_after(timeout):
                if route.auth != "public":
                    request.agent, request.credential, request.token_hash = (
                        await self.authorize(scope, route.auth))
                reply = await route.handler(request)
        except trio.TooSlowError:
            log.warning("%s %s was not answered within its %ss deadline", method, path,
                        timeout)
            raise DeadlineExceeded(f"not answered within {timeout:g} s (the database is slow"
                                   " or locked); try again") from None
        if isinstance(reply, Response):
            return reply
        status, payload = reply
        return Response(status, _json.encode(payload))

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
        db: Literal["ok", "degraded", "error", "timeout"] = "ok"
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
        status: Literal["ok", "degraded", "error"] = (
            "ok" if db == "ok" else "degraded" if db == "degraded" else "error")
        body = HealthOut(status=status, version=__version__, db=db,
                         ai=self.ai_status(), bus=self.bus_status(), instance=self.instance,
                         connections=self.service.hub.connection_count())
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

    async def read_body(self, receive: Receive) -> bytes:
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
        body = await self.read_body(receive)
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
        return json_response(200, LoginOut(token=token, agent=agent_out(agent)))

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
        usable = agent is not None and not agent.disabled and not agent.bot  # bots never log in
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

    async def authorize(self, scope: Scope, access: Access
                        ) -> tuple[Agent, Credential, str]:
        """The caller of a route needing ``access``: an agent's login token (checked
        first: the dashboard's requests), else an API token, read from the database at
        every request so a revoked one is refused at once on every instance. 401 without
        a valid token, 403 when its kind may not use the route (``core/api_tokens.may``)."""
        token = _bearer_token(scope)
        if not token:
            raise Unauthorized("a token is needed: Authorization: Bearer <token>")
        hashed = auth.token_hash(token)
        now = utc_now()
        agent = await self.store.agent_for_token(hashed, now)
        credential: Credential = "agent"
        if agent is None:
            found = await self.store.api_token_for(hashed, now)
            if found is None:
                raise Unauthorized("invalid or expired token")
            api_token, agent = found
            credential = api_token.scope
        refused = may(access, credential)
        if refused is not None:
            log.info("%s %s refused to API token of bot agent %s: %s", scope["method"],
                     scope["path"], agent.username, refused)
            raise Forbidden(refused)
        return agent, credential, hashed

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

    async def logout(self, agent: Agent, token_hash: str) -> Response:
        """Revoke the request's own token and close the sockets opened with it, on every
        instance (those a lost bus event misses close at their next token check)."""
        await self.store.revoke_agent_token(token_hash)
        self.service.hub.revoke(agent.id, token_hash)
        log.info("agent %s logged out", agent.username)
        return json_response(200, OkOut(ok=True))

    def openapi_response(self) -> Response:
        """The OpenAPI document, built once from the route table."""
        if self._openapi is None:
            self._openapi = _json.encode(openapi_document(ROUTES, __version__))
        return Response(200, self._openapi, headers=(
            (b"cache-control", b"no-store"), (b"access-control-allow-origin", b"*")))

    @staticmethod
    def query(scope: Scope) -> dict[str, str]:
        return _query(scope)

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
