"""``customer-service conversations search TEXT...``: full-text search over messages and
visitors (``core/search.py``, ``Store.search``), straight on the database.

Registered on the ``conversations`` group by ``cli/app.py``. Private notes are never
searched.
"""

# Heavy modules (trio, rich, storage) are imported inside the functions that use them,
# so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

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
from customer_service.core.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    VISITOR,
    SearchCursor,
    SearchHit,
    SearchQuery,
    page_dict,
    parse_cursor,
    parse_query,
)
from customer_service.errors import BadRequest

if TYPE_CHECKING:
    from rich.text import Text

    from customer_service.storage.base import Store


def _query(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> SearchQuery:
    try:
        return parse_query(" ".join(value))
    except BadRequest as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


def _cursor(ctx: click.Context, param: click.Parameter, value: str | None
            ) -> SearchCursor | None:
    if value is None:
        return None
    try:
        return parse_cursor(value)
    except BadRequest as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


def _who(hit: SearchHit) -> str:
    """``Vera (visitor)`` for a message, ``visitor Vera`` for a visitor found by name or
    email."""
    if hit.kind == VISITOR:
        return f"visitor {hit.visitor_name}".rstrip()
    role = str(hit.role)
    name = hit.sender_name.strip()
    return role if not name or name == role else f"{name} ({role})"


def _snippet(hit: SearchHit) -> Text:
    """The snippet with its hits in bold (plain text: nothing in it is markup)."""
    from rich.text import Text

    text = Text(hit.snippet)
    for start, end in hit.highlights:
        text.stylize("bold", start, end)
    return text


@click.command()
@click.argument("text", metavar="TEXT...", nargs=-1, callback=_query)
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=DEFAULT_LIMIT,
              show_default=True, help="At most this many hits, newest first.")
@click.option("--before", metavar="CURSOR", callback=_cursor,
              help="The next page: the cursor the previous one ended with.")
@json_option
def search(text: SearchQuery, limit: int, before: SearchCursor | None, as_json: bool) -> None:
    """Search messages (never private notes) and visitors' names and emails.

    A hit has every word of TEXT, in any case: anywhere in the text with SQLite; at the
    beginning of a word with MySQL/MariaDB (Chinese, Japanese, Korean: anywhere).

    \b
        customer-service conversations search 退款
        customer-service conversations search refund kettle --limit 50
        customer-service conversations search vera@example.com --json
    """

    async def work(store: Store) -> list[SearchHit]:
        return await store.search(text, limit, before)

    hits = with_store(current_config(), work)
    page = page_dict(text, hits, limit)
    if as_json:
        echo_json(page)
        return
    from rich.table import Table

    table = Table(title=f"{len(hits)} hit(s) for {esc(text.text)}", title_justify="left")
    for column in ("conversation", "when (UTC)", "who", "snippet"):
        table.add_column(column, no_wrap=column in ("conversation", "when (UTC)"))
    for hit in hits:
        where = str(hit.conversation_id) if hit.kind == VISITOR else (
            f"{hit.conversation_id} #{hit.seq}")
        table.add_row(where, short_time(hit.created_at), esc(_who(hit)), _snippet(hit))
    print_table(table)
    if page["next"] is not None:
        console().print(f"More: --before {page['next']}", soft_wrap=True)
