"""``customer-service canned add|list|remove``: the team's canned replies.

The same checks as REST (``core.canned``): a bad shortcut, an empty or too long text, an
unknown ``{field}``, a taken or unknown shortcut each end in one ``Error: ...`` line.
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from customer_service.cli.common import (
    console,
    current_config,
    echo_json,
    esc,
    json_option,
    print_table,
    short_time,
    with_store,
)
from customer_service.errors import BadRequest, NotFound

if TYPE_CHECKING:
    from customer_service.core.canned import CannedReply
    from customer_service.storage.base import Store


@click.group()
def canned() -> None:
    """Canned replies: snippets agents insert by typing / and the shortcut in the dashboard."""


def read_stdin_text() -> str:
    """All of stdin as UTF-8 text; other bytes are one clear error, not a traceback."""
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the text read from stdin is not UTF-8 (byte {exc.start})") from None


@canned.command("add")
@click.argument("shortcut")
@click.argument("text")
def add(shortcut: str, text: str) -> None:
    """Add a canned reply; TEXT '-' reads it from stdin.

    TEXT may hold fields, filled in when an agent inserts the reply: {visitor.name},
    {visitor.email}, {agent.name}, {contact.name}, {contact.email}, {contact.phone},
    {contact.external_id}, {conversation.id}; {visitor.name|there} reads 'there' when
    the visitor gave no name; {{ and }} are literal braces.

    \b
        customer-service canned add refund "Hi {visitor.name|there}, refunds take 5 days."
        customer-service canned add terms - < terms.txt
    """
    from customer_service.core.canned import check_shortcut, check_text

    key = check_shortcut(shortcut)
    body = check_text(read_stdin_text() if text == "-" else text)

    async def work(store: Store) -> CannedReply:
        return await store.add_canned_reply(key, body)

    reply = with_store(current_config(), work)
    console().print(f"Added canned reply /{esc(reply.shortcut)} (id {reply.id}).",
                    highlight=False)


@canned.command("list")
@json_option
def list_canned(as_json: bool) -> None:
    """List the canned replies by shortcut.

    \b
        customer-service canned list
        customer-service canned list --json | jq -r '.[].shortcut'
    """
    from customer_service.core.canned import canned_dict

    async def work(store: Store) -> list[CannedReply]:
        return await store.list_canned_replies()

    found = with_store(current_config(), work)
    if as_json:
        echo_json([canned_dict(r) for r in found])
        return
    out = console()
    if not found:
        out.print("No canned replies yet: add one with 'customer-service canned add "
                  "SHORTCUT TEXT'.", highlight=False)
        return
    from rich.table import Table

    table = Table(title=f"{len(found)} canned repl{'y' if len(found) == 1 else 'ies'}",
                  title_justify="left")
    table.add_column("shortcut", no_wrap=True)
    table.add_column("text")
    table.add_column("added (UTC)", no_wrap=True)
    for reply in found:
        table.add_row("/" + esc(reply.shortcut), esc(reply.text), short_time(reply.created_at))
    print_table(table, out)


@canned.command("remove")
@click.argument("shortcut")
def remove(shortcut: str) -> None:
    """Remove a canned reply by its shortcut.

    \b
        customer-service canned remove refund
    """
    from customer_service.core.canned import check_shortcut

    key = check_shortcut(shortcut)

    async def work(store: Store) -> None:
        try:
            await store.delete_canned_reply(key)
        except NotFound as exc:
            raise NotFound(f"{exc.message} (see 'customer-service canned list')") from None

    with_store(current_config(), work)
    console().print(f"Removed canned reply /{esc(key)}.", highlight=False)
