"""The startup banner: where the server is, which database, whether the AI is on."""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

from customer_service import __version__
from customer_service.cli.common import console, describe_database
from customer_service.config import Config


def _websocket_url(http_url: str) -> str:
    if http_url.startswith("https://"):
        return "wss://" + http_url.removeprefix("https://")
    return "ws://" + http_url.removeprefix("http://")


def banner_rows(config: Config, base_url: str) -> list[tuple[str, str]]:
    """(label, value) lines of the banner; separate from the drawing so tests can read them."""
    listening = base_url.rstrip("/")
    public = (config.server.public_url or listening).rstrip("/")
    ws = _websocket_url(public)
    rows = [
        ("Chat page", f"{public}/"),
        ("Agent dashboard", f"{public}/agent"),
        ("Widget", f'<script src="{public}/widget.js"></script>'),
        ("Health", f"{public}/healthz"),
        ("Metrics", f"{listening}/metrics"),
        ("Visitor socket", f"{ws}/ws/visitor"),
        ("Agent socket", f"{ws}/ws/agent"),
    ]
    if public != listening:
        rows.append(("Listening on", listening))
    rows += [
        ("Database", describe_database(config)),
        ("AI", "on" if config.ai.enabled else "off"),
        ("Config", config.source or "embedded defaults"),
    ]
    return rows


def print_banner(config: Config, base_url: str) -> None:
    """Print the banner to stdout; called by the server once its port is bound.

    ``base_url`` is the bound address (``http://127.0.0.1:8080``), with the real
    port when the config asked for port 0.
    """
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in banner_rows(config, base_url):
        grid.add_row(label, value)
    out = console()
    out.print(Panel(grid, title=f"customer-service {__version__}", title_align="left",
                    subtitle="Ctrl+C or SIGTERM stops it", subtitle_align="right",
                    expand=False))
    out.file.flush()
