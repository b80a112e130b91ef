"""``customer-service tokens create|list|revoke``: API tokens for machines (docs/api.md).

A token's NAME is also its bot agent's name: a write token's messages reach visitors and
agents under it. The token is printed once (stdout; details on stderr); only its SHA-256
is stored. A bad name or scope, a taken name, an unknown name each end in one
``Error: ...`` line.
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

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
from customer_service.core.api_tokens import SCOPES, check_name, check_scope

if TYPE_CHECKING:
    from customer_service.core.api_tokens import ApiToken
    from customer_service.storage.base import Store


@click.group()
def tokens() -> None:
    """API tokens for machines (scope read or write): create, list, revoke."""


def token_dict(token: ApiToken) -> dict[str, Any]:
    return {"name": token.name, "scope": token.scope, "agent_id": token.agent_id,
            "created_at": ts(token.created_at), "last_used_at": ts(token.last_used_at),
            "revoked": token.revoked, "revoked_at": ts(token.revoked_at)}


@tokens.command("create")
@click.argument("name")
@click.option("--scope", required=True, metavar="read|write",
              help="read: read conversations, messages, contacts, search, reports; "
                   "write: also send messages and close conversations as the bot NAME.")
def create(name: str, scope: str) -> None:
    """Create an API token; NAME is also the bot agent its messages are sent as.

    The token is printed once on stdout (details on stderr) and only its hash is stored,
    so capture it:

    \b
        TOKEN=$(customer-service tokens create crm-bot --scope write)
        curl -H "Authorization: Bearer $TOKEN" http://localhost:8080/api/v1/conversations
    """
    from customer_service.auth import new_token, token_hash
    from customer_service.errors import BadRequest

    checked_name = check_name(name)
    try:
        checked_scope = check_scope(scope)
    except BadRequest as exc:
        raise BadRequest(f"--scope: {exc.message}") from None
    secret = new_token()

    async def work(store: Store) -> ApiToken:
        return await store.create_api_token(checked_name, checked_scope, token_hash(secret))

    created = with_store(current_config(), work)
    click.echo(secret)
    click.echo(f"API token {created.name!r} (scope {created.scope}, bot agent id "
               f"{created.agent_id}). It is shown only this once.", err=True)


@tokens.command("list")
@json_option
def list_tokens(as_json: bool) -> None:
    """List API tokens (never their secret), revoked ones too.

    \b
        customer-service tokens list
        customer-service tokens list --json | jq -r '.[] | select(.revoked | not) | .name'
    """

    async def work(store: Store) -> list[ApiToken]:
        return await store.list_api_tokens()

    found = with_store(current_config(), work)
    if as_json:
        echo_json([token_dict(t) for t in found])
        return
    out = console()
    if not found:
        out.print("No API tokens yet: create one with 'customer-service tokens create NAME "
                  f"--scope {'|'.join(SCOPES)}'.", highlight=False)
        return
    from rich.table import Table

    table = Table("name", "scope", "created (UTC)", "last used (UTC)", "revoked (UTC)",
                  title=f"{len(found)} API token(s)", title_justify="left")
    for token in found:
        table.add_row(esc(token.name), token.scope, short_time(token.created_at),
                      short_time(token.last_used_at) or "never",
                      short_time(token.revoked_at) or "no")
    print_table(table, out)


@tokens.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke an API token at once, on every instance (its name stays taken and listed).

    \b
        customer-service tokens revoke crm-bot
    """
    from customer_service.errors import NotFound

    async def work(store: Store) -> ApiToken:
        try:
            return await store.revoke_api_token(name)
        except NotFound as exc:
            raise NotFound(f"{exc.message} (see 'customer-service tokens list')") from None

    revoked = with_store(current_config(), work)
    console().print(f"Revoked API token {esc(revoked.name)!s}.", highlight=False)
