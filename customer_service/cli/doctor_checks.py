"""The checks of ``customer-service doctor``, one per part of a deployment: each talks to
what it checks (the database, Redis, the AI upstream, the public URL) under the caller's
deadline and returns a verdict with one line of detail; the errors it expects become a
``Failed`` with a hint."""

# Heavy modules (trio, rich, httpx, coredis, storage) are imported inside the functions
# that use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from customer_service.cli.common import describe_database, get_state
from customer_service.cli.doctor_report import (
    DEPLOY_DOC,
    EXTRA_FDS,
    PING_ID,
    Check,
    Failed,
    Progress,
    Status,
    as_ms,
    describe_error,
    error_chain,
    expected_descriptors,
    leaf_error,
    mask_url,
    os_reason,
    scrub,
)
from customer_service.config import ENV_PREFIX, OTHER_ENV_NAMES, Config, worker_count
from customer_service.errors import ConfigError, CustomerServiceError, DatabaseMissing

if TYPE_CHECKING:
    import httpx


def check_config() -> tuple[Check, Config | None]:
    state = get_state()
    try:
        config = state.config
    except ConfigError as exc:
        return Check("config", "fail", f"{exc.message} (check it with: customer-service config "
                                       "check)"), None
    source = state.config_path or "embedded defaults"
    overrides = sorted(name for name in os.environ
                       if name.startswith(ENV_PREFIX) and name not in OTHER_ENV_NAMES)
    detail = source + (f"; environment overrides: {', '.join(overrides)}" if overrides else "")
    return Check("config", "ok", detail), config


def newest_migration(backend: str) -> int:
    """The newest schema version this release ships for ``backend`` ("sqlite", "mysql").

    Asks the storage package's migration loader when it can be found (its module
    may move), else reads the migration files' names the way the loader does:
    ``NNNN_name.sql`` in ``customer_service/storage/migrations/<backend>/``.
    """
    import importlib

    for name in ("customer_service.storage._sql_schema", "customer_service.storage._sql"):
        try:
            module = importlib.import_module(name)
            load = module.load_migrations
            dialect = getattr(module, backend.upper(), None)
            if dialect is None:
                dialect = getattr(importlib.import_module("customer_service.storage._sql"),
                                  backend.upper())
            versions = [int(migration.version) for migration in load(dialect)]
        except (ImportError, AttributeError, TypeError, ValueError):
            continue
        return max(versions, default=0)
    from importlib import resources

    folder = resources.files("customer_service.storage.migrations") / backend
    found = [int(m.group(1)) for entry in folder.iterdir()
             if (m := re.match(r"^(\d{4})_[A-Za-z0-9_]+\.sql$", entry.name))]
    return max(found, default=0)


async def _tcp_reachable(host: str, port: int, what: str, progress: Progress,
                         hint: str = "") -> None:
    """Open and close a TCP connection: a clear 'unreachable' before a driver's own errors."""
    import trio

    progress.step = f"connecting to {host}:{port}"
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise Failed(f"{what} unreachable: {os_reason(exc) or exc}{hint}") from None
    await trio.aclose_forcefully(stream)


async def check_database(config: Config, progress: Progress) -> Check:
    from customer_service.storage import open_store

    storage = config.storage
    where = progress.target = describe_database(config)
    migrate_hint = "run customer-service db migrate"
    if storage.backend == "sqlite":
        path = config.resolve_path(storage.sqlite_path)
        if not path.exists():  # opening it would create an empty file
            raise Failed(f"{where}: the file does not exist; {migrate_hint} to create it")
    else:
        await _tcp_reachable(storage.mysql_host, storage.mysql_port, where, progress,
                             "; is MySQL/MariaDB running, and are [storage] mysql_host and "
                             "mysql_port right?")
    newest = newest_migration(storage.backend)
    progress.step = "opening the database"
    try:
        async with open_store(config, create=False) as store:
            progress.step = "reading the schema version"
            version = await store.schema_version()
            if version < newest:
                state = "empty" if version == 0 else f"schema {version}"
                raise Failed(f"{where}: {state}, this release needs schema {newest}: "
                             f"{migrate_hint}")
            progress.step = "probing a write"
            await store.probe_write()
    except Exception as exc:  # the store's errors may come wrapped in a nursery's group
        leaf = leaf_error(exc)
        if isinstance(leaf, Failed):
            raise leaf from None
        if isinstance(leaf, DatabaseMissing):
            raise Failed(f"{where}: the database does not exist; {migrate_hint} to create "
                         "it") from None
        if isinstance(leaf, CustomerServiceError):
            raise Failed(f"{where}: {leaf.message}") from None
        raise
    if version > newest:
        return Check("database", "warn", f"{where} (schema {version}, newer than the {newest} "
                                         "this release knows: a newer release migrated it; "
                                         "writable)")
    return Check("database", "ok", f"{where} (schema {version}, writable)")


@contextmanager
def _quiet_coredis() -> Iterator[None]:
    """Keep coredis's own logging (a failed connection logs a traceback) off the terminal,
    and its ResourceWarnings about streams it leaves unclosed when a connection fails."""
    import gc
    import logging
    import warnings

    logger = logging.getLogger("coredis")
    handler = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                yield
            finally:
                gc.collect()  # collect coredis's leftovers while the warning is ignored
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _redis_failure(exc: BaseException, where: str) -> Failed:
    from coredis.exceptions import AuthenticationError, AuthorizationError, ResponseError

    for link in error_chain(exc):
        if isinstance(link, AuthenticationError):
            return Failed(f"{where}: authentication failed ({link}): put the password in the URL, "
                          "redis://:PASSWORD@host:6379/0 (or USER:PASSWORD), best through "
                          "CUSTOMER_SERVICE_BUS_REDIS_URL")
        if isinstance(link, AuthorizationError):
            return Failed(f"{where}: the Redis user may not run a command the bus needs ({link})")
        if isinstance(link, ResponseError):
            return Failed(f"{where}: Redis answered with an error: {link}")
    return Failed(f"{where} unreachable: {describe_error(exc)}")


async def check_redis(config: Config, progress: Progress, timeout: float) -> Check:
    bus = config.bus
    if not bus.redis_url:
        return Check("redis", "skip", "single instance; no bus configured")
    import secrets

    import trio

    url = bus.redis_url
    where = progress.target = mask_url(url)
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        await _tcp_reachable(parts.hostname or "localhost", parts.port or 6379, where, progress,
                             "; is Redis running, and is [bus] redis_url right?")
    elif parts.scheme == "unix":
        progress.step = f"connecting to {parts.path}"
        try:
            sock = await trio.open_unix_socket(parts.path)
        except OSError as exc:
            raise Failed(f"{where} unreachable: {os_reason(exc) or exc}") from None
        await trio.aclose_forcefully(sock)

    import coredis
    from coredis.retry import NoRetryPolicy

    channel = f"{bus.namespace}:doctor:{secrets.token_hex(8)}"
    with _quiet_coredis():
        try:
            progress.step = "PING"
            client = coredis.Redis.from_url(url, decode_responses=True,
                                            retry_policy=NoRetryPolicy(),
                                            connect_timeout=2 * timeout,
                                            stream_timeout=2 * timeout)  # ours fires first
            async with client:
                await client.ping()
                started = trio.current_time()
                await client.ping()
                ping = trio.current_time() - started
                progress.step = "INFO server"
                info = await client.info("server")
                version = str(info.get("redis_version") or info.get("valkey_version") or "?")
                progress.step = f"subscribing to {channel}"
                async with client.pubsub(channels=[channel], retry_policy=None,
                                         ignore_subscribe_messages=True) as pubsub:
                    progress.step = f"publishing on {channel}"
                    started = trio.current_time()
                    receivers = await client.publish(channel, PING_ID)
                    if receivers < 1:
                        raise Failed(f"{where}: a message published on {channel} reached no "
                                     "subscriber (a Redis proxy that does not support pub/sub?)")
                    progress.step = (f"waiting for the message published on {channel} to "
                                     "come back")
                    while True:  # None: a subscription notice, filtered out; the deadline ends it
                        message = await pubsub.get_message(timeout=timeout)
                        if (message is not None and message.get("type") == "message"
                                and message.get("data") == PING_ID):
                            break
                    elapsed = trio.current_time() - started
        except Exception as exc:  # noqa: BLE001 - whatever coredis raises becomes a verdict
            leaf = leaf_error(exc)
            if isinstance(leaf, Failed):
                raise leaf from None
            raise _redis_failure(exc, where) from None
    return Check("redis", "ok", f"{where} (Redis {version}; PING {as_ms(ping)}, pub/sub round "
                                f"trip {as_ms(elapsed)})")


def _api_error(response: httpx.Response, secret: str) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the start of the body."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    text = " ".join(response.text.split())[:120] or "empty body"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = str(error["message"])[:200]
        elif isinstance(error, str):
            text = error[:200]
    return scrub(text, secret)


def _refused(config: Config, response: httpx.Response) -> Failed:
    ai = config.ai
    source = ("[ai] api_key" if ai.api_key else
              f"${ai.api_key_env} ([ai] api_key_env)" if ai.api_key_env else None)
    if source is None:
        return Failed(f"{response.request.url} answered {response.status_code}: the API wants a "
                      "key and none is configured; set CUSTOMER_SERVICE_AI_API_KEY (or [ai] "
                      "api_key_env)")
    return Failed(f"the API key was refused ({response.status_code} from "
                  f"{mask_url(str(response.request.url))}: "
                  f"{_api_error(response, ai.resolved_api_key())}); check {source}")


async def check_ai(config: Config, progress: Progress, timeout: float) -> Check:
    ai = config.ai
    if not ai.enabled:
        return Check("ai", "skip", "[ai] enabled = false")
    import ssl

    import certifi
    import httpx
    import trio

    base = ai.base_url.rstrip("/")
    shown = mask_url(base)
    headers = {"User-Agent": "customer-service doctor"}
    key = ai.resolved_api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    http_timeout = httpx.Timeout(connect=min(ai.connect_timeout, timeout),
                                 read=min(ai.first_token_timeout, timeout),
                                 write=min(ai.connect_timeout, timeout), pool=timeout)
    notes: list[str] = []
    status: Status = "ok"
    try:
        async with httpx.AsyncClient(base_url=base + "/", headers=headers, timeout=http_timeout,
                                     verify=ssl.create_default_context(cafile=certifi.where()),
                                     http2=ai.http2) as http:
            progress.step = f"GET {shown}/models"
            models = await http.get("models")
            if models.status_code in (401, 403):
                raise _refused(config, models)
            if models.status_code == 404:
                status = "warn"
                notes.append("no /models endpoint (404), model not verified")
            elif models.status_code != 200:
                raise Failed(f"GET {shown}/models answered {models.status_code}: "
                             f"{_api_error(models, key)}")
            else:
                try:
                    listed = [str(m.get("id")) for m in models.json().get("data", [])
                              if isinstance(m, dict)]
                except (ValueError, AttributeError, TypeError):
                    raise Failed(f"GET {shown}/models did not answer an OpenAI model list: "
                                 f"{_api_error(models, key)}") from None
                if not listed:
                    status = "warn"
                    notes.append("the model list is empty, model not verified")
                elif ai.model not in listed:
                    offered = ", ".join(listed[:8]) + (", …" if len(listed) > 8 else "")
                    raise Failed(f"model {ai.model!r} is not offered by {shown} (it has: "
                                 f"{offered}); fix [ai] model")
                else:
                    notes.append("model listed")
            progress.step = f"POST {shown}/chat/completions"
            started = trio.current_time()
            reply = await http.post("chat/completions", json={
                "model": ai.model, "max_tokens": 1, "stream": False,
                "messages": [{"role": "user", "content": "Say OK."}]})
            elapsed = trio.current_time() - started
            if reply.status_code in (401, 403):
                raise _refused(config, reply)
            if reply.status_code != 200:
                raise Failed(f"a one-token request to {shown}/chat/completions answered "
                             f"{reply.status_code}: {_api_error(reply, key)}")
            try:
                choices = reply.json().get("choices")
            except (ValueError, AttributeError):
                choices = None
            if not isinstance(choices, list) or not choices:
                raise Failed(f"a one-token request to {shown}/chat/completions answered 200 "
                             "without a choice; is base_url an OpenAI-compatible API?")
    except httpx.TimeoutException as exc:
        raise Failed(f"{shown}: no answer in time ({type(exc).__name__}, {progress.step})") from None
    except httpx.HTTPError as exc:
        raise Failed(f"{shown} unreachable ({progress.step}): {describe_error(exc)}") from None
    notes.append(f"one-token reply in {as_ms(elapsed)}")
    return Check("ai", status, f"{shown}, model {ai.model} ({'; '.join(notes)})")


def check_descriptors(config: Config, connections: int) -> Check:
    try:
        import resource
    except ImportError:
        return Check("file descriptors", "skip", "no RLIMIT_NOFILE on this platform")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    workers = worker_count(config.server)
    need = expected_descriptors(connections, workers)
    share = (f"{connections} connections / {workers} workers" if workers > 1
             else f"{connections} connections")
    basis = f"{share} + {EXTRA_FDS}"
    if soft == resource.RLIM_INFINITY:
        return Check("file descriptors", "ok", f"unlimited (need about {need}: {basis})")
    if soft < need:
        hard_text = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        raise_hard = (f"; the hard limit ({hard_text}) must go up too (as root, or "
                      "/etc/security/limits.conf)"
                      if hard != resource.RLIM_INFINITY and hard < need else "")
        return Check("file descriptors", "fail",
                     f"soft limit {soft} open files, need about {need} ({basis}): raise it with "
                     f"'ulimit -n {need}' before starting, or LimitNOFILE={need} in the systemd "
                     f"unit{raise_hard}")
    return Check("file descriptors", "ok", f"soft limit {soft}, need about {need} ({basis})")


_DROPPED = (200, 400, 426)


def _upgrade_failure(status: int | None, headers: dict[str, str], ws_url: str,
                     message: str) -> Failed:
    server = headers.get("server")
    by = f" (Server: {server})" if server else ""
    if status in _DROPPED:
        return Failed(f"the WebSocket upgrade to {ws_url} got {status}{by} instead of 101: the "
                      "proxy in front dropped the Upgrade headers (Upgrade: websocket, "
                      f"Connection: upgrade); forward them, see {DEPLOY_DOC}")
    if status in (401, 403):
        return Failed(f"the WebSocket upgrade to {ws_url} was refused ({status}{by}): a proxy, "
                      f"firewall or access rule blocks WebSockets; see {DEPLOY_DOC}")
    if status == 404:
        return Failed(f"nothing at {ws_url} (404{by}): public_url must be the server's root, "
                      "or the proxy does not route /ws/ to it")
    if status in (502, 503, 504):
        return Failed(f"the WebSocket upgrade to {ws_url} got {status}{by}: the proxy could not "
                      f"reach the server, or timed out; see {DEPLOY_DOC}")
    if status is not None:
        return Failed(f"the WebSocket upgrade to {ws_url} got {status}{by} instead of 101; see "
                      f"{DEPLOY_DOC}")
    return Failed(f"the WebSocket upgrade to {ws_url} failed: {message}")


async def check_public_url(config: Config, progress: Progress, timeout: float) -> Check:
    public = config.server.public_url.strip()
    if not public:
        return Check("public url", "skip", "[server] public_url is not set")
    import json
    import ssl

    import certifi
    import httpx
    import trio

    from customer_service.transport.client import (
        ConnectionClosed,
        HandshakeFailed,
        WebSocketError,
        open_websocket,
    )

    base = public.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failed(f"[server] public_url {public!r} must be an http:// or https:// URL")
    health_url = f"{base}/healthz"
    ws_url = ("wss://" if parts.scheme == "https" else "ws://") + base.split("://", 1)[1] \
        + "/ws/visitor"
    progress.step = f"GET {health_url}"
    try:
        async with httpx.AsyncClient(
                timeout=timeout, verify=ssl.create_default_context(cafile=certifi.where()),
                headers={"User-Agent": "customer-service doctor"}) as http:
            health = await http.get(health_url)
    except httpx.TimeoutException:
        raise Failed(f"{health_url}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise Failed(f"{health_url} unreachable: {describe_error(exc)}") from None
    if health.status_code != 200:
        moved = health.headers.get("location")
        hint = (f"; it redirects to {moved}: set public_url to the final address" if moved
                else "; is the server running behind it?")
        raise Failed(f"GET {health_url} answered {health.status_code}{hint}")
    version = ""
    bus_state: object = None
    try:
        body = health.json()
        if isinstance(body, dict) and body.get("version"):
            version = f" (customer-service {body['version']})"
        if isinstance(body, dict):
            bus_state = body.get("bus")
    except ValueError:
        pass

    progress.step = f"opening {ws_url}"
    deadline = trio.current_effective_deadline()
    remaining = max(0.1, min(timeout, deadline - trio.current_time()))
    try:
        started = trio.current_time()
        async with open_websocket(ws_url, timeout=remaining) as ws:
            progress.step = f"ping/pong on {ws_url}"
            await ws.send_text(json.dumps({"type": "ping", "id": PING_ID}))
            while True:
                raw = await ws.receive_text()
                try:
                    frame = json.loads(raw)
                except ValueError:
                    raise Failed(f"{ws_url} answered the ping with something that is not "
                                 f"JSON: {raw[:80]!r}") from None
                if isinstance(frame, dict) and frame.get("type") == "pong":
                    if frame.get("id") != PING_ID:
                        raise Failed(f"{ws_url} answered pong with id {frame.get('id')!r}, "
                                     f"not {PING_ID!r}")
                    break
                if isinstance(frame, dict) and frame.get("type") == "error":
                    raise Failed(f"{ws_url} answered the ping with an error: "
                                 f"{frame.get('message') or frame}")
            elapsed = trio.current_time() - started
    except HandshakeFailed as exc:
        raise _upgrade_failure(exc.status, exc.headers, ws_url, str(exc)) from None
    except ConnectionClosed as exc:
        raise Failed(f"{ws_url} closed the WebSocket before answering the ping ({exc.close_code}"
                     f"{' ' + exc.reason if exc.reason else ''}); a proxy idle timeout? see "
                     f"{DEPLOY_DOC}") from None
    except WebSocketError as exc:
        raise Failed(f"{ws_url}: {exc}") from None
    except OSError as exc:
        raise Failed(f"{ws_url} unreachable: {describe_error(exc)}") from None
    detail = (f"{base}: /healthz 200{version}, WebSocket ping/pong via {ws_url} in "
              f"{as_ms(elapsed)}")
    if config.bus.redis_url and bus_state != "ok":
        # The instance that answered is not (or not yet) on the bus: its sockets do not
        # reach the others'.
        return Check("public url", "warn", f"{detail}; but the instance that answered says "
                                           f"\"bus\": {json.dumps(bus_state)} (is its Redis "
                                           "reachable, and is its [bus] redis_url this one?)")
    return Check("public url", "ok", detail)


