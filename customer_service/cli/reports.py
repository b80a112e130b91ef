"""``customer-service reports --since … [--until …] [--by agent|day|label] [--tz …]
[--json|--csv]``: conversations opened and closed, first response and resolution times
(median, p90), messages by role, what the AI resolved alone, campaign results
(``core/reports.py``, ``Store.report``; definitions in docs/reports.md).

Bad dates, a reversed range, an unknown ``--by`` or ``--tz``: one line naming the option
(``BadRequest``, converted by ``cli/app.py``).
"""

# Heavy modules (trio, rich, storage) are imported inside the functions that use them,
# so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from customer_service.cli.common import console, current_config, esc, print_table, with_store

if TYPE_CHECKING:
    from customer_service.core.reports import Durations, Figures, Report
    from customer_service.storage.base import Store

GROUP_CHOICES = ("agent", "day", "label")


def _pair(d: Durations, *, compact: bool = False) -> str:
    from customer_service.core.reports import format_duration

    if not d.count:
        return "-"
    median = format_duration(d.median_ms, compact=compact)
    p90 = format_duration(d.p90_ms, compact=compact)
    return f"{median}/{p90}" if compact else f"{median} / {p90}"


def _roles(f: Figures, *, compact: bool = False) -> str:
    m = f.messages
    return ("/" if compact else " / ").join(str(n) for n in (m.visitor, m.agent, m.ai, m.system))


def _print(report: Report) -> None:
    from rich.table import Table

    out = console()
    total = report.total
    out.print(f"Report {report.since} .. {report.until} ({esc(report.timezone)})",
              soft_wrap=True)
    summary = Table(show_header=False, title_justify="left", box=None, pad_edge=False)
    summary.add_column("figure")
    summary.add_column("value")
    for label, value in (
            ("Conversations opened", str(total.opened)),
            ("Conversations closed", str(total.closed)),
            ("Resolved by the AI alone", str(total.ai_resolved)),
            ("First agent reply (median / p90)",
             f"{_pair(total.first_response_agent)}  ({total.first_response_agent.count})"),
            ("First AI reply (median / p90)",
             f"{_pair(total.first_response_ai)}  ({total.first_response_ai.count})"),
            ("Resolution time (median / p90)",
             f"{_pair(total.resolution)}  ({total.resolution.count})"),
            ("Messages visitor / agent / ai / system", _roles(total)),
            ("AI replies", str(total.ai_replies))):
        summary.add_row(label, value)
    print_table(summary, out)
    if report.by is not None:
        table = Table(title=f"By {report.by}", title_justify="left")
        for column in (report.by, "opened", "closed", "AI alone", "1st agent p50/p90",
                       "1st AI p50/p90", "resolution p50/p90", "msgs v/a/ai/s"):
            group = column == report.by
            # A long display name is cut ("…") rather than squeezing the figures; a
            # figure too wide for a narrow terminal folds onto a second line, never cut.
            table.add_column(column, no_wrap=group, min_width=12 if group else None,
                             max_width=16 if group else None,
                             overflow="ellipsis" if group else "fold")
        for row in report.rows:
            name = row.name or ("(unassigned)" if report.by == "agent" else "(no label)")
            table.add_row(esc(name), str(row.opened), str(row.closed), str(row.ai_resolved),
                          _pair(row.first_response_agent, compact=True),
                          _pair(row.first_response_ai, compact=True),
                          _pair(row.resolution, compact=True), _roles(row, compact=True))
        print_table(table, out)
    if report.campaigns:
        table = Table(title="Campaigns", title_justify="left")
        for column in ("id", "name", "status", "sent", "failed", "skipped", "pending",
                       "replied"):
            table.add_column(column)
        for c in report.campaigns:
            table.add_row(str(c.id), esc(c.name), c.status, str(c.sent), str(c.failed),
                          str(c.skipped), str(c.pending), str(c.replied))
        print_table(table, out)


@click.command()
@click.option("--since", required=True, metavar="DATE",
              help="First day (YYYY-MM-DD, in --tz) or an ISO datetime.")
@click.option("--until", metavar="DATE",
              help="Last day, included (YYYY-MM-DD), or an ISO datetime (excluded). "
                   "Default: now.")
@click.option("--by", metavar="agent|day|label",
              help="Break the figures down by assigned agent, local day or label.")
@click.option("--tz", metavar="ZONE",
              help="IANA time zone of dates and days. Default: [hours] timezone (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Print the figures as CSV: one row per group, then the total.")
def reports(  # noqa: PLR0917 (click passes each option)
        since: str, until: str | None, by: str | None, tz: str | None, as_json: bool,
        as_csv: bool) -> None:
    """Conversations, response and resolution times, messages and campaigns of a range.

    Counted in the database; medians and 90th percentiles over conversations.
    Definitions: docs/reports.md.

    \b
        customer-service reports --since 2026-11-01
        customer-service reports --since 2026-11-01 --until 2026-11-30 --by day --tz Asia/Shanghai
        customer-service reports --since 2026-11-01 --by agent --csv > agents.csv
    """
    from customer_service.core.models import utc_now
    from customer_service.core.reports import parse_group, parse_range, parse_zone
    from customer_service.server.rest_reports import run_report

    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one")
    config = current_config()
    zone = parse_zone(tz if tz is not None else config.hours.timezone)
    span = parse_range(since, until, zone=zone, by=parse_group(by), now=utc_now())

    async def work(store: Store) -> Report:
        return await run_report(store, span)

    report = with_store(config, work)
    if as_json:
        import msgspec

        click.echo(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
    elif as_csv:
        import csv
        import io

        from customer_service.core.reports import CSV_HEADER, report_rows

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_HEADER)
        writer.writerows(report_rows(report))
        click.echo(buffer.getvalue(), nl=False)
    else:
        _print(report)
