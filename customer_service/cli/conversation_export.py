"""``customer-service conversations export --since … [--until …] --format jsonl|csv FILE``:
every message of the conversations created in the range, one per line (JSON Lines) or row
(CSV), each with its conversation's fields (``core/export.py``; formats in
docs/reports.md).

Streaming: the store is read a page at a time by (conversation id, seq) and each page is
written before the next is read, so memory stays flat however large the export. A
progress bar (by conversation id across the range) goes to stderr when stderr is a
terminal and ``--quiet`` is not given. ``FILE`` ``-`` is stdout; an existing FILE is
refused unless ``--force``. Registered on the ``conversations`` group by ``cli/app.py``.
"""

# Heavy modules (trio, rich, storage) are imported inside the functions that use them,
# so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from customer_service.cli.common import current_config, with_store

if TYPE_CHECKING:
    from customer_service.core.reports import ReportRange
    from customer_service.storage.base import Store


def _open(target: str, force: bool) -> tuple[IO[bytes], bool]:
    """The binary stream to write to, and whether it is a regular file this command opened
    (removed if the export fails: a device such as /dev/null never is)."""
    if target == "-":
        sys.stdout.flush()
        return sys.stdout.buffer, False
    path = Path(target)
    if path.is_dir():
        raise click.BadParameter(f"{target} is a directory", param_hint="'FILE'")
    try:
        out = path.open("wb" if force else "xb")
    except FileExistsError:
        raise click.BadParameter(f"{target} exists (--force overwrites it)",
                                 param_hint="'FILE'") from None
    except OSError as exc:
        raise click.BadParameter(f"{target}: {exc.strerror}", param_hint="'FILE'") from None
    return out, stat.S_ISREG(os.fstat(out.fileno()).st_mode)


@contextmanager
def _writing(target: str) -> Iterator[None]:
    """A failed write (a full disk, an I/O error) as one line naming FILE, not a traceback.
    A closed pipe (``| head``) stays a BrokenPipeError, which click ends quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        name = "stdout" if target == "-" else target
        raise click.ClickException(f"cannot write {name}: {exc.strerror or exc}") from None


async def _export(store: Store, span: ReportRange, fmt: str, out: IO[bytes],
                  show_progress: bool, *, target: str) -> int:
    import csv
    import io

    from customer_service.core.export import CSV_HEADER, PAGE, csv_row, jsonl_line

    text: io.TextIOWrapper | None = None
    writer = None
    if fmt == "csv":
        # RFC 4180: CRLF line ends, fields quoted when needed; UTF-8.
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text)
        with _writing(target):
            writer.writerow(CSV_HEADER)
    written = 0
    bounds = await store.export_bounds(span.since, span.until)
    with ExitStack() as stack:
        progress = None
        task = None
        if show_progress and bounds is not None:
            from rich.console import Console
            from rich.progress import Progress

            progress = stack.enter_context(Progress(console=Console(stderr=True),
                                                    transient=False))
            task = progress.add_task("Exporting", total=bounds[1] - bounds[0] + 1)
        after = (0 if bounds is None else bounds[0] - 1, 0)
        while bounds is not None:
            page = await store.export_page(span.since, span.until, last_id=bounds[1],
                                           after=after, limit=PAGE)
            if not page:
                break
            with _writing(target):
                if writer is not None:
                    writer.writerows(csv_row(row) for row in page)
                else:
                    out.write(b"".join(jsonl_line(row) for row in page))
            written += len(page)
            after = (page[-1].conversation_id, page[-1].seq)
            if progress is not None and task is not None:
                progress.update(task, completed=after[0] - bounds[0] + 1)
        if progress is not None and task is not None:
            progress.update(task, completed=bounds[1] - bounds[0] + 1 if bounds else 0)
    with _writing(target):
        if text is not None:
            text.flush()
            text.detach()
        out.flush()
    return written


@click.command()
@click.option("--since", required=True, metavar="DATE",
              help="Conversations created from this day (YYYY-MM-DD, in --tz) or ISO datetime.")
@click.option("--until", metavar="DATE",
              help="...up to this day, included, or ISO datetime, excluded. Default: now.")
@click.option("--format", "fmt", required=True, type=click.Choice(["jsonl", "csv"]),
              help="jsonl: one JSON object per message; csv: one row per message.")
@click.option("--tz", metavar="ZONE",
              help="IANA time zone of the dates. Default: [hours] timezone (UTC).")
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.argument("target", metavar="FILE")
def export(  # noqa: PLR0917 (click passes each option)
        since: str, until: str | None, fmt: str, tz: str | None, force: bool, quiet: bool,
        target: str) -> None:
    """Export the messages of the conversations created in a range to FILE (- for stdout).

    Each message carries its conversation's fields (id, visitor, contact, status,
    assigned agent, labels). CSV cells that would start a formula get a leading '.

    \b
        customer-service conversations export --since 2026-11-01 --format jsonl nov.jsonl
        customer-service conversations export --since 2026-11-01 --until 2026-11-30 \\
            --format csv - > nov.csv
    """
    from customer_service.core.models import utc_now
    from customer_service.core.reports import parse_range, parse_zone

    config = current_config()
    zone = parse_zone(tz if tz is not None else config.hours.timezone)
    span = parse_range(since, until, zone=zone, by=None, now=utc_now())
    show_progress = not quiet and sys.stderr.isatty()
    out, opened = _open(target, force)

    async def work(store: Store) -> int:
        return await _export(store, span, fmt, out, show_progress, target=target)

    try:
        written = with_store(config, work)
        if target != "-":
            with _writing(target):
                out.close()
    except Exception:
        if target != "-":
            with suppress(OSError):  # what is still buffered cannot be written either
                out.close()
        if opened:  # no half-written file left behind
            Path(target).unlink(missing_ok=True)
        raise
    if target != "-" and not quiet:
        click.echo(f"Exported {written:,} messages to {target}", err=True)
