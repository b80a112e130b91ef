"""``customer-service contacts ...``: the known customers campaigns reach.

``import`` reads the file twice: once to check every line (nothing is written unless
every line is good, or ``--skip-errors`` says to import the good ones), then to upsert
the good lines in batches. Each pass reads one line at a time (core/contact_import.py),
so a file of a million contacts takes the memory of one batch.
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from customer_service.cli.common import (
    console,
    current_config,
    esc,
    json_option,
    print_table,
    short_time,
    with_store,
)
from customer_service.errors import BadRequest, NotFound

if TYPE_CHECKING:
    from rich.console import Console

    from customer_service.core.contact_import import FileFormat
    from customer_service.core.models import Contact, ContactInput
    from customer_service.storage.base import Store

MAX_ID = 2**63 - 1
"""The largest id a database holds (a signed 64-bit integer): SQLite refuses to even
compare with a larger number."""

SHOWN_REFUSALS = 50
"""Refused lines printed one by one; the rest are counted."""


def _echo_json(data: Any) -> None:
    from customer_service.core.contact_json import encode_json

    click.echo(encode_json(data, indent=2).decode())


def _unknown(external_id: str) -> NotFound:
    from customer_service.core.contact_import import quoted

    return NotFound(f"no contact with external_id {quoted(external_id)} "
                    "(see 'customer-service contacts list')")


async def _contact(store: Store, external_id: str) -> Contact:
    contact = await store.get_contact_by_external_id(external_id)
    if contact is None:
        raise _unknown(external_id)
    return contact


def _label(contact: Contact) -> str:
    """``u42 (Ann Lee)`` for messages."""
    return f"{contact.external_id} ({contact.name})" if contact.name else contact.external_id


@click.group()
def contacts() -> None:
    """Known customers: import, list, show, tag, untag, unsubscribe, delete."""


# --- import ------------------------------------------------------------------------

@dataclass
class _Tally:
    accepted: int = 0
    refused: int = 0
    created: int = 0
    updated: int = 0


@contextmanager
def _reading(path: str, description: str, out: Console
             ) -> Iterator[tuple[BinaryIO, Callable[[int], None]]]:
    """The file opened for reading, under a progress bar over its bytes (on a terminal
    only: a pipe or a log gets the summary lines alone), and a function to show how many
    contacts were read."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  DownloadColumn(), TextColumn("{task.fields[records]} contacts"),
                  TimeRemainingColumn(), console=out, disable=not out.is_terminal,
                  transient=True) as progress, open(path, "rb") as raw:
        task = progress.add_task(description, total=os.fstat(raw.fileno()).st_size,
                                 records=0)

        def records(count: int) -> None:
            progress.update(task, records=count)

        with progress.wrap_file(raw, task_id=task) as stream:
            yield stream, records


def _check(path: str, fmt: FileFormat, out: Console) -> _Tally:
    """The first pass: every line checked, the refused ones printed (the first
    ``SHOWN_REFUSALS`` of them)."""
    from customer_service.core.contact_import import Refused, parse_contacts, read_lines

    tally = _Tally()
    with _reading(path, "Checking", out) as (stream, show):
        for record in parse_contacts(read_lines(stream), fmt):
            if isinstance(record, Refused):
                tally.refused += 1
                if tally.refused <= SHOWN_REFUSALS:
                    out.print(str(record), markup=False, highlight=False, soft_wrap=True)
            else:
                tally.accepted += 1
                if tally.accepted % 1000 == 0:
                    show(tally.accepted)
    if tally.refused > SHOWN_REFUSALS:
        out.print(f"… and {tally.refused - SHOWN_REFUSALS} more refused line(s).",
                  highlight=False)
    return tally


async def _upsert(store: Store, path: str, fmt: FileFormat, batch_size: int,
                  out: Console) -> _Tally:
    """The second pass: the good lines upserted ``batch_size`` at a time, each batch in
    one transaction."""
    from customer_service.core.contact_import import Accepted, parse_contacts, read_lines

    tally = _Tally()
    batch: list[ContactInput] = []

    async def flush() -> None:
        counts = await store.upsert_contacts(batch)
        tally.created += counts.created
        tally.updated += counts.updated
        batch.clear()

    with _reading(path, "Importing", out) as (stream, show):
        for record in parse_contacts(read_lines(stream), fmt):
            if isinstance(record, Accepted):
                tally.accepted += 1
                batch.append(record.contact)
                if len(batch) >= batch_size:
                    await flush()
                    show(tally.accepted)
            else:
                tally.refused += 1
        if batch:
            await flush()
    return tally


@contacts.command("import")
@click.argument("path", metavar="FILE",
                type=click.Path(exists=True, dir_okay=False, readable=True, path_type=str))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]),
              help="csv or jsonl (default: from the file's extension, .csv, .jsonl or "
                   ".ndjson).")
@click.option("--skip-errors", is_flag=True,
              help="Import the good lines even when some are refused (default: a file "
                   "with a refused line imports nothing).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="Contacts written per transaction.")
def import_contacts(path: str, fmt: str | None, skip_errors: bool, batch_size: int) -> None:
    """Create or update contacts from a CSV or JSON Lines file, by external_id.

    Every line is checked first; each refused line is printed with its number and the
    field at fault. Unless --skip-errors is given, a file with a refused line imports
    nothing (and exits with status 1).

    \b
        customer-service contacts import customers.csv
        customer-service contacts import export.jsonl --skip-errors --batch-size 5000
    """
    from customer_service.core.contact_import import format_for

    file_format = format_for(path, fmt)
    config = current_config()
    out = console()
    try:
        checked = _check(path, file_format, out)
    except BadRequest as exc:
        raise BadRequest(f"{path}: {exc.message}") from None
    if checked.refused and not skip_errors:
        raise BadRequest(
            f"{checked.refused} line(s) of {path} refused, so nothing was imported: fix them, "
            f"or add --skip-errors to import the {checked.accepted} good line(s)")

    async def work(store: Store) -> _Tally:
        return await _upsert(store, path, file_format, batch_size, out)

    done = with_store(config, work)
    total = done.created + done.updated
    out.print(f"Imported {total} contact{'' if total == 1 else 's'} ({done.created} created, "
              f"{done.updated} updated), {done.refused} refused.", highlight=False)


# --- reading ---------------------------------------------------------------------

@contacts.command("list")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only contacts with this tag (repeat: with every one of them).")
@click.option("--unsubscribed/--subscribed", default=None,
              help="Only unsubscribed (or only subscribed) contacts.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="At most this many, by id.")
@click.option("--after", "after_id", type=click.IntRange(0, MAX_ID), default=0, metavar="ID",
              help="Only contacts with an id above this one (the next page).")
@json_option
def list_contacts(tags: tuple[str, ...], unsubscribed: bool | None, limit: int, after_id: int,
                  as_json: bool) -> None:
    """List contacts by id, a page at a time.

    \b
        customer-service contacts list --tag vip --tag newsletter
        customer-service contacts list --after 50 --limit 50
        customer-service contacts list --json | jq -r '.[].external_id'
    """
    from customer_service.core.contact_import import check_tag
    from customer_service.core.contact_json import contact_dict

    wanted = tuple(check_tag(tag) for tag in tags)

    async def work(store: Store) -> list[Contact]:
        return await store.list_contacts(after_id=after_id, limit=limit, tags=wanted,
                                         unsubscribed=unsubscribed)

    found = with_store(current_config(), work)
    if as_json:
        _echo_json([contact_dict(c) for c in found])
        return
    from rich.table import Table

    table = Table(title=f"{len(found)} contact(s)", title_justify="left")
    for column in ("id", "external_id", "name", "email", "tags", "unsub", "updated (UTC)"):
        table.add_column(column, no_wrap=column in ("id", "unsub", "updated (UTC)"))
    for c in found:
        table.add_row(str(c.id), esc(c.external_id), esc(c.name), esc(c.email),
                      esc(", ".join(c.tags)), "yes" if c.unsubscribed else "",
                      short_time(c.updated_at))
    out = console()
    print_table(table, out)
    if len(found) == limit:
        out.print(f"More with --after {found[-1].id}.", highlight=False)


@contacts.command()
@click.argument("external_id")
@json_option
def show(external_id: str, as_json: bool) -> None:
    """Show one contact, with its tags and attributes.

    \b
        customer-service contacts show u42
        customer-service contacts show u42 --json
    """

    async def work(store: Store) -> Contact:
        return await _contact(store, external_id)

    contact = with_store(current_config(), work)
    from customer_service.core.contact_json import contact_dict, encode_json

    if as_json:
        _echo_json(contact_dict(contact))
        return
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    attributes = encode_json(contact.attributes, indent=2).decode() if contact.attributes else ""
    rows = [("id", str(contact.id)), ("external_id", esc(contact.external_id)),
            ("name", esc(contact.name)), ("email", esc(contact.email)),
            ("phone", esc(contact.phone)), ("tags", esc(", ".join(contact.tags))),
            ("attributes", esc(attributes)),
            ("unsubscribed", "yes" if contact.unsubscribed else "no"),
            ("last campaign", short_time(contact.last_campaign_at) or "never"),
            ("created (UTC)", short_time(contact.created_at)),
            ("updated (UTC)", short_time(contact.updated_at))]
    for name, value in rows:
        table.add_row(name, value)
    print_table(table)


# --- changing ----------------------------------------------------------------------

def _retag(external_ids: tuple[str, ...], tags: tuple[str, ...], add: bool) -> None:
    from customer_service.core.contact_import import check_tag

    wanted = tuple(sorted({check_tag(tag) for tag in tags}))
    ids = tuple(dict.fromkeys(external_ids))  # unique, in the order given

    async def work(store: Store) -> int:
        for external_id in ids:  # every id known, or nothing changes
            await _contact(store, external_id)
        return await store.tag_contacts(ids, wanted, add)

    count = with_store(current_config(), work)
    names = ", ".join(wanted)
    console().print(esc(f"Tagged {count} contact(s) with {names}." if add
                        else f"Removed {names} from {count} contact(s)."), highlight=False)


tag_option = click.option("--tag", "tags", multiple=True, required=True, metavar="TAG",
                          help="The tag (repeat for several).")


@contacts.command()
@click.argument("external_ids", metavar="EXTERNAL_ID...", nargs=-1, required=True)
@tag_option
def tag(external_ids: tuple[str, ...], tags: tuple[str, ...]) -> None:
    """Add tags to contacts. An unknown id changes nothing.

    \b
        customer-service contacts tag u1 u2 u3 --tag vip --tag spring-sale
    """
    _retag(external_ids, tags, add=True)


@contacts.command()
@click.argument("external_ids", metavar="EXTERNAL_ID...", nargs=-1, required=True)
@tag_option
def untag(external_ids: tuple[str, ...], tags: tuple[str, ...]) -> None:
    """Remove tags from contacts. An unknown id changes nothing.

    \b
        customer-service contacts untag u1 u2 --tag spring-sale
    """
    _retag(external_ids, tags, add=False)


@contacts.command()
@click.argument("external_id")
@click.option("--undo", is_flag=True, help="Subscribe the contact again.")
def unsubscribe(external_id: str, undo: bool) -> None:
    """Stop campaigns from reaching a contact (or, with --undo, let them again).

    \b
        customer-service contacts unsubscribe u42
        customer-service contacts unsubscribe u42 --undo
    """

    async def work(store: Store) -> Contact:
        return await store.set_contact_unsubscribed(external_id, not undo)

    try:
        contact = with_store(current_config(), work)
    except NotFound:
        raise _unknown(external_id) from None
    console().print(esc(f"Contact {_label(contact)} is subscribed again." if undo else
                        f"Unsubscribed contact {_label(contact)}: campaigns skip it."),
                    highlight=False)


@contacts.command()
@click.argument("external_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(external_id: str, yes: bool) -> None:
    """Delete a contact, its tags and its campaign records.

    Its conversations stay (their visitors are no longer linked to a contact).

    \b
        customer-service contacts delete u42 --yes
    """
    config = current_config()

    async def find(store: Store) -> Contact:
        return await _contact(store, external_id)

    contact = with_store(config, find)
    if not yes:
        click.confirm(f"Delete contact {_label(contact)}?", abort=True)

    async def work(store: Store) -> None:
        await store.delete_contact(external_id)

    try:
        with_store(config, work)
    except NotFound:
        raise _unknown(external_id) from None
    console().print(esc(f"Deleted contact {_label(contact)}."), highlight=False)

