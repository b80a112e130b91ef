"""``customer-service agents ...``: the people who answer visitors."""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from customer_service.auth import hash_password, new_token, password_problem, token_hash
from customer_service.cli.common import (
    agent_dict,
    console,
    current_config,
    echo_json,
    esc,
    json_option,
    print_table,
    short_time,
    with_store,
)
from customer_service.core import conversation as machine
from customer_service.core.models import TOKEN_ID_LENGTH, ConversationStatus, NewMessage, Role
from customer_service.errors import BadRequest, Conflict, NotFound

if TYPE_CHECKING:
    from customer_service.config import Config
    from customer_service.core.assignment import AgentLoad
    from customer_service.core.models import Agent
    from customer_service.storage.base import Store

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def _check_username(username: str) -> str:
    if not USERNAME.match(username):
        raise BadRequest(f"invalid username {username!r}: 1-64 letters, digits or _ . @ -, "
                         "starting with a letter or digit")
    return username


def _check_password(value: str) -> str:
    """``click.prompt`` value check: a refused password is asked again."""
    problem = password_problem(value)
    if problem:
        raise click.BadParameter(problem)
    return value


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _check_password_source(password_stdin: bool) -> None:
    """Without ``--password-stdin`` the password is asked on the terminal; with a pipe or a
    file on stdin there is none to ask on (getpass would warn and read the pipe): say which
    flag to use instead, before anything else happens."""
    if not password_stdin and not _stdin_is_terminal():
        raise BadRequest("stdin is not a terminal, so the password cannot be asked for; "
                         "to read it from stdin, add --password-stdin")


def _read_password(password_stdin: bool) -> str:
    """The new password: one line from stdin, or asked twice with hidden input."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise BadRequest("--password-stdin: no password on stdin")
    else:
        password = click.prompt("Password", hide_input=True,
                                confirmation_prompt="Repeat password",
                                value_proc=_check_password)
    problem = password_problem(password)
    if problem:
        raise BadRequest(problem)
    return password


async def _agent(store: Store, username: str) -> Agent:
    agent = await store.get_agent_by_username(username)
    if agent is None:
        raise NotFound(f"no agent named {username!r} (see 'customer-service agents list')")
    return agent


password_stdin_option = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from the first line of stdin instead of prompting.")


@click.group()
def agents() -> None:
    """Manage agents: add, list, set, disable, enable, passwd, token, tokens, revoke-token."""


@agents.command("add")
@click.argument("username")
@click.option("--name", help="Name shown to visitors (default: the username).")
@password_stdin_option
def add(username: str, name: str | None, password_stdin: bool) -> None:
    """Add an agent (asks for the password twice, hidden).

    With --password-stdin the password is the first line of stdin, for scripts.

    \b
        customer-service agents add alice --name "Alice Martin"
        printf '%s\\n' "$PASSWORD" | customer-service agents add bob --password-stdin
    """
    _check_username(username)
    _check_password_source(password_stdin)
    config = current_config()

    async def free(store: Store) -> None:
        if await store.get_agent_by_username(username) is not None:
            raise Conflict(f"an agent named {username!r} exists already")

    with_store(config, free)  # fail before asking for a password nobody can use
    password = _read_password(password_stdin)
    hashed = hash_password(password, n=config.auth.scrypt_n)

    async def work(store: Store) -> Agent:
        return await store.create_agent(username, name or username, hashed)

    agent = with_store(config, work)
    console().print(f"Added agent [bold]{agent.username}[/bold] (id {agent.id}, "
                    f"name {esc(repr(agent.name))}).")


@agents.command("list")
@json_option
def list_agents(as_json: bool) -> None:
    """List agents, enabled and disabled, with their availability and capacity."""
    from customer_service.cli.agent_routing import capacity_text

    async def work(store: Store) -> tuple[list[Agent], dict[int, AgentLoad]]:
        return await store.list_agents(), {a.agent_id: a for a in await store.agent_loads()}

    config = current_config()
    found, loads = with_store(config, work)
    default = config.routing.default_capacity
    if as_json:
        echo_json([{**agent_dict(a), "bot": a.bot, **_routing_dict(loads.get(a.id), default)}
                   for a in found])
        return
    from rich.table import Table

    table = Table("id", "username", "name", "status", "availability", "capacity", "open",
                  "created (UTC)", title=f"{len(found)} agent(s)", title_justify="left")
    for agent in found:
        status = "[red]disabled[/red]" if agent.disabled else "[green]enabled[/green]"
        if agent.bot:
            status += " [cyan](bot)[/cyan]"
        load = loads.get(agent.id)
        table.add_row(str(agent.id), agent.username, esc(agent.name), status,
                      load.status if load else "online",
                      capacity_text(load, default) if load else str(default),
                      str(load.open_count) if load else "0", short_time(agent.created_at))
    print_table(table)


def _routing_dict(load: AgentLoad | None, default: int) -> dict[str, object]:
    """What ``agents list --json`` adds for auto-assignment: the status the agent set, its
    own capacity (null: the default), the capacity that applies, its open conversations."""
    return {"availability": load.status if load else "online",
            "capacity": load.capacity if load else None,
            "effective_capacity": load.capacity_or(default) if load else default,
            "open_conversations": load.open_count if load else 0}


def _close_sockets_now(config: Config, deployment: str, agent: Agent,
                      token_hash: str | None = None) -> None:
    """Tell the running instances over the bus to close the agent's sockets (those opened
    with ``token_hash``, or all of them) at once; they also notice within 30 s by
    themselves, which is all there is without a bus."""
    if not config.bus.redis_url:
        console().print("Their open sockets close within 30 s (the server checks tokens "
                        "that often; with [bus] redis_url set they close at once)."
                        if token_hash is None else
                        "Sockets opened with it close within 30 s.")
        return
    import os

    import trio

    from customer_service.bus.connection import publish_once
    from customer_service.core.bus_events import BusEvent, RevokeEvent
    from customer_service.errors import BusError

    try:
        events: list[BusEvent] = [RevokeEvent(agent.id, token_hash)]
        trio.run(publish_once, config.bus, deployment, f"cli-{os.getpid()}", events)
    except BusError as exc:
        console(stderr=True).print(f"Warning: could not reach the bus ({exc.message}); the "
                                   "agent's open sockets close within 30 s.")
        return
    console().print("Their open sockets are being closed." if token_hash is None
                    else "Sockets opened with it are being closed.")


def _set_disabled(username: str, disabled: bool) -> None:
    async def work(store: Store) -> Agent:
        return await store.set_agent_disabled(username, disabled)

    async def work_and_deployment(store: Store) -> tuple[Agent, str, int]:
        agent = await work(store)
        released = await release_conversations(store, agent) if disabled else 0
        return agent, await store.deployment_token(), released

    config = current_config()
    agent, deployment, released = with_store(config, work_and_deployment)
    if disabled:
        console().print(f"Disabled agent [bold]{agent.username}[/bold]; "
                        "their tokens are revoked.")
        if released:
            console().print(f"{released} conversation(s) assigned to them are back in the "
                            "queue.")
        _close_sockets_now(config, deployment, agent)
    else:
        console().print(f"Enabled agent [bold]{agent.username}[/bold].")


async def release_conversations(store: Store, agent: Agent) -> int:
    """Give a disabled agent's conversations back to the queue, each with a system note,
    so that a visitor is not left with nobody who may answer. Compare-and-set: one an
    agent changed meanwhile is left as it is."""
    released = 0
    while True:
        page = await store.list_conversations(ConversationStatus.ASSIGNED, limit=100,
                                              assigned_to=agent.id)
        progressed = False
        for summary in page:
            conversation = summary.conversation
            change = machine.release(conversation, agent)
            if change.note is None:
                continue
            try:
                await store.set_conversation_state(
                    conversation.id, change.status, change.assigned_to,
                    expected=(conversation.status, conversation.assigned_to))
            except Conflict:
                continue
            await store.append_messages([NewMessage(conversation.id, Role.SYSTEM, None,
                                                    "system", change.note)])
            released += 1
            progressed = True
        if len(page) < 100 or not progressed:
            return released


@agents.command()
@click.argument("username")
def disable(username: str) -> None:
    """Stop an agent from signing in; revokes their tokens."""
    _set_disabled(username, True)


@agents.command()
@click.argument("username")
def enable(username: str) -> None:
    """Let a disabled agent sign in again."""
    _set_disabled(username, False)


@agents.command()
@click.argument("username")
@password_stdin_option
def passwd(username: str, password_stdin: bool) -> None:
    """Set an agent's password (asks twice, hidden, unless --password-stdin).

    Revokes every token of the agent: their open sockets close and they log in again."""
    _check_password_source(password_stdin)
    config = current_config()

    async def exists(store: Store) -> Agent:
        agent = await _agent(store, username)
        if agent.bot:  # it never logs in, and its API token is not revoked by a password
            raise Conflict(f"{username!r} is an API token's bot agent, which has no password "
                           "(see 'customer-service tokens')")
        return agent

    with_store(config, exists)  # fail before asking for a password nobody can use
    hashed = hash_password(_read_password(password_stdin), n=config.auth.scrypt_n)

    async def work(store: Store) -> tuple[Agent, str]:
        return await store.set_agent_password(username, hashed), await store.deployment_token()

    agent, deployment = with_store(config, work)
    console().print(f"Password changed for [bold]{agent.username}[/bold]; "
                    "their tokens are revoked.")
    _close_sockets_now(config, deployment, agent)


@agents.command()
@click.argument("username")
@click.option("--label", default="cli", show_default=True,
              help="What the token is for, to recognise it later.")
@click.option("--ttl-hours", type=click.FloatRange(min=0),
              help="Lifetime in hours; 0 never expires [default: [auth] token_ttl_hours].")
def token(username: str, label: str, ttl_hours: float | None) -> None:
    """Issue a bearer token for an agent's socket and API access.

    The token is printed once on stdout (details on stderr) and only its hash is
    stored, so capture it:

    \b
        TOKEN=$(customer-service agents token alice --label ops-script)
    """
    from customer_service.core.models import utc_now

    config = current_config()
    hours = config.auth.token_ttl_hours if ttl_hours is None else ttl_hours
    expires_at: datetime | None = utc_now() + timedelta(hours=hours) if hours > 0 else None
    secret = new_token()

    async def work(store: Store) -> Agent:
        agent = await _agent(store, username)
        if agent.bot:
            raise Conflict(f"{username!r} is an API token's bot agent, which cannot log in "
                           "(see 'customer-service tokens')")
        if agent.disabled:
            raise Conflict(f"agent {username!r} is disabled "
                           f"(enable it with 'customer-service agents enable {username}')")
        await store.add_agent_token(agent.id, token_hash(secret), label, expires_at)
        return agent

    agent = with_store(config, work)
    click.echo(secret)
    until = f"until {short_time(expires_at)} UTC" if expires_at else "with no expiry"
    click.echo(f"Token for {agent.username} (label {label!r}), valid {until}. "
               "It is shown only this once.", err=True)


@agents.command("tokens")
@click.argument("username")
@json_option
def tokens(username: str, as_json: bool) -> None:
    """List an agent's tokens: id, label, created, last used, expires (UTC).

    The id names a token for 'agents revoke-token'; the secret itself is never stored.
    Last use is noted at most once a minute."""
    from customer_service.core.models import AgentToken

    async def work(store: Store) -> tuple[Agent, list[AgentToken]]:
        agent = await _agent(store, username)
        return agent, await store.list_agent_tokens(agent.id)

    agent, found = with_store(current_config(), work)
    if as_json:
        from customer_service.cli.common import ts

        echo_json([{"id": t.id, "label": t.label, "created_at": ts(t.created_at),
                    "last_used_at": ts(t.last_used_at), "expires_at": ts(t.expires_at)}
                   for t in found])
        return
    if not found:
        console().print(f"{agent.username} has no tokens (none issued, or all revoked or "
                        "expired).")
        return
    from rich.table import Table

    table = Table("id", "label", "created (UTC)", "last used (UTC)", "expires (UTC)",
                  title=f"{len(found)} token(s) of {agent.username}", title_justify="left")
    for item in found:
        table.add_row(item.id, esc(item.label), short_time(item.created_at),
                      short_time(item.last_used_at) or "never",
                      short_time(item.expires_at) or "never")
    console().print(table)


@agents.command("revoke-token")
@click.argument("username")
@click.argument("token_id")
def revoke_token(username: str, token_id: str) -> None:
    """End one of an agent's tokens, named by its id from 'agents tokens'.

    Sockets opened with it close (at once on every instance with a bus).

    \b
        customer-service agents tokens alice
        customer-service agents revoke-token alice 3f9a1c0b7d2e
    """
    config = current_config()

    async def work(store: Store) -> tuple[Agent, str, str]:
        agent = await _agent(store, username)
        revoked = await store.revoke_agent_token_by_id(agent.id, token_id)
        return agent, revoked, await store.deployment_token()

    agent, revoked, deployment = with_store(config, work)
    console().print(f"Revoked token {revoked[:TOKEN_ID_LENGTH]} of "
                    f"[bold]{agent.username}[/bold].")
    _close_sockets_now(config, deployment, agent, revoked)
