"""``customer-service blocks list|add|remove``: blocked visitors and networks.

A block written here reaches the running servers over the bus at once when ``[bus]
redis_url`` is set (a one-off ``BlockEvent``); every server also reloads the active
blocks every few seconds, which is all there is without a bus.
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from customer_service.cli.common import (
    console,
    current_config,
    echo_json,
    esc,
    json_option,
    print_table,
    short_time,
    ts,
    with_store,
)

if TYPE_CHECKING:
    from customer_service.config import Config
    from customer_service.core.blocks import Block
    from customer_service.storage.base import Store

MAX_ID = 2**63 - 1


def block_dict(block: Block, now: datetime) -> dict[str, Any]:
    return {"id": block.id, "visitor_id": block.visitor_id, "network": block.network,
            "reason": block.reason, "created_by": block.created_by,
            "created_at": ts(block.created_at), "expires_at": ts(block.expires_at),
            "active": block.active(now)}


def _what(block: Block) -> str:
    parts = []
    if block.visitor_id is not None:
        parts.append(f"visitor {block.visitor_id}")
    if block.network is not None:
        parts.append(f"network {block.network}")
    return " and ".join(parts)


@click.group()
def blocks() -> None:
    """Blocked visitors and networks: list, add, remove."""


@blocks.command("list")
@click.option("--all", "every", is_flag=True, help="Include expired blocks.")
@json_option
def list_blocks(every: bool, as_json: bool) -> None:
    """The active blocks (with --all, the expired ones too)."""
    now = datetime.now(UTC)

    async def work(store: Store) -> list[Block]:
        return await store.list_blocks(None if every else now)

    found = with_store(current_config(), work)
    if as_json:
        echo_json([block_dict(b, now) for b in found])
        return
    if not found:
        console().print("No blocks." if every else "No active blocks.")
        return
    from rich.table import Table

    table = Table("id", "visitor", "network", "until", "by", "since", "reason")
    for block in found:
        until = ("forever" if block.expires_at is None else
                 short_time(block.expires_at) + ("" if block.active(now) else " (expired)"))
        table.add_row(str(block.id), "" if block.visitor_id is None else str(block.visitor_id),
                      block.network or "", until, esc(block.created_by),
                      short_time(block.created_at), esc(block.reason))
    print_table(table)


def _network(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from customer_service.core.blocks import parse_network
    from customer_service.errors import BadRequest

    try:
        return str(parse_network(value))
    except BadRequest as exc:
        raise click.BadParameter(exc.message) from None


def _duration(ctx: click.Context, param: click.Parameter, value: str | None
              ) -> timedelta | None:
    if value is None:
        return None
    from customer_service.core.blocks import parse_duration
    from customer_service.errors import BadRequest

    try:
        return parse_duration(value)
    except BadRequest as exc:
        raise click.BadParameter(exc.message) from None


def _until(text: str, now: datetime) -> datetime:
    """``--until``: an ISO 8601 date or time; without a time zone, UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-12-31 "
                                 "or 2026-12-31T18:00+01:00)", param_hint="'--until'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment <= now:
        raise click.BadParameter(f"{moment:%Y-%m-%d %H:%M} UTC is in the past",
                                 param_hint="'--until'")
    return moment


@blocks.command("add")
@click.option("--visitor", "visitor_id", type=click.IntRange(1, MAX_ID), metavar="ID",
              help="Block this visitor (its id, as in the dashboard and 'conversations').")
@click.option("--ip", "network", callback=_network, metavar="ADDR_OR_CIDR",
              help="Block an IPv4/IPv6 address or network (203.0.113.7, 10.1.0.0/16).")
@click.option("--for", "duration", callback=_duration, metavar="DURATION",
              help="Expire after this long: 30m, 12h, 7d, 2w (default: until removed).")
@click.option("--until", "until_text", metavar="TIME",
              help="Expire at this time (ISO 8601; UTC unless it says otherwise).")
@click.option("--reason", default="", help="Why (shown to agents, never to the visitor).")
@json_option
def add(*, visitor_id: int | None, network: str | None, duration: timedelta | None,
        until_text: str | None, reason: str, as_json: bool) -> None:
    """Block a visitor and/or an address or network (both: one block for the two)."""
    from customer_service.core.blocks import check_reason
    from customer_service.errors import BadRequest, NotFound

    if visitor_id is None and network is None:
        raise click.UsageError("give --visitor ID, --ip ADDR_OR_CIDR, or both")
    if duration is not None and until_text is not None:
        raise click.UsageError("give --for or --until, not both")
    now = datetime.now(UTC)
    expires = (now + duration if duration is not None else
               _until(until_text, now) if until_text is not None else None)
    try:
        reason = check_reason(reason)
    except BadRequest as exc:
        raise click.BadParameter(exc.message, param_hint="'--reason'") from None

    async def work(store: Store) -> tuple[Block, str]:
        try:
            block = await store.add_block(visitor_id=visitor_id, network=network,
                                          reason=reason, created_by="cli", expires_at=expires)
        except NotFound as exc:
            raise NotFound(f"{exc.message} (a conversation's visitor_id: 'customer-service "
                           "conversations list --json')") from None
        return block, await store.deployment_token()

    config = current_config()
    block, deployment = with_store(config, work)
    if as_json:
        echo_json(block_dict(block, now))
    else:
        until = ("until removed" if block.expires_at is None
                 else f"until {short_time(block.expires_at)} UTC")
        console().print(f"Blocked {_what(block)} (block {block.id}), {until}.")
    _tell_servers(config, deployment, block, removed=False, quiet=as_json)


@blocks.command("remove")
@click.argument("block_id", type=click.IntRange(1, MAX_ID), metavar="ID")
def remove(block_id: int) -> None:
    """Remove a block (its id from 'blocks list')."""
    from customer_service.errors import NotFound

    async def work(store: Store) -> tuple[Block, str]:
        try:
            block = await store.remove_block(block_id)
        except NotFound:
            raise NotFound(f"no block {block_id} (see 'customer-service blocks list')"
                           ) from None
        return block, await store.deployment_token()

    config = current_config()
    block, deployment = with_store(config, work)
    console().print(f"Removed block {block.id} ({_what(block)}).")
    _tell_servers(config, deployment, block, removed=True, quiet=False)


def _tell_servers(config: Config, deployment: str, block: Block, *, removed: bool,
                  quiet: bool) -> None:
    """Publish the change on the bus, when there is one; the servers' reload catches up
    otherwise (and when Redis does not answer)."""
    from customer_service.server.blocks import REFRESH_INTERVAL

    later = f"The servers apply it within {REFRESH_INTERVAL:g} s."
    if not config.bus.redis_url:
        if not quiet:
            console().print(later)
        return
    import os

    import trio

    from customer_service.bus.connection import publish_once
    from customer_service.core.bus_events import BusEvent
    from customer_service.errors import BusError
    from customer_service.server.blocks import block_event

    try:
        events: list[BusEvent] = [block_event(block, removed=removed)]
        trio.run(publish_once, config.bus, deployment, f"cli-{os.getpid()}", events)
    except BusError as exc:
        console(stderr=True).print(f"Warning: could not reach the bus ({exc.message}). {later}")
