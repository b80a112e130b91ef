"""``customer-service conversations ...``: read what visitors and agents said."""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from customer_service.cli.common import (
    console,
    conversation_dict,
    current_config,
    echo_json,
    esc,
    json_option,
    message_dict,
    print_table,
    short_time,
    visitor_dict,
    with_store,
)
from customer_service.cli.conversation_labels import label_values
from customer_service.cli.notes import note_dict, timeline_rows
from customer_service.core.models import ConversationStatus
from customer_service.errors import NotFound

if TYPE_CHECKING:
    from customer_service.core.models import (
        Agent,
        Conversation,
        ConversationSummary,
        StoredMessage,
        Visitor,
    )
    from customer_service.core.notes import Note
    from customer_service.storage.base import Store

PAGE = 1000


def _excerpt(text: str, width: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


async def _agents(store: Store) -> dict[int, Agent]:
    return {agent.id: agent for agent in await store.list_agents()}


def _agent_name(agent_id: int | None, agents: dict[int, Agent]) -> str:
    """The assigned agent as people know them: their name, not their id."""
    if agent_id is None:
        return ""
    agent = agents.get(agent_id)
    if agent is None:
        return f"agent {agent_id}"
    return agent.name


def _sender(message: StoredMessage) -> str:
    """``Vera (visitor)``; a system note is just ``system``."""
    role = str(message.sender_role)
    name = message.sender_name.strip()
    return role if not name or name == role else f"{name} ({role})"


@click.group()
def conversations() -> None:
    """List conversations, show their messages, label them."""


@conversations.command("list")
@click.option("--status", type=click.Choice([s.value for s in ConversationStatus]),
              help="Only conversations in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="At most this many, newest activity first.")
@click.option("--label", "labels", metavar="LABEL", multiple=True, callback=label_values,
              help="Only conversations with this label (repeat: with every one of them).")
@json_option
def list_conversations(status: str | None, limit: int, labels: list[str],
                       as_json: bool) -> None:
    """List conversations, newest activity first.

    \b
        customer-service conversations list --status open --limit 20
        customer-service conversations list --label billing --label vip
        customer-service conversations list --json | jq '.[].id'
    """
    wanted = ConversationStatus(status) if status else None

    async def work(store: Store) -> tuple[list[ConversationSummary], dict[int, Agent]]:
        return (await store.list_conversations(wanted, limit, labels=labels),
                await _agents(store))

    found, agents = with_store(current_config(), work)
    if as_json:
        echo_json([{**conversation_dict(s.conversation), "visitor": visitor_dict(s.visitor),
                    "last_message": message_dict(s.last_message) if s.last_message else None,
                    "labels": list(s.labels)}
                   for s in found])
        return
    from rich.table import Table

    table = Table(title=f"{len(found)} conversation(s)", title_justify="left")
    with_labels = any(s.labels for s in found)  # the column only when there is something
    for column in ("id", "status", "visitor", "agent", *(("labels",) if with_labels else ()),
                   "msgs", "unread", "updated (UTC)", "last message"):
        # narrow columns keep their width; text ones wrap
        table.add_column(column, no_wrap=column not in ("visitor", "agent", "labels",
                                                        "last message"))
    for summary in found:
        conv, visitor, last = summary.conversation, summary.visitor, summary.last_message
        who = visitor.name or visitor.email or f"visitor {visitor.id}"
        table.add_row(str(conv.id), str(conv.status), esc(who),
                      esc(_agent_name(conv.assigned_to, agents)),
                      *((esc(", ".join(summary.labels)),) if with_labels else ()),
                      str(conv.last_seq), str(conv.unread), short_time(conv.updated_at),
                      esc(f"{last.sender_name}: {_excerpt(last.content)}") if last else "")
    print_table(table)


@conversations.command()
@click.argument("conversation_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
@json_option
def show(conversation_id: int, as_json: bool) -> None:
    """Show one conversation and all its messages, with the agents' private notes.

    \b
        customer-service conversations show 42
        customer-service conversations show 42 --json
    """

    async def work(store: Store) -> tuple[Conversation, Visitor | None, list[StoredMessage],
                                          Agent | None, list[str], list[Note]]:
        conv = await store.get_conversation(conversation_id)
        if conv is None:
            raise NotFound(f"no conversation {conversation_id}")
        visitor = await store.get_visitor(conv.visitor_id)
        agent = None if conv.assigned_to is None else await store.get_agent(conv.assigned_to)
        labels = await store.conversation_labels(conversation_id)
        messages: list[StoredMessage] = []
        while True:
            page = await store.messages_after(conversation_id,
                                              messages[-1].seq if messages else 0, PAGE)
            messages += page
            if len(page) < PAGE:
                return (conv, visitor, messages, agent, labels,
                        await store.list_notes(conversation_id))

    conv, visitor, messages, agent, labels, notes = with_store(current_config(), work)
    if as_json:
        data: dict[str, Any] = {**conversation_dict(conv),
                                "visitor": visitor_dict(visitor) if visitor else None,
                                "labels": labels,
                                "messages": [message_dict(m) for m in messages],
                                "notes": [note_dict(n) for n in notes]}
        echo_json(data)
        return
    from rich.table import Table

    out = console()
    who = "unknown visitor"
    if visitor:
        who = " ".join(part for part in (visitor.name, f"<{visitor.email}>" if visitor.email
                                         else "", f"on {visitor.page}" if visitor.page else "")
                       if part) or f"visitor {visitor.id}"
    assigned = ""
    if conv.assigned_to is not None:
        assigned = f", agent {esc(_agent_name(conv.assigned_to, {agent.id: agent} if agent else {}))}"
    out.print(f"[bold]Conversation {conv.id}[/bold]: {conv.status}{assigned}, {esc(who)}, "
              f"started {short_time(conv.created_at)} UTC", soft_wrap=True)
    if labels:
        out.print(f"Labels: {esc(', '.join(labels))}", soft_wrap=True)
    title = f"{len(messages)} message(s)" + (f", {len(notes)} private note(s)" if notes else "")
    table = Table("seq", "time (UTC)", "from", "message", title=title, title_justify="left")
    for row in timeline_rows(messages, notes, _sender):
        table.add_row(*row)
    print_table(table, out)
