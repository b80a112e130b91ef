"""Text generated from the config dataclasses: the commented TOML and the reference.

``config init`` writes :func:`render_template`, ``prod.toml`` is
``render_template(production=True)``, and ``docs/configuration.md`` is
:func:`render_reference_markdown` (a test fails when the committed file differs).
All three walk :func:`customer_service.config.sections`, so a new key shows up
everywhere with its type, default and doc, or nowhere.

Only the standard library and tomlkit are imported: this runs under ``--help``-fast
CLI code paths.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterator
from typing import Any

import tomlkit

from customer_service.config import ENV_PREFIX, describe_type, section_fields, sections

REGENERATE_DOCS = "customer-service config docs > docs/configuration.md"

SECTION_DOCS: dict[str, str] = {
    "server": "The HTTP and WebSocket listener, and the limits every connection lives under.",
    "storage": "Where conversations, agents and messages are kept.",
    "bus": "How several instances (or worker processes) share live traffic: over Redis pub/sub, "
           "with the database as the source of truth. Leave redis_url empty for one process.",
    "auth": "Agent authentication: tokens, login throttling, password hashing.",
    "metrics": "The Prometheus endpoint /metrics. Warning: with token empty (the default) "
               "anyone who reaches the port reads it (counts of connections, messages, "
               "errors). Set a token, and give Prometheus the same one: in the scrape config, "
               "authorization: {credentials: \"<token>\"} (or credentials_file), whose type "
               "defaults to Bearer. A request without it gets 401.",
    "log": "Logging to stderr.",
    "ai": "The AI that answers visitors while no agent has taken the conversation.",
    "identity": "Identified visitors: the site tells the widget who is logged in "
                "(data-user-id, signed with data-user-hash), and the visitor is linked to "
                "their contact on every device. See docs/identity.md.",
    "campaigns": "Messages sent to many contacts at once, written by a template or by the "
                 "AI for each contact. See docs/campaigns.md.",
    "routing": "Who gets a new conversation: the queue (manual) or auto-assignment to an "
               "online agent with room. See docs/agents.md.",
    "hours": "Business hours and holidays, in one time zone. See docs/agents.md.",
    "auto_replies": "Messages the server writes into a conversation itself (role system), once "
                    "per conversation, in the visitor's language.",
    "web": "What visitors and agents see: name, logo, colour, languages, the pre-chat form.",
    "webhooks": "Signed HTTP POSTs to your systems when messages and conversations change "
                "(customer-service webhooks add). See docs/webhooks.md.",
}

# Extra comment lines for prod.toml, keyed "section.key". The values stay the
# defaults (so prod.toml runs with nothing else installed); the notes say what to
# change when the server faces real traffic.
PRODUCTION_NOTES: dict[str, str] = {
    "server.host": "Production: keep 127.0.0.1 behind a reverse proxy (nginx, Caddy) that "
                   "terminates TLS and forwards WebSocket upgrades; 0.0.0.0 only when clients "
                   "connect directly.",
    "server.port": "Production: the port your reverse proxy forwards to.",
    "server.public_url": "Production: the https:// address visitors use, e.g. "
                         "\"https://chat.example.com\"; the widget and banner show it.",
    "server.shutdown_timeout": "Production: keep it below your process manager's stop "
                               "timeout (systemd TimeoutStopSec, Kubernetes "
                               "terminationGracePeriodSeconds).",
    "server.workers": "Production: \"auto\" uses every core of the machine; it needs the bus "
                      "and MySQL/MariaDB.",
    "server.trusted_proxies": "Production: your reverse proxy's address, e.g. [\"127.0.0.1\"], "
                              "so login throttling and logs see the visitor's address.",
    "server.allowed_origins": "Production: the origins of the pages that open sockets: the "
                              "sites embedding the widget and this server's public_url, e.g. "
                              "[\"https://shop.example.com\", \"https://chat.example.com\"].",
    "storage.backend": "Production: \"mysql\" when several instances share one database, "
                       "or for backups with your usual MySQL tooling; \"sqlite\" is fine for "
                       "one instance.",
    "storage.sqlite_path": "Production: an absolute path on a persistent, backed-up disk.",
    "storage.mysql_password": "Production: leave it empty here and set "
                              "CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD in the service's "
                              "environment.",
    "storage.mysql_pool_size": "Production: about the number of CPU cores; MySQL work is done in "
                               "threads, one per pooled connection.",
    "bus.redis_url": "Production: set it (and [storage] backend = \"mysql\") to run several "
                     "instances behind a load balancer; a password goes in "
                     "CUSTOMER_SERVICE_BUS_REDIS_URL rather than here.",
    "auth.token_ttl_hours": "Production: shorter lifetimes limit what a leaked token is worth.",
    "metrics.token": "Production: set CUSTOMER_SERVICE_METRICS_TOKEN (and the same token in "
                     "Prometheus's scrape config, authorization: credentials:), or keep the "
                     "port away from the internet: /metrics is open while this is empty.",
    "log.format": "Production: \"json\" when a collector (journald, Loki, Elasticsearch) "
                  "reads the logs.",
    "identity.secret": "Production: set CUSTOMER_SERVICE_IDENTITY_SECRET (the same secret "
                       "your site signs user ids with) rather than writing it here.",
    "ai.enabled": "Production: off until the [ai] upstream is configured and tested.",
}

_HEADER = """\
customer-service configuration.

Every key is listed with its default value; change what you need, delete what you do not.
Any key can also come from the environment as CUSTOMER_SERVICE_<SECTION>_<KEY>, for example
CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD; the environment wins over this file, which is the
way to keep secrets out of it.

Check this file:  customer-service config check PATH
Run the server:   customer-service --config=PATH
Reference:        docs/configuration.md"""

_PRODUCTION_HEADER = """\
customer-service production configuration: ./customer-service --config=prod.toml

As shipped it runs with nothing else installed: an SQLite database file next to this file,
port 8080 on 127.0.0.1, AI off. The "Production:" notes say what to change for real traffic.

Every key is listed with its default value. Any key can also come from the environment as
CUSTOMER_SERVICE_<SECTION>_<KEY>, for example CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD; the
environment wins over this file, which is the way to keep secrets out of it.

Check it:   customer-service config check prod.toml
Reference:  docs/configuration.md
Generated by `customer-service config init --production`; edit freely."""

_WIDTH = 96


_PLAIN_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def type_name(hint: Any) -> str:
    """A field's type for people: string, integer, number, boolean, one of "a", "b"."""
    described = describe_type(hint)
    return _PLAIN_TYPES.get(described, described)


def env_var(section: str, key: str) -> str:
    """The environment variable that overrides ``[section] key``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def toml_value(value: Any) -> str:
    """``value`` written as TOML (``"text"``, ``8080``, ``3.0``, ``false``)."""
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update(value)
        return str(inline.as_string())
    return str(tomlkit.item(value).as_string())


def iter_keys() -> Iterator[tuple[str, str, dataclasses.Field[Any], Any]]:
    """Every config key as (section, key, field, type hint), in file order."""
    for section, cls in sections():
        for f, hint in section_fields(cls):
            yield section, f.name, f, hint


def default_of(f: dataclasses.Field[Any]) -> Any:
    """A field's default value (calling its factory when it has one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ValueError(f"config field {f.name} has no default")


def _comment_lines(text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(textwrap.wrap(paragraph, width=_WIDTH - 2) or [""])
    return lines


def render_template(*, production: bool = False) -> str:
    """The commented TOML file ``config init`` writes: every key, its doc, its default.

    With ``production=True`` it is ``prod.toml``: the same keys and values plus
    the notes of :data:`PRODUCTION_NOTES`.
    """
    doc = tomlkit.document()
    for line in (_PRODUCTION_HEADER if production else _HEADER).split("\n"):
        doc.add(tomlkit.comment(line) if line else tomlkit.comment(""))
    doc.add(tomlkit.nl())
    for section, cls in sections():
        table = tomlkit.table()
        for line in _comment_lines(SECTION_DOCS.get(section, "")):
            if line:
                table.add(tomlkit.comment(line))
        for f, hint in section_fields(cls):
            table.add(tomlkit.nl())
            for line in _comment_lines(f.metadata.get("doc", "")):
                table.add(tomlkit.comment(line))
            table.add(tomlkit.comment(f"Type: {type_name(hint)}. "
                                      f"Environment: {env_var(section, f.name)}"))
            note = PRODUCTION_NOTES.get(f"{section}.{f.name}") if production else None
            if note:
                for line in _comment_lines(note):
                    table.add(tomlkit.comment(line))
            value = default_of(f)
            if isinstance(value, dict):  # inline, so the keys after it stay in the section
                inline = tomlkit.inline_table()
                inline.update(value)
                table.add(f.name, inline)
            else:
                table.add(f.name, value)
        doc.add(section, table)
    return tomlkit.dumps(doc)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_reference_markdown() -> str:
    """``docs/configuration.md``: every section and key with type, default and doc."""
    out: list[str] = [
        "# Configuration reference",
        "",
        "<!-- Generated from customer_service/config.py; do not edit by hand. Regenerate with:",
        f"     {REGENERATE_DOCS} -->",
        "",
        "customer-service reads one TOML file. Which one:",
        "",
        "1. `--config=PATH`, given before the subcommand "
        "(`customer-service --config=prod.toml agents list`);",
        "2. else the `CUSTOMER_SERVICE_CONFIG` environment variable;",
        "3. else `./customer-service.toml` when it exists;",
        "4. else the embedded defaults below, which run with nothing else installed "
        "(SQLite file `customer-service.db` in the current directory, port 8080, AI off).",
        "",
        "An unknown section or key, a value of the wrong type or an invalid value is an error "
        "that names the file, the line and the key; a misspelt name gets the closest known one "
        "(`unknown key 'prot' in [server] (did you mean 'port'?)`). Relative paths in the file "
        "are relative to the file's folder.",
        "",
        "Every key can also be set from the environment as `CUSTOMER_SERVICE_<SECTION>_<KEY>` "
        "(upper case), written as a TOML value (`8080`, `true`, `\"text\"`; a text key takes "
        "the value as written, so a bare word or a password of digits stays text). The "
        "environment wins over the file: this is how secrets such as "
        "`CUSTOMER_SERVICE_STORAGE_MYSQL_PASSWORD` stay out of it. A `CUSTOMER_SERVICE_*` "
        "variable that names no key is an error with the closest known name (`did you mean "
        "CUSTOMER_SERVICE_BUS_REDIS_URL?`), and a value of the wrong type names the variable "
        "and the type it expects (`CUSTOMER_SERVICE_SERVER_PORT (environment): expected an "
        "integer, got 'abc'`).",
        "",
        "`customer-service config init [PATH]` writes a file with every key, its documentation "
        "and its default; `customer-service config check PATH` validates one. "
        "`prod.toml` at the repository root is the same template with production notes.",
        "",
    ]
    for section, cls in sections():
        out += [f"## `[{section}]`", ""]
        if SECTION_DOCS.get(section):
            out += [SECTION_DOCS[section], ""]
        out += [
            "| Key | Type | Default | Environment variable | Description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f, hint in section_fields(cls):
            out.append(
                f"| `{f.name}` | {_cell(type_name(hint))} | `{_cell(toml_value(default_of(f)))}` "
                f"| `{env_var(section, f.name)}` | {_cell(f.metadata.get('doc', ''))} |")
        out.append("")
    return "\n".join(out)
