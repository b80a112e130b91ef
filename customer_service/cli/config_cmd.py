"""``customer-service config init|check|docs``."""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
from pathlib import Path

import click

from customer_service.cli.common import (
    DEFAULT_CONFIG_FILE,
    console,
    describe_database,
    esc,
    get_state,
)
from customer_service.config import Config, load_config, worker_count


@click.group("config")
def config_group() -> None:
    """Write, check and document the TOML config file."""


@config_group.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.option("--production", is_flag=True,
              help="Add notes on what to change for production (how prod.toml is made).")
def init(path: Path | None, force: bool, production: bool) -> None:
    """Write a commented config file with every key at its default.

    PATH defaults to the --config file if one was given, else
    ./customer-service.toml, which the other commands then use without --config.

    \b
        customer-service config init
        customer-service config init /etc/customer-service.toml --production
    """
    from customer_service.config_template import render_template

    if path is None:
        path = Path(get_state().config_path or DEFAULT_CONFIG_FILE)
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_template(production=production), encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from exc
    click.echo(f"Wrote {path}. Check it with: customer-service config check {path}")


def _env_overrides() -> list[str]:
    from customer_service.config_template import env_var, iter_keys

    names = {env_var(section, key) for section, key, _, _ in iter_keys()}
    return sorted(name for name in os.environ if name in names)


def mask_password(url: str) -> str:
    """A URL with its password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def _summary(config: Config) -> list[tuple[str, str]]:
    server = config.server
    rows = [
        ("listen", f"{server.host}:{server.port}"),
        ("public URL", server.public_url or f"http://{server.host}:{server.port}"),
        ("database", describe_database(config)),
        ("workers", str(server.workers) if server.workers != "auto"
         else f"auto ({worker_count(server)} on this machine)"),
        ("bus", f"Redis {mask_password(config.bus.redis_url)}, namespace "
                f"{config.bus.namespace}" if config.bus.redis_url else "off (one instance)"),
        ("proxies", ", ".join(server.trusted_proxies) or "none trusted"),
        ("origins", ", ".join(server.allowed_origins) or "any (allowed_origins is empty)"),
        ("AI", "on" if config.ai.enabled else "off"),
        ("log", f"{config.log.level}, {config.log.format}"),
    ]
    overrides = _env_overrides()
    rows.append(("environment", ", ".join(overrides) if overrides else "no overrides"))
    return rows


@config_group.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=str))
def check(path: str | None) -> None:
    """Validate a config file (default: the one --config chose); print a summary.

    On an error it prints the file, line and key, and exits with status 1.

    \b
        customer-service config check prod.toml
    """
    source = path if path is not None else get_state().config_path
    config = load_config(source)  # ConfigError -> "Error: FILE:LINE: ..." (exit 1)
    out = console()
    out.print(f"[green]ok[/green]: {esc(source or 'no config file; the embedded defaults')}")
    rows = _summary(config)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:  # one line each, never wrapped: paths stay copyable
        out.print(f"[bold]{label:<{width}}[/bold]  {esc(value)}", soft_wrap=True)
    for warning in config_warnings(config):
        console(stderr=True).print(f"[yellow]warning[/yellow]: {esc(warning)}", soft_wrap=True)


def config_warnings(config: Config) -> list[str]:
    """Valid but probably not meant."""
    found = []
    if config.bus.redis_url and config.storage.backend == "sqlite":
        found.append("[bus] redis_url is set but [storage] backend is sqlite: instances on "
                     "the bus must share one database, so use backend = \"mysql\" for "
                     "several")
    ai = config.ai
    if ai.enabled and not ai.resolved_api_key():
        found.append("[ai] enabled = true but no API key is set ([ai] api_key, "
                      "CUSTOMER_SERVICE_AI_API_KEY or [ai] api_key_env): requests go without "
                      "an Authorization header, which only upstreams that need no key accept "
                      f"(a local Ollama, llama.cpp or vLLM); {ai.base_url} may refuse them")
    return found


@config_group.command()
def docs() -> None:
    """Print the configuration reference (Markdown) generated from the code.

    \b
        customer-service config docs > docs/configuration.md
    """
    from customer_service.config_template import render_reference_markdown

    click.echo(render_reference_markdown(), nl=False)
