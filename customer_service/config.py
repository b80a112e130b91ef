"""The one typed, frozen configuration object, built from a TOML file.

Every key is a dataclass field with a default and a ``doc`` in its metadata: the
defaults run the server with nothing else installed (SQLite next to the config
file, port 8080, AI off), and the docs feed ``config init`` and the README's
configuration reference, so the three cannot drift apart.

Any key may also come from the environment as ``CUSTOMER_SERVICE_<SECTION>_<KEY>``
(for example ``CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD``), which is how secrets
are kept out of the file. The environment wins over the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from customer_service.core.hours import HoursError, parse_schedule
from customer_service.core.origin import parse_origin
from customer_service.errors import ConfigError

ENV_PREFIX = "CUSTOMER_SERVICE_"


def _doc(text: str, *, gt: float | None = None, ge: float | None = None,
         le: float | None = None) -> dict[str, Any]:
    """Field metadata: the doc shown in ``config init`` and the reference, plus bounds."""
    return {"doc": text, "gt": gt, "ge": ge, "le": le}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata=_doc(
        "Address to listen on. 0.0.0.0 (or ::) to accept connections from other machines."))
    port: int = field(default=8080, metadata=_doc(
        "TCP port for HTTP and WebSocket (0 picks a free one).", ge=0, le=65535))
    public_url: str = field(default="", metadata=_doc(
        "URL visitors reach the server at, shown in the banner (default: http://host:port)."))
    max_frame_bytes: int = field(default=65536, metadata=_doc(
        "Largest WebSocket message accepted; a larger one closes the socket with 1009.", ge=1))
    max_message_chars: int = field(default=4000, metadata=_doc(
        "Longest chat message content, in characters; longer gets a too_large error.", ge=1))
    message_timeout: float = field(default=3.0, metadata=_doc(
        "Seconds to answer a frame or REST request. Counted from its arrival; past it the "
        "client gets a timeout error and what it waited for in the database is ended.", gt=0))
    admission_latency: float = field(default=0.5, metadata=_doc(
        "Seconds to ack a visitor's text past which the server counts as overloaded. It "
        "then takes fewer texts at once and answers the others busy, with a retry_after "
        "to resend after (docs/protocol.md, Overload). 0 takes every text.", ge=0))
    outbound_queue: int = field(default=256, metadata=_doc(
        "Frames queued per connection; a client that lets this fill up is closed (1008).", ge=1))
    rate_limit_per_second: float = field(default=20.0, metadata=_doc(
        "Frames per second one connection may send on average.", gt=0))
    rate_limit_burst: int = field(default=60, metadata=_doc(
        "Frames one connection may send in a burst before rate_limited errors start.", ge=1))
    rate_limit_strikes: int = field(default=20, metadata=_doc(
        "rate_limited errors a connection may collect before it is closed with 1008.", ge=0))
    shutdown_timeout: float = field(default=5.0, metadata=_doc(
        "Seconds a graceful shutdown (SIGINT/SIGTERM) may take before it is forced.", gt=0))
    hello_timeout: float = field(default=10.0, metadata=_doc(
        "Seconds a new visitor socket has to send its hello frame.", gt=0))
    transport: Literal["native", "hypercorn"] = field(default="native", metadata=_doc(
        "native: the project's own trio HTTP/WebSocket transport (faster); or hypercorn."))
    workers: int | Literal["auto"] = field(default=1, metadata=_doc(
        "Processes serving the port together (SO_REUSEPORT). Each is a full instance on the "
        "bus; \"auto\": one per CPU core. More than 1 needs [bus] redis_url and [storage] backend = "
        "\"mysql\".", ge=1, le=256))
    trusted_proxies: list[str] = field(default_factory=list, metadata=_doc(
        "Reverse proxies whose X-Forwarded-For names the client. Addresses or networks "
        "(\"10.0.0.0/8\"); from anyone else the header is ignored. Empty: never trust it."))
    allowed_origins: list[str] = field(default_factory=list, metadata=_doc(
        "Web pages (origins, \"https://shop.example.com\") that may open the visitor and agent "
        "sockets; another Origin gets 403. \"https://*.example.com\": any subdomain. Empty: "
        "any origin. Clients sending no Origin (not browsers) are always let in."))


@dataclass(frozen=True, slots=True)
class StorageConfig:
    backend: Literal["sqlite", "mysql"] = field(default="sqlite", metadata=_doc(
        "sqlite (embedded, one file) or mysql (MySQL/MariaDB, for production and several instances)."))
    sqlite_path: str = field(default="customer-service.db", metadata=_doc(
        "SQLite database file; a relative path is relative to the config file."))
    sqlite_cache_mb: int = field(default=64, metadata=_doc(
        "Most memory, in MiB, SQLite's page cache may use; a bigger one keeps busy indexes in RAM.",
        ge=1, le=65536))
    mysql_host: str = field(default="127.0.0.1", metadata=_doc("MySQL/MariaDB host."))
    mysql_port: int = field(default=3306, metadata=_doc("MySQL/MariaDB port.", ge=1, le=65535))
    mysql_user: str = field(default="root", metadata=_doc("MySQL/MariaDB user."))
    mysql_password: str = field(default="", metadata=_doc(
        "MySQL/MariaDB password; better set CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD."))
    mysql_database: str = field(default="customer_service", metadata=_doc("MySQL/MariaDB database."))
    mysql_pool_size: int = field(default=4, metadata=_doc(
        "Connections kept open to MySQL/MariaDB.", ge=1))
    group_commit_max: int = field(default=512, metadata=_doc(
        "Most messages committed in one transaction when many arrive together.", ge=1))


@dataclass(frozen=True, slots=True)
class BusConfig:
    redis_url: str = field(default="", metadata=_doc(
        "Redis that connects several instances. redis://[:password@]host:port/db, rediss:// "
        "for TLS, unix:///path.sock; empty: one instance, everything in-process."))
    namespace: str = field(default="customer-service", metadata=_doc(
        "Prefix of every Redis key and channel, so deployments can share one Redis."))
    heartbeat_interval: float = field(default=1.0, metadata=_doc(
        "Seconds between an instance's heartbeats on the bus.", ge=0.05, le=60))
    instance_timeout: float = field(default=6.0, metadata=_doc(
        "Seconds without a heartbeat before another instance counts as gone. Its agents "
        "and visitors then count as offline. At least twice heartbeat_interval.", gt=0,
        le=3600))
    publish_interval: float = field(default=0.002, metadata=_doc(
        "Seconds an instance gathers events into one Redis publish under load. An event "
        "after a quiet spell goes out at once.", ge=0, le=1))
    outbox_size: int = field(default=20000, metadata=_doc(
        "Events waiting to be published. Past it new ones are dropped; the other "
        "instances notice and read what they missed from the database.", ge=1))
    gap_wait: float = field(default=0.05, metadata=_doc(
        "Seconds a message may wait for an earlier one still on the bus. Then the missing "
        "ones are read from the database.", ge=0, le=10))
    command_timeout: float = field(default=1.0, metadata=_doc(
        "Seconds one Redis command may take before the bus counts as degraded.", gt=0,
        le=60))


@dataclass(frozen=True, slots=True)
class AuthConfig:
    token_ttl_hours: float = field(default=720.0, metadata=_doc(
        "Lifetime of an agent login token, in hours.", gt=0))
    login_failures_per_user: int = field(default=5, metadata=_doc(
        "Failed logins for one username before its attempts are slowed down. Then each "
        "attempt gets 429 with Retry-After: 1 s, doubling with each further failure up to "
        "login_failure_window. A successful login clears the count; successes never count.",
        ge=1))
    login_failures_per_address: int = field(default=50, metadata=_doc(
        "Failed logins from one address (any usernames) before it is slowed down alike. It "
        "stops one address from trying many names; keep it well above what a whole office "
        "behind one NAT mistypes, because once reached it slows every login from there.",
        ge=1))
    login_failure_window: float = field(default=900.0, metadata=_doc(
        "Seconds after its last failure that a failure count is forgotten. Also the longest "
        "wait between attempts.", gt=0, le=86400))
    scrypt_n: int = field(default=2**17, metadata=_doc(
        "scrypt cost N of new password hashes (r=8, p=1). A power of two, at least 16384; "
        "131072 (OWASP's advice) takes about 0.3 s and 128 MiB per login. Stored hashes "
        "with a lower N are upgraded at their next successful login.",
        ge=2**14, le=2**20))


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    token: str = field(default="", metadata=_doc(
        "Bearer token /metrics asks for (Authorization: Bearer <token>). Empty: /metrics is "
        "open to anyone who reaches the port. Better: CUSTOMER_SERVICE_METRICS_TOKEN."))


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_doc(
        "Log level."))
    format: Literal["text", "json"] = field(default="text", metadata=_doc(
        "text for people, json (one object per line) for log collectors."))


@dataclass(frozen=True, slots=True)
class AiConfig:
    enabled: bool = field(default=False, metadata=_doc(
        "Answer visitors with an AI that streams from an OpenAI-compatible API."))
    base_url: str = field(default="https://api.openai.com/v1", metadata=_doc(
        "The API's base URL including /v1 (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM...)."))
    api_key: str = field(default="", metadata=_doc(
        "API key (Authorization: Bearer). Better: CUSTOMER_SERVICE_AI_API_KEY or api_key_env."))
    api_key_env: str = field(default="", metadata=_doc(
        "Name of an environment variable holding the API key (used when api_key is empty)."))
    model: str = field(default="gpt-4o-mini", metadata=_doc("Model name sent with each request."))
    name: str = field(default="Assistant", metadata=_doc("The name visitors see on AI replies."))
    system_prompt: str = field(default=(
        "You are a friendly, concise customer-service assistant. Answer the visitor's questions; "
        "when you cannot help, say that a human agent will follow up."), metadata=_doc(
        "The system prompt that starts every request."))
    mode: Literal["off", "when_no_agent", "always"] = field(default="when_no_agent", metadata=_doc(
        "off; when_no_agent: answer while no agent has accepted the conversation; always."))
    max_context_tokens: int = field(default=3000, metadata=_doc(
        "Approximate tokens sent upstream: the system prompt plus the newest messages that fit.",
        ge=64))
    max_reply_tokens: int = field(default=512, metadata=_doc(
        "max_tokens of each reply.", ge=1))
    temperature: float = field(default=0.3, metadata=_doc("Sampling temperature.", ge=0, le=2))
    connect_timeout: float = field(default=5.0, metadata=_doc(
        "Seconds to open a connection to the API.", gt=0))
    first_token_timeout: float = field(default=20.0, metadata=_doc(
        "Seconds from the request to the first token (retries included).", gt=0))
    idle_timeout: float = field(default=20.0, metadata=_doc(
        "Seconds the stream may stay silent between chunks before it counts as stalled.", gt=0))
    total_timeout: float = field(default=120.0, metadata=_doc(
        "Seconds one reply may take in all.", gt=0))
    max_concurrent_streams: int = field(default=256, metadata=_doc(
        "Replies streaming at once; more wait for a slot (within first_token_timeout).", ge=1))
    max_retries: int = field(default=2, metadata=_doc(
        "Retries of a request that failed before its first token (429, 5xx, network).", ge=0))
    retry_base_delay: float = field(default=0.5, metadata=_doc(
        "First retry delay in seconds; doubles each retry, with jitter. Retry-After wins.", gt=0))
    retry_max_delay: float = field(default=8.0, metadata=_doc(
        "Longest delay between retries, in seconds.", gt=0))
    breaker_failures: int = field(default=5, metadata=_doc(
        "Failed upstream requests in a row, retries included, that open the circuit breaker.",
        ge=1))
    breaker_cooldown: float = field(default=30.0, metadata=_doc(
        "Seconds the breaker stays open before one trial request.", gt=0))
    prewarm_connections: int = field(default=2, metadata=_doc(
        "Connections opened at start-up (GET /models): no TCP/TLS setup for the first visitor.",
        ge=0))
    http2: bool = field(default=True, metadata=_doc(
        "Use HTTP/2 when the upstream offers it (TLS only); HTTP/1.1 keep-alive otherwise."))
    http_client: Literal["auto", "httpx"] = field(default="auto", metadata=_doc(
        "HTTP client for the upstream. auto: a lean h11 client for http:// (no proxy), "
        "httpx for https://; httpx: httpx always (HTTP_PROXY/ALL_PROXY are honoured)."))
    context_cache_mb: int = field(default=64, metadata=_doc(
        "Megabytes of AI context windows kept in memory. A reply in a long session then "
        "reads no history from the database (about, not exactly, this size); 0: off.", ge=0))
    context_cache_entries: int = field(default=10000, metadata=_doc(
        "Most conversations whose context window is kept (least recently used go first).",
        ge=1))
    unavailable_message: str = field(default=(
        "The assistant is unavailable right now. An agent will reply as soon as possible."),
        metadata=_doc("What visitors are told when the AI fails; the conversation is flagged."))

    def resolved_api_key(self, environ: Mapping[str, str] | None = None) -> str:
        if self.api_key or not self.api_key_env:
            return self.api_key
        return (os.environ if environ is None else environ).get(self.api_key_env, "")


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    secret: str = field(default="", metadata=_doc(
        "Secret the site signs user ids with. The widget's data-user-hash must be the "
        "HMAC-SHA256 (hex) of data-user-id under this key. Empty: identity is off and "
        "data-user-id is refused. Better: CUSTOMER_SERVICE_IDENTITY_SECRET."))
    required: bool = field(default=False, metadata=_doc(
        "Refuse visitors the site did not identify (no data-user-id and data-user-hash). "
        "Needs secret."))


@dataclass(frozen=True, slots=True)
class CampaignsConfig:
    min_hours_between: float = field(default=24.0, metadata=_doc(
        "Frequency cap in hours. A contact who got a campaign message less than this long "
        "ago is skipped by other campaigns (0: no cap).", ge=0, le=24 * 365))
    scheduler: bool = field(default=True, metadata=_doc(
        "Run scheduled campaigns (campaigns create --at) in the server when they are due. "
        "With several instances one of them runs each campaign."))


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    sender: bool = field(default=True, metadata=_doc(
        "Send queued webhook events from this server. Events are queued whatever this "
        "says (webhooks add); with several instances each event is sent by one of them."))
    timeout: float = field(default=10.0, metadata=_doc(
        "Seconds a receiver has to answer. Past it the attempt counts as failed and is "
        "tried again later.", gt=0, le=300))
    max_in_flight: int = field(default=16, metadata=_doc(
        "Deliveries this server sends at once, over all webhooks.", ge=1, le=1000))
    retry_hours: float = field(default=24.0, metadata=_doc(
        "Hours an event is retried. Timeouts, connection errors, 408, 429 and 5xx are "
        "retried; after this long the event becomes a dead letter (webhooks deliveries "
        "--failed; webhooks replay).",
        gt=0, le=24 * 30))
    retry_base: float = field(default=5.0, metadata=_doc(
        "Seconds the first retry waits at most. Each later one waits up to twice the one "
        "before (random, \"full jitter\"), never more than retry_cap.", gt=0, le=86400))
    retry_cap: float = field(default=3600.0, metadata=_doc(
        "Seconds between two tries at most. Retry-After included.", gt=0, le=86400))
    poll_interval: float = field(default=0.5, metadata=_doc(
        "Seconds between looks at the queue when there is nothing to send.", gt=0, le=60))


LANGUAGES = ("en", "zh-CN")
"""The languages of the widget and the dashboard (one string table each in ``web/lang/``)."""


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    mode: Literal["manual", "round_robin", "least_busy"] = field(default="manual", metadata=_doc(
        "How new conversations reach agents. manual: they wait in the queue until an agent "
        "accepts one. round_robin: each goes to the next online agent with room, in turn. "
        "least_busy: to the online agent with the fewest open conversations."))
    default_capacity: int = field(default=5, metadata=_doc(
        "Open conversations an agent may hold. Auto-assignment skips an agent who is full; "
        "agents set NAME --capacity N gives one agent another number.", ge=1, le=1000))


@dataclass(frozen=True, slots=True)
class HoursConfig:
    enabled: bool = field(default=False, metadata=_doc(
        "Keep business hours. Outside them the widget says when the team is back and offers "
        "to leave a message. Off: always open."))
    timezone: str = field(default="UTC", metadata=_doc(
        "IANA time zone the opening times are in, e.g. \"Europe/Paris\", \"Asia/Shanghai\"."))
    open: list[str] = field(default_factory=lambda: ["mon-fri 09:00-17:00"], metadata=_doc(
        "When the team is open. \"DAYS HH:MM-HH:MM\" entries, days as mon..sun, ranges "
        "(mon-fri) or lists (sat,sun); entries of one day must not overlap."))
    holidays: list[str] = field(default_factory=list, metadata=_doc(
        "Days the team is closed all day. Dates as YYYY-MM-DD, in timezone."))


@dataclass(frozen=True, slots=True)
class AutoRepliesConfig:
    welcome: dict[str, str] = field(default_factory=lambda: {
        "en": "Hi! How can we help you today?",
        "zh-CN": "您好！请问有什么可以帮您？"}, metadata=_doc(
        "Greeting shown when a visitor opens the chat, per language. It is stored (role "
        "system) when the conversation begins. An empty text: no greeting in that language."))
    away: dict[str, str] = field(default_factory=lambda: {
        "en": "Nobody is online right now. Leave your email and we will write back.",
        "zh-CN": "目前没有客服在线。请留下您的邮箱，我们会尽快回复您。"}, metadata=_doc(
        "Sent when nobody is online, per language. Once per conversation, when a visitor "
        "writes while no agent is online and the AI does not answer."))
    closed: dict[str, str] = field(default_factory=lambda: {
        "en": "We are closed now and back {back}. Leave your email and we will write back.",
        "zh-CN": "我们现在不在工作时间，将于{back}回来。请留下您的邮箱，我们会尽快回复您。"},
        metadata=_doc(
        "Sent outside business hours, per language. Once per conversation, when a visitor "
        "writes; {back} is when the team opens again."))


@dataclass(frozen=True, slots=True)
class WebConfig:
    title: str = field(default="Customer service", metadata=_doc(
        "Name shown in the widget header, the chat page and the dashboard."))
    logo_url: str = field(default="", metadata=_doc(
        "Logo shown beside the title. An https:// URL (the pages' Content-Security-Policy "
        "then allows images from its origin) or a path on this server (/...); empty: none."))
    accent_color: str = field(default="#2563eb", metadata=_doc(
        "Accent colour of the widget, the chat page and the dashboard. #rgb or #rrggbb."))
    show_embed_help: bool = field(default=False, metadata=_doc(
        "Show the embed snippet and the dashboard link on the chat page /."))
    default_language: Literal["en", "zh-CN"] = field(default="en", metadata=_doc(
        "Language used when none is asked for. The widget's data-lang or the browser's "
        "language wins when known; the dashboard uses this until an agent picks one."))
    expected_reply: dict[str, str] = field(default_factory=dict, metadata=_doc(
        "Reply time shown in the widget header while the team is online, per language. E.g. "
        "{ en = \"Usually replies in a few minutes\", \"zh-CN\" = \"通常几分钟内回复\" }."))
    prechat_fields: list[Literal["name", "email", "question"]] = field(
        default_factory=list, metadata=_doc(
        "Pre-chat form fields asked before the first message. Any of \"name\", \"email\", "
        "\"question\". Empty: no form."))


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ai: AiConfig = field(default_factory=AiConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    campaigns: CampaignsConfig = field(default_factory=CampaignsConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    hours: HoursConfig = field(default_factory=HoursConfig)
    auto_replies: AutoRepliesConfig = field(default_factory=AutoRepliesConfig)
    web: WebConfig = field(default_factory=WebConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    source: str | None = field(default=None, compare=False, metadata={"internal": True})

    def resolve_path(self, value: str) -> Path:
        """A path from the file, relative to the file's folder when not absolute."""
        path = Path(value).expanduser()
        if path.is_absolute() or self.source is None:
            return path
        return Path(self.source).resolve().parent / path

    def with_changes(self, **sections: Any) -> Config:
        """A copy with whole sections or ``section__key`` values replaced (used by tests)."""
        grouped: dict[str, dict[str, Any]] = {}
        direct: dict[str, Any] = {}
        for name, value in sections.items():
            if "__" in name:
                section, key = name.split("__", 1)
                grouped.setdefault(section, {})[key] = value
            else:
                direct[name] = value
        for section, values in grouped.items():
            direct[section] = dataclasses.replace(getattr(self, section), **values)
        return dataclasses.replace(self, **direct)


def sections() -> Iterator[tuple[str, type[Any]]]:
    """The config sections in file order, as (name, dataclass)."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if f.metadata.get("internal"):
            continue
        yield f.name, hints[f.name]


def section_fields(cls: type[Any]) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    """The fields of one section with their resolved type hints."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield f, hints[f.name]


_PLAIN_NAMES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def describe_type(hint: Any) -> str:
    """A short human name for a field's type: int, float, one of "a", "b"..."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(f'"{v}"' for v in typing.get_args(hint))
    if origin is list:
        return f"list of {describe_type(typing.get_args(hint)[0])}"
    if origin is dict:
        item = describe_type(typing.get_args(hint)[1])
        return f"table of {_PLAIN_NAMES.get(item, item)}s"
    if origin in (typing.Union, types.UnionType):
        choices = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(choices) > 1:
            return " or ".join(
                f'"{typing.get_args(a)[0]}"' if typing.get_origin(a) is Literal
                and len(typing.get_args(a)) == 1 else _PLAIN_NAMES.get(describe_type(a), describe_type(a))
                for a in choices)
    return getattr(hint, "__name__", str(hint))


def _line_of(text: str, section: str, key: str | None) -> int | None:
    """Best-effort line number of ``[section] key`` (or the section header) in TOML text."""
    current = ""
    header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"]+)\s*\]")
    for number, line in enumerate(text.splitlines(), start=1):
        found = header.match(line)
        if found:
            current = found.group(1).strip('"')
            if current == section if key is None else current == f"{section}.{key}":
                return number  # the section, or the key written as a table of its own
            continue
        if key is not None and current == section and re.match(
                rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
            return number
    return None


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ValueError(f"{where} must be {describe_type(hint)}, not {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, not {type(value).__name__}")
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a table ({{ en = \"...\" }}), "
                             f"not {type(value).__name__}")
        return {_convert(k, key_type, where): _convert(v, item, f"{where}.{k}")
                for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        choices = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(choices) > 1:
            for choice in choices:
                try:
                    return _convert(value, choice, where)
                except ValueError:
                    continue
            raise ValueError(f"{where} must be {describe_type(hint)}, not {value!r}")
        hint = choices[0]
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, not {value!r}")
        return value
    raise ValueError(f"{where}: unsupported type {hint!r}")


def _takes_text(hint: Any) -> bool:
    """Whether a bare word is a valid value of this type (a string or a literal choice)."""
    origin = typing.get_origin(hint)
    if hint is str or origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_takes_text(a) for a in typing.get_args(hint))
    return False


def _from_env(raw: str, hint: Any) -> Any:
    """Parse an environment value as a TOML value, falling back to a bare string (and, for
    a list of strings, to words separated by commas: ``10.0.0.5,10.0.0.6``). A string key
    takes the text as it is when it reads as another TOML type (a password ``12345678``)."""
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if _takes_text(hint):
            return raw
        if typing.get_origin(hint) is list and typing.get_args(hint) == (str,):
            return [word.strip() for word in raw.split(",") if word.strip()]
        raise
    return raw if hint is str and not isinstance(value, str) else value


def _check_value(f: dataclasses.Field[Any], value: Any, where: str) -> None:
    """Enforce the bounds a field declares in its metadata (gt, ge, le)."""
    gt, ge, le = f.metadata.get("gt"), f.metadata.get("ge"), f.metadata.get("le")
    if isinstance(value, str):  # a named choice ("auto") of a numeric key has no bounds
        return
    if gt is not None and not value > gt:
        raise ValueError(f"{where} must be greater than {_number(gt)}, not {value!r}")
    if ge is not None and not value >= ge:
        raise ValueError(f"{where} must be at least {_number(ge)}, not {value!r}")
    if le is not None and not value <= le:
        raise ValueError(f"{where} must be at most {_number(le)}, not {value!r}")


def _number(bound: float) -> str:
    """A bound as people write it: 1048576, not 1.04858e+06; 0.05, not 0.050000."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _expected(hint: Any) -> str:
    """What a value of this type is, for "expected ..." messages: an integer, a number..."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        return f'"{choices[0]}"' if len(choices) == 1 else describe_type(hint)
    if origin is list:
        return "a list of " + {str: "strings"}.get(typing.get_args(hint)[0], "values")
    if origin is dict:
        return "a table of " + {str: "strings"}.get(typing.get_args(hint)[1], "values")
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in typing.get_args(hint) if a is not type(None))
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, describe_type(hint))


def _env_value(f: dataclasses.Field[Any], hint: Any, env_name: str, text: str,
               key: str) -> Any:
    """The typed value of one ``CUSTOMER_SERVICE_*`` variable, or a ``ConfigError`` that
    names the variable and the type it wants (never the TOML parser's own words)."""
    where = f"{env_name} (environment)"
    try:
        value = _convert(_from_env(text, hint), hint, where)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected {_expected(hint)}, got {text!r}",
                          key=key) from exc
    try:
        _check_value(f, value, where)
    except ValueError as exc:
        raise ConfigError(str(exc), key=key) from exc
    return value


def _suggest_variable(variable: str, known: Iterable[str]) -> str:
    """`` (did you mean CUSTOMER_SERVICE_SERVER_PORT?)`` or nothing. Compared without the
    shared prefix and without case (variable names are upper case), so the prefix every
    name has does not make a poor match look close."""
    by_rest = {name.removeprefix(ENV_PREFIX): name for name in known}
    rest = variable.removeprefix(ENV_PREFIX).upper()
    if rest in by_rest:
        return f" (did you mean {by_rest[rest]}? variable names are upper case)"
    close = difflib.get_close_matches(rest, list(by_rest), n=1, cutoff=0.7)
    return f" (did you mean {by_rest[close[0]]}?)" if close else ""


def _suggest(name: str, known: Iterable[str]) -> str:
    """``did you mean 'port'?`` when a known name is close, else the list of known names."""
    choices = list(known)
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean '{close[0]}'?" if close else f"known: {', '.join(choices)}"


def _suggest_key(key: str, section: str, known: Mapping[str, type[Any]]) -> str:
    """``_suggest`` within the section; a key of another section says where it belongs."""
    fields = [f.name for f, _ in section_fields(known[section])]
    close = difflib.get_close_matches(key, fields, n=1)
    if not close:
        elsewhere = [other for other, cls in known.items()
                     if any(f.name == key for f, _ in section_fields(cls))]
        if elsewhere:
            return f"it belongs in [{elsewhere[0]}]"
    return _suggest(key, fields)


def build_config(data: Mapping[str, Any], *, path: str | None = None, text: str = "",
                 environ: Mapping[str, str] | None = None) -> Config:
    """Validate parsed TOML (plus environment overrides) into a ``Config``."""
    environ = os.environ if environ is None else environ
    known = dict(sections())
    for name, value in data.items():
        if name not in known:
            raise ConfigError(f"unknown section [{name}] ({_suggest(name, known)})",
                              path=path, key=name, line=_line_of(text, name, None))
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table", path=path, key=name,
                              line=_line_of(text, name, None))
    _check_environment(environ, known)
    built: dict[str, Any] = {}
    for name, cls in known.items():
        given: dict[str, Any] = dict(data.get(name, {}))
        fields = {f.name: (f, hint) for f, hint in section_fields(cls)}
        for key in given:
            if key not in fields:
                raise ConfigError(
                    f"unknown key '{key}' in [{name}] ({_suggest_key(key, name, known)})",
                    path=path, key=f"{name}.{key}", line=_line_of(text, name, key))
        values: dict[str, Any] = {}
        for key, (f, hint) in fields.items():
            env_name = f"{ENV_PREFIX}{name}_{key}".upper()
            if env_name in environ:
                values[key] = _env_value(f, hint, env_name, environ[env_name], f"{name}.{key}")
            elif key in given:
                where = f"[{name}] {key}"
                try:
                    values[key] = _convert(given[key], hint, where)
                    _check_value(f, values[key], where)
                except ValueError as exc:
                    raise ConfigError(str(exc), path=path, key=f"{name}.{key}",
                                      line=_line_of(text, name, key)) from exc
        built[name] = cls(**values)
    config = Config(**built, source=path)
    _check_sections(config, path, text, environ)
    return config


OTHER_ENV_NAMES = frozenset({f"{ENV_PREFIX}CONFIG"})
"""Variables with the prefix that are not config keys (the CLI's ``--config`` default)."""


def _check_environment(environ: Mapping[str, str], known: Mapping[str, type[Any]]) -> None:
    """A ``CUSTOMER_SERVICE_*`` variable that names no key is a mistake: say which."""
    names = {f"{ENV_PREFIX}{section}_{f.name}".upper()
             for section, cls in known.items() for f, _ in section_fields(cls)}
    for variable in sorted(environ):
        if (variable.startswith(ENV_PREFIX) and variable not in names
                and variable not in OTHER_ENV_NAMES):
            hint = _suggest_variable(variable, names | set(OTHER_ENV_NAMES))
            raise ConfigError(f"unknown environment variable {variable}{hint}; every "
                              f"{ENV_PREFIX}<SECTION>_<KEY> variable must name a config key",
                              key=variable)


def worker_count(server: ServerConfig) -> int:
    """How many processes ``[server] workers`` asks for (``"auto"``: the usable CPU cores)."""
    if server.workers == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
    return server.workers


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable Redis URL, or None. Checked at load, so a typo is a
    config error naming the key rather than a connection failure at run time."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in _REDIS_SCHEMES:
        return "must start with redis://, rediss:// or unix://"
    if parts.scheme == "unix":
        return None if parts.path else "needs the socket's path: unix:///run/redis.sock"
    if not parts.hostname:
        return "needs a host: redis://host:6379/0"
    if port == 0:
        return "has port 0"
    database = parts.path.strip("/")
    if database and not database.isdigit():
        return f"names database {database!r}; Redis databases are numbers (redis://host:6379/0)"
    return None


def _check_sections(config: Config, path: str | None, text: str,
                    environ: Mapping[str, str]) -> None:
    """Rules that involve more than one key."""
    server, bus = config.server, config.bus

    def error(message: str, section: str, key: str) -> ConfigError:
        env_name = f"{ENV_PREFIX}{section}_{key}".upper()
        if env_name in environ:
            return ConfigError(f"{env_name} (environment): {message}", key=f"{section}.{key}")
        return ConfigError(message, path=path, key=f"{section}.{key}",
                           line=_line_of(text, section, key))

    if bus.redis_url:
        problem = redis_url_problem(bus.redis_url)
        if problem:
            raise error(f"[bus] redis_url {problem}", "bus", "redis_url")
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,64}", bus.namespace):
        raise error("[bus] namespace must be 1 to 64 letters, digits or _ . : -", "bus",
                    "namespace")
    if bus.instance_timeout < 2 * bus.heartbeat_interval:
        given = (f"{ENV_PREFIX}BUS_INSTANCE_TIMEOUT" in environ
                 or _line_of(text, "bus", "instance_timeout") is not None)
        raise error(f"[bus] instance_timeout ({bus.instance_timeout:g}) must be at least twice "
                    f"heartbeat_interval ({bus.heartbeat_interval:g}): an instance would count "
                    "as gone between two heartbeats", "bus",
                    "instance_timeout" if given else "heartbeat_interval")
    for entry in server.trusted_proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise error(f"[server] trusted_proxies: {entry!r} is not an IP address or network "
                        "(\"10.0.0.1\", \"10.0.0.0/8\", \"::1\")", "server",
                        "trusted_proxies") from None
    if config.auth.scrypt_n & (config.auth.scrypt_n - 1):
        raise error(f"[auth] scrypt_n must be a power of two (131072 is 2^17), not "
                    f"{config.auth.scrypt_n}", "auth", "scrypt_n")
    for entry in server.allowed_origins:
        try:
            parse_origin(entry)
        except ValueError as exc:
            raise error(f"[server] allowed_origins: {entry!r} {exc}", "server",
                        "allowed_origins") from None
    if server.workers != 1:
        wanted = f"[server] workers = {toml_scalar(server.workers)}"
        if not bus.redis_url:
            raise error(f"{wanted} needs [bus] redis_url: worker processes share "
                        "conversations, presence and revocations over Redis", "server", "workers")
        if config.storage.backend != "mysql":
            raise error(f"{wanted} needs [storage] backend = \"mysql\": SQLite lets one "
                        "process write at a time, so workers would queue on its lock",
                        "server", "workers")
    if config.identity.required and not config.identity.secret:
        raise error("[identity] required = true needs [identity] secret: without it no "
                    "visitor can be identified, so every visitor would be refused",
                    "identity", "required")
    if config.identity.secret and len(config.identity.secret) < 16:
        raise error("[identity] secret must be at least 16 characters (32 random bytes, "
                    "e.g. from 'openssl rand -hex 32', is better)", "identity", "secret")
    for section, key, table in (("auto_replies", "welcome", config.auto_replies.welcome),
                                ("auto_replies", "away", config.auto_replies.away),
                                ("auto_replies", "closed", config.auto_replies.closed),
                                ("web", "expected_reply", config.web.expected_reply)):
        for language in table:
            if language not in LANGUAGES:
                raise error(f"[{section}] {key}: unknown language {language!r} (known: "
                            f"{', '.join(LANGUAGES)})", section, key)
    # [auto_replies]: only closed has a field ({back}, core/auto_replies.py), and a text is
    # no longer than a message, so no visitor reads a literal "{back}" or an endless text.
    for key, table in (("welcome", config.auto_replies.welcome),
                       ("away", config.auto_replies.away),
                       ("closed", config.auto_replies.closed)):
        for language, reply in table.items():
            for name in re.findall(r"\{([^{}]*)\}", reply):
                if name == "back" and key != "closed":
                    raise error(f"[auto_replies] {key}.{language}: {{back}} is filled in only "
                                "in closed (when the team is back)", "auto_replies", key)
                if name != "back":
                    raise error(f"[auto_replies] {key}.{language}: unknown field {{{name}}} "
                                "(closed may hold {back}, the other messages no field)",
                                "auto_replies", key)
            if len(reply) > server.max_message_chars:
                raise error(f"[auto_replies] {key}.{language} is {len(reply)} characters long: "
                            f"at most {server.max_message_chars} ([server] max_message_chars)",
                            "auto_replies", key)
    # [hours]: the schedule is parsed as the server will (core/hours.py), enabled or not,
    # so that a mistake shows now rather than the day hours are turned on.
    hours = config.hours
    try:
        parse_schedule(hours.timezone, hours.open, hours.holidays)
    except HoursError as exc:
        raise error(f"[hours] {exc.key}: {exc}", "hours", exc.key) from None
    if hours.enabled and not hours.open:
        raise error("[hours] open has no entries: with enabled = true the team would never "
                    "open (add \"mon-fri 09:00-17:00\" or set enabled = false)", "hours", "open")
    # [web]: branding (languages, the pre-chat form: their own blocks)
    web = config.web
    if not re.fullmatch(r"#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})", web.accent_color):
        raise error(f"[web] accent_color must be a colour as #rgb or #rrggbb (\"#2563eb\"), "
                    f"not {web.accent_color!r}", "web", "accent_color")
    repeated = sorted({f for f in web.prechat_fields if web.prechat_fields.count(f) > 1})
    if repeated:  # the widget would show the field twice and send one of them
        raise error(f"[web] prechat_fields lists {repeated[0]!r} more than once", "web",
                    "prechat_fields")
    if web.logo_url and logo_problem(web.logo_url):
        raise error(f"[web] logo_url {logo_problem(web.logo_url)}, not {web.logo_url!r}",
                    "web", "logo_url")
    ai = config.ai
    if ai.enabled:
        if not re.match(r"^https?://[^/\s]+", ai.base_url):
            raise ConfigError(f"[ai] base_url must be an http:// or https:// URL, not {ai.base_url!r}",
                              path=path, key="ai.base_url", line=_line_of(text, "ai", "base_url"))
        problem = ai_base_url_problem(ai.base_url)
        if problem:
            raise ConfigError(f"[ai] base_url {problem}, not {ai.base_url!r}", path=path,
                              key="ai.base_url", line=_line_of(text, "ai", "base_url"))
        if "?" in ai.base_url or "#" in ai.base_url:
            # Neither client keeps one: the lean client dropped it, httpx put the path after it.
            raise ConfigError(f"[ai] base_url takes no ?query or #fragment, not {ai.base_url!r}",
                              path=path, key="ai.base_url", line=_line_of(text, "ai", "base_url"))
        if ai.api_key_env and not ai.api_key and ai.api_key_env not in environ:
            raise ConfigError(f"[ai] api_key_env names {ai.api_key_env}, which is not set",
                              path=path, key="ai.api_key_env",
                              line=_line_of(text, "ai", "api_key_env"))
        key = ai.resolved_api_key(environ)
        if key and not re.fullmatch(r"[\x21-\x7e]+", key):
            # It goes in the Authorization header of every request: a character no header
            # can carry would fail each reply at request time.
            name = "api_key" if ai.api_key or not ai.api_key_env else "api_key_env"
            where = (f"[ai] api_key_env ({ai.api_key_env})" if name == "api_key_env"
                     else "[ai] api_key")
            raise ConfigError(f"{where} must be printable ASCII with no spaces or line breaks "
                              "(an API key as the upstream issued it)", path=path,
                              key=f"ai.{name}", line=_line_of(text, "ai", name))


def ai_base_url_problem(url: str) -> str | None:
    """Why ``url`` (already http(s)://) cannot be the ``[ai] base_url``, or None: checked
    at load, so a typo is a config error rather than a failed start or failed replies."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if not parts.hostname:
        return "needs a host: http://127.0.0.1:11434/v1"
    if port == 0:
        return "has port 0: give the upstream's port (or none for 80/443)"
    return None


def logo_problem(url: str) -> str | None:
    """Why ``url`` cannot be the ``[web] logo_url`` (None when it can): an https:// URL with
    a host, or a path on this server (``/static/...``), no spaces or quotes (its origin goes
    into the pages' Content-Security-Policy)."""
    if re.fullmatch(r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][^\s\"'<>\\]*)?", url):
        return None
    if re.fullmatch(r"/(?![/\\])[^\s\"'<>\\]*", url):
        return None
    return "must be an https:// URL or a path on this server starting with /"


def toml_scalar(value: object) -> str:
    """A scalar as it is written in TOML, for messages (``2``, ``"auto"``)."""
    return f'"{value}"' if isinstance(value, str) else str(value)


def load_config(path: str | os.PathLike[str] | None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML file; ``None`` gives the embedded defaults (plus environment)."""
    if path is None:
        return build_config({}, environ=environ)
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError("file not found (create one with 'customer-service config init')",
                          path=name) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=name) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text", path=name) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"invalid TOML: {exc}", path=name,
                          line=int(found.group(1)) if found else None) from exc
    return build_config(data, path=name, text=text, environ=environ)
