"""What every command shares: the CLI state, the store runner, output helpers.

Imported when the CLI starts, so it imports nothing heavy: trio, rich and the
storage backends are imported inside the functions that use them, which keeps
``customer-service --help`` fast (a test checks it).
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from customer_service.config import Config, load_config

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from customer_service.core.models import (
        Agent,
        Conversation,
        StoredMessage,
        Visitor,
    )
    from customer_service.storage.base import Store

T = TypeVar("T")

DEFAULT_CONFIG_FILE = "customer-service.toml"
CONFIG_ENV = "CUSTOMER_SERVICE_CONFIG"


@dataclass
class State:
    """``ctx.obj``: which config file the group option chose, loaded on first use.

    Loading is lazy so that ``config init`` and ``config check`` work even when
    the file the group would pick is missing or broken.
    """

    config_path: str | None
    _config: Config | None = field(default=None, repr=False)

    @classmethod
    def from_option(cls, option: str | None) -> State:
        """``--config`` (or its env var) if given, else ``./customer-service.toml`` if it exists."""
        if option is None and Path(DEFAULT_CONFIG_FILE).is_file():
            option = DEFAULT_CONFIG_FILE
        return cls(config_path=option)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def get_state() -> State:
    ctx = click.get_current_context()
    state = ctx.find_object(State)
    if state is None:  # a command invoked without the group (tests of a lone command)
        state = State.from_option(None)
        ctx.obj = state
    return state


def current_config() -> Config:
    """The config chosen by ``--config``; a broken file raises ``ConfigError``."""
    return get_state().config


def with_store(config: Config, work: Callable[[Store], Awaitable[T]], *,
               migrate: bool = True, create: bool = True) -> T:
    """Open the configured store, migrate it (unless told not to), run ``work`` under trio.
    ``create=False``: a missing database raises ``DatabaseMissing`` instead of being made."""
    import trio

    from customer_service.storage import open_store

    async def run() -> T:
        async with open_store(config, create=create) as store:
            if migrate:
                await store.migrate()
            return await work(store)

    return trio.run(run)


def describe_database(config: Config) -> str:
    """The database in use, for people: ``SQLite /abs/path.db`` or ``MySQL user@host:port/db``."""
    storage = config.storage
    if storage.backend == "sqlite":
        return f"SQLite {config.resolve_path(storage.sqlite_path).resolve()}"
    return (f"MySQL {storage.mysql_user}@{storage.mysql_host}:{storage.mysql_port}"
            f"/{storage.mysql_database}")


def console(*, stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr), created when needed.

    Created per call rather than once, so click's test runner (which swaps
    ``sys.stdout``) captures it. Not a terminal: no colours, 100 columns, so
    output piped into a file or a test stays readable.
    """
    from rich.console import Console

    width = None
    if "COLUMNS" not in os.environ:
        width = None if sys.stdout.isatty() else 100
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def print_table(table: Table, out: Console | None = None) -> None:
    """Print a rich table; when the output is not a terminal (a file, a pipe, a test), with
    no space at the end of a line (rich pads the title and the cells to the table's width)."""
    out = console() if out is None else out
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:
        out.print(table)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    out.file.flush()


def esc(text: str) -> str:
    """``text`` with rich markup escaped: names and messages are data, not markup."""
    from rich.markup import escape

    return escape(text)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON: the ``--json`` output of listings, for scripts."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON instead of a table (for scripts).")


# --- records as JSON-able dicts ----------------------------------------------

def ts(moment: Any) -> str | None:
    from customer_service.core.models import format_ts

    return None if moment is None else format_ts(moment)


def agent_dict(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "username": agent.username, "name": agent.name,
            "disabled": agent.disabled, "created_at": ts(agent.created_at)}


def visitor_dict(visitor: Visitor) -> dict[str, Any]:
    return {"id": visitor.id, "name": visitor.name, "email": visitor.email,
            "page": visitor.page, "created_at": ts(visitor.created_at)}


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    return {"id": conversation.id, "visitor_id": conversation.visitor_id,
            "status": str(conversation.status), "assigned_to": conversation.assigned_to,
            "needs_agent": conversation.needs_agent, "last_seq": conversation.last_seq,
            "unread": conversation.unread,
            "agent_read_seq": conversation.agent_read_seq,
            "visitor_read_seq": conversation.visitor_read_seq,
            "created_at": ts(conversation.created_at), "updated_at": ts(conversation.updated_at)}


def message_dict(message: StoredMessage) -> dict[str, Any]:
    return {"conversation_id": message.conversation_id, "seq": message.seq,
            "sender_role": str(message.sender_role), "sender_id": message.sender_id,
            "sender_name": message.sender_name, "content": message.content,
            "created_at": ts(message.created_at), "client_id": message.client_id,
            "stream_id": message.stream_id}


def short_time(moment: Any) -> str:
    """``2024-05-01 14:03`` (UTC) for tables."""
    from datetime import UTC

    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
