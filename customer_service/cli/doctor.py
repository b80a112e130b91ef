"""``customer-service doctor``: check a deployment, one line per check.

Each check returns a verdict (ok, warn, fail, skip) and one line of detail that
says what was checked, or what failed and what to do about it. A check never
raises: the errors it expects become a ``fail`` with a hint, and anything else
becomes a ``fail`` naming the exception, so the command prints no traceback.
Each runs under its own deadline (``--timeout``).
"""

# Heavy modules (trio, rich, httpx, coredis, storage) are imported inside the functions
# that use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict

import click

from customer_service.cli.common import console, echo_json, esc
from customer_service.cli.doctor_checks import (
    check_ai,
    check_config,
    check_database,
    check_descriptors,
    check_public_url,
    check_redis,
)
from customer_service.cli.doctor_report import (
    CHECK_NAMES,
    Check,
    Failed,
    Progress,
    Status,
    describe_error,
    leaf_error,
    summary_line,
)
from customer_service.config import Config

# --- running them ------------------------------------------------------------------------

async def _guarded(name: str, run: Callable[[Progress], Awaitable[Check]],
                   timeout: float) -> Check:
    """Run one check under its deadline; turn every failure into a ``fail`` line.

    Past the deadline the verdict is the timeout, whatever error the cancellation
    turned into on its way out of a library (coredis reports a cancelled connection
    attempt as a ``ConnectionError``).
    """
    import trio

    progress = Progress("starting")
    with trio.move_on_after(timeout) as scope:
        try:
            return await run(progress)
        except Exception as exc:  # noqa: BLE001 - a check reports, it never raises
            if not scope.cancel_called:
                leaf = leaf_error(exc)
                if isinstance(leaf, Failed):
                    return Check(name, leaf.status, leaf.detail)
                return Check(name, "fail", f"{progress.where()}{progress.step}: "
                                           f"{describe_error(exc)}")
    return Check(name, "fail", f"{progress.where()}no answer within {timeout:g} s "
                               f"({progress.step}); raise --timeout if the network is slow")


async def run_checks(config: Config, *, timeout: float, connections: int) -> list[Check]:
    """Every check after ``config``, in order."""
    return [
        await _guarded("database", lambda p: check_database(config, p), timeout),
        await _guarded("redis", lambda p: check_redis(config, p, timeout), timeout),
        await _guarded("ai", lambda p: check_ai(config, p, timeout), timeout),
        check_descriptors(config, connections),
        await _guarded("public url", lambda p: check_public_url(config, p, timeout), timeout),
    ]


_MARKS: dict[Status, str] = {"ok": "[green]✓[/]", "warn": "[yellow]![/]",
                             "fail": "[bold red]✗[/]", "skip": "[dim]-[/]"}


def print_checks(checks: list[Check]) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, min_width=max(len(c.name) for c in checks) + 2)
    grid.add_column(overflow="fold")
    for c in checks:
        detail = esc(c.detail)
        if c.status == "skip":
            detail = f"[dim]skipped: {detail}[/]"
        grid.add_row(_MARKS[c.status], c.name, detail)
    out = console()
    with out.capture() as captured:  # a grid pads every line to its width: strip that
        out.print(grid)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    out.file.write("\n".join(lines) + "\n")
    out.print(summary_line(checks))


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, metavar="SECONDS", help="Deadline of each check.")
@click.option("--connections", type=click.IntRange(min=1), default=10000, show_default=True,
              metavar="N", help="WebSocket connections the deployment should hold (for the "
                                "file-descriptor check).")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"ok": ..., "checks": [...]} instead of lines (for scripts).')
def doctor(timeout: float, connections: int, as_json: bool) -> None:
    """Check a deployment: config, database, Redis, AI, file descriptors, public URL.

    Prints one line per check (ok, warning, failed or skipped) and a summary.
    Changes nothing (no migration). Exits 0 when every check passed (warnings
    allowed), 1 when any failed.
    """
    first, config = check_config()
    checks = [first]
    if config is None:
        checks += [Check(name, "skip", "the config did not load") for name in CHECK_NAMES[1:]]
    else:
        import trio

        checks += trio.run(lambda: run_checks(config, timeout=timeout, connections=connections))
    ok = not any(c.status == "fail" for c in checks)
    if as_json:
        echo_json({"ok": ok, "checks": [asdict(c) for c in checks]})
    else:
        print_checks(checks)
    sys.stdout.flush()
    if not ok:
        click.get_current_context().exit(1)
