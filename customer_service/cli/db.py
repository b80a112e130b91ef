"""``customer-service db migrate`` and ``customer-service stats``."""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from customer_service.cli.common import (
    console,
    current_config,
    describe_database,
    echo_json,
    esc,
    json_option,
    print_table,
    with_store,
)

if TYPE_CHECKING:
    from customer_service.core.models import Stats
    from customer_service.storage.base import Store


@click.group()
def db() -> None:
    """Database schema: migrate, status."""


@db.command()
@json_option
def migrate(as_json: bool) -> None:
    """Apply pending schema migrations and say which ran.

    Other commands migrate on their own too; this one is for deploy scripts that
    want the schema upgraded before the new version starts.
    """
    config = current_config()
    where = describe_database(config)
    out = console(stderr=as_json)

    async def work(store: Store) -> tuple[int, list[int], int]:
        before = await store.schema_version()
        out.print(f"Database: {esc(where)} (schema version {before})")
        with out.status("Applying migrations…"):
            applied = await store.migrate()
        return before, applied, await store.schema_version()

    before, applied, after = with_store(config, work, migrate=False)
    if as_json:
        echo_json({"database": where, "before": before, "applied": applied, "version": after})
        return
    if applied:
        for version in applied:
            out.print(f"  applied migration {version}")
        out.print(f"[green]Schema at version {after}[/green] ({len(applied)} applied).")
    else:
        out.print(f"[green]Up to date[/green] at version {after}; nothing to apply.")


@db.command()
@json_option
def status(as_json: bool) -> None:
    """Show the database in use and its schema version, changing nothing.

    A database that does not exist is not created, and no migration runs: the
    output says what 'customer-service db migrate' would do.
    """
    from customer_service.cli.doctor_checks import newest_migration
    from customer_service.errors import DatabaseMissing

    config = current_config()
    where = describe_database(config)
    newest = newest_migration(config.storage.backend)

    async def work(store: Store) -> int:
        await store.ping()
        return await store.schema_version()

    try:
        version: int | None = with_store(config, work, migrate=False, create=False)
    except DatabaseMissing as exc:
        version, missing = None, exc.message
    if as_json:
        echo_json({"database": where, "exists": version is not None, "version": version or 0,
                   "latest": newest})
        return
    migrate = "'customer-service db migrate'"
    if version is None:
        state = f"none; {missing} ({migrate} creates it)"
    elif version == 0:
        state = f"0 (empty, not migrated; run {migrate})"
    elif version < newest:
        state = f"{version} (not migrated to {newest}, this release's; run {migrate})"
    elif version > newest:
        state = f"{version} (newer than {newest}, this release's: a newer release migrated it)"
    else:
        state = f"{version} (up to date)"
    out = console()
    out.print(f"Database: {esc(where)}", soft_wrap=True)
    out.print(f"Schema version: {esc(state)}", soft_wrap=True)


@click.command()
@json_option
def stats(as_json: bool) -> None:
    """Count agents, visitors, conversations and messages."""

    async def work(store: Store) -> Stats:
        return await store.stats()

    found = with_store(current_config(), work)
    data = {
        "agents": found.agents,
        "agents_disabled": found.agents_disabled,
        "visitors": found.visitors,
        "conversations_by_status": dict(found.conversations_by_status),
        "conversations": sum(found.conversations_by_status.values()),
        "messages": found.messages,
    }
    if as_json:
        echo_json(data)
        return
    from rich.table import Table

    table = Table("what", "count")
    table.add_row("agents", f"{found.agents} ({found.agents_disabled} disabled)")
    table.add_row("visitors", str(found.visitors))
    table.add_row("conversations", str(data["conversations"]))
    for status, count in sorted(found.conversations_by_status.items()):
        table.add_row(f"  {status}", str(count))
    table.add_row("messages", str(found.messages))
    out = console()
    out.print(f"Database: {esc(describe_database(current_config()))}")
    print_table(table, out)
