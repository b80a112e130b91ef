"""``customer-service webhooks add|list|remove|test|deliveries|replay`` (docs/webhooks.md).

Webhooks are managed here only (no REST). A bad URL, an unknown event, an empty secret or
an unknown id each end in one ``Error: ...`` line naming the option. ``test`` sends a
``ping`` from this process and prints the receiver's answer; ``replay`` puts dead letters
back in the queue, and the server sends them.
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
from customer_service.errors import BadRequest, NotFound

if TYPE_CHECKING:
    from customer_service.core.webhooks import Webhook, WebhookDelivery
    from customer_service.server.webhook_sender import Answer
    from customer_service.storage.base import Store

EVENTS_HELP = ("Comma-separated events: message.created, conversation.created, "
               "conversation.assigned, conversation.closed, campaign.finished.")


@click.group()
def webhooks() -> None:
    """Webhooks: signed HTTP POSTs to your systems when the chat changes."""


def webhook_dict(hook: Webhook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url, "events": list(hook.events),
            "disabled": hook.disabled, "created_at": ts(hook.created_at)}


def delivery_dict(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"id": delivery.id, "webhook_id": delivery.webhook_id,
            "event_id": delivery.event_id, "type": delivery.event_type,
            "conversation_id": delivery.conversation_id, "state": str(delivery.state),
            "attempts": delivery.attempts, "created_at": ts(delivery.created_at),
            "next_attempt_at": ts(delivery.next_attempt_at)
            if str(delivery.state) == "pending" else None,
            "last_status": delivery.last_status, "last_error": delivery.last_error,
            "delivered_at": ts(delivery.delivered_at),
            "attempt_log": [{"at": ts(a.at), "status": a.status, "error": a.error,
                             "duration_ms": a.duration_ms} for a in delivery.log]}


def _webhook_id(value: str, option: str = "ID") -> int:
    if not value.isdigit() or not 0 < int(value) < 2**63:
        raise BadRequest(f"{option}: {value!r} is not a webhook id (see 'customer-service "
                         "webhooks list')")
    return int(value)


def _known(exc: NotFound, option: str = "ID") -> NotFound:
    return NotFound(f"{option}: {exc.message} (see 'customer-service webhooks list')")


@webhooks.command("add")
@click.argument("url")
@click.option("--events", required=True, metavar="EVENTS", help=EVENTS_HELP)
@click.option("--secret", metavar="SECRET",
              help="The signing secret (default: a new random whsec_... printed once).")
def add(url: str, events: str, secret: str | None) -> None:
    """Send EVENTS to URL, signed with a secret.

    \b
        customer-service webhooks add https://crm.example.com/hooks \\
            --events message.created,conversation.closed
    """
    from customer_service.core.webhooks import check_secret, check_url, new_secret, parse_events
    from customer_service.server.webhook_sender import check_sendable

    checked_url = check_sendable(check_url(url))
    names = parse_events(events)
    key = new_secret() if secret is None else check_secret(secret)

    async def work(store: Store) -> Webhook:
        return await store.add_webhook(checked_url, names, key)

    hook = with_store(current_config(), work)
    out = console()
    out.print(f"Added webhook {hook.id}: {esc(hook.url)} ({', '.join(hook.events)}).",
              highlight=False)
    if secret is None:
        out.print(f"Secret (shown once; verify X-Webhook-Signature with it): {hook.secret}",
                  highlight=False, soft_wrap=True)


@webhooks.command("list")
@json_option
def list_webhooks(as_json: bool) -> None:
    """List the webhooks (secrets are not shown).

    \b
        customer-service webhooks list --json
    """

    async def work(store: Store) -> list[Webhook]:
        return await store.list_webhooks()

    found = with_store(current_config(), work)
    if as_json:
        echo_json([webhook_dict(h) for h in found])
        return
    out = console()
    if not found:
        out.print("No webhooks yet: add one with 'customer-service webhooks add URL --events "
                  "...'.", highlight=False)
        return
    from rich.table import Table

    table = Table(title=f"{len(found)} webhook{'s' if len(found) != 1 else ''}",
                  title_justify="left")
    for column in ("id", "url", "events", "added (UTC)"):
        table.add_column(column, overflow="fold")
    for hook in found:
        table.add_row(str(hook.id), esc(hook.url), ", ".join(hook.events),
                      short_time(hook.created_at))
    print_table(table, out)


@webhooks.command("remove")
@click.argument("webhook_id", metavar="ID")
def remove(webhook_id: str) -> None:
    """Remove a webhook and its queued, delivered and dead events."""
    wanted = _webhook_id(webhook_id)

    async def work(store: Store) -> Webhook:
        try:
            return await store.remove_webhook(wanted)
        except NotFound as exc:
            raise _known(exc) from None

    hook = with_store(current_config(), work)
    console().print(f"Removed webhook {hook.id} ({esc(hook.url)}).", highlight=False)


@webhooks.command("test")
@click.argument("webhook_id", metavar="ID")
def test(webhook_id: str) -> None:
    """Send a signed ping event now and print the answer: status, time, first bytes."""
    wanted = _webhook_id(webhook_id)
    config = current_config()

    async def work(store: Store) -> tuple[str, Answer]:
        from datetime import UTC, datetime

        from customer_service.core.webhooks import PING, event_body, new_event_id
        from customer_service.server.webhook_sender import http_client, post_event

        hook = await store.get_webhook(wanted)
        if hook is None:
            raise _known(NotFound(f"no webhook with id {wanted}"))
        event_id = new_event_id()
        body = event_body(event_id, PING, datetime.now(UTC), {"webhook_id": hook.id})
        async with http_client(config.webhooks) as client:
            return hook.url, await post_event(client, hook.url, hook.secret, event_id, body,
                                              timeout=config.webhooks.timeout)

    from customer_service.core.webhooks import printable

    url, answer = with_store(config, work)
    out = console()
    if answer.status is None:
        out.print(f"No answer from {esc(url)} after {answer.duration_ms} ms: "
                  f"{esc(printable(answer.error))}", highlight=False)
        raise SystemExit(1)
    out.print(f"{esc(url)} answered HTTP {answer.status} in {answer.duration_ms} ms.",
              highlight=False)
    text = printable(answer.preview[:200].decode("utf-8", "replace"))
    if text:
        out.print(f"Body: {esc(text)}", highlight=False, soft_wrap=True)
    if not 200 <= answer.status <= 299:
        raise SystemExit(1)


@webhooks.command("deliveries")
@click.option("--failed", is_flag=True, help="Only dead letters and events being retried.")
@click.option("--webhook", "webhook_id", metavar="ID", help="Only this webhook's.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Newest first, at most this many.")
@json_option
def deliveries(failed: bool, webhook_id: str | None, limit: int, as_json: bool) -> None:
    """List events sent, queued and dead, newest first, with their attempts.

    \b
        customer-service webhooks deliveries --failed
        customer-service webhooks deliveries --webhook 2 --json
    """
    wanted = None if webhook_id is None else _webhook_id(webhook_id, "--webhook")

    async def work(store: Store) -> list[WebhookDelivery]:
        if wanted is not None and await store.get_webhook(wanted) is None:
            raise _known(NotFound(f"no webhook with id {wanted}"), "--webhook")
        return await store.list_webhook_deliveries(failed=failed, webhook_id=wanted,
                                                   limit=limit)

    found = with_store(current_config(), work)
    if as_json:
        echo_json([delivery_dict(d) for d in found])
        return
    out = console()
    if not found:
        out.print("No failed deliveries." if failed else "No deliveries.", highlight=False)
        return
    from rich import box
    from rich.table import Table

    table = Table(title=f"{len(found)} deliver{'y' if len(found) == 1 else 'ies'}",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("event", no_wrap=True)
    table.add_column("hook", no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("conv.", no_wrap=True)
    table.add_column("state (tries)", overflow="fold")
    table.add_column("at (UTC)", overflow="fold")
    table.add_column("last answer", overflow="fold", ratio=1)
    from customer_service.core.webhooks import printable

    for d in found:  # printable: rows a receiver's words were kept in before it was used
        last = printable(d.last_error) or ("" if d.last_status is None
                                           else f"HTTP {d.last_status}")
        moment = d.delivered_at or (d.log[0].at if d.log else d.created_at)
        table.add_row(d.event_id, str(d.webhook_id), d.event_type,
                      "" if d.conversation_id is None else str(d.conversation_id),
                      f"{d.state} ({d.attempts})", short_time(moment)[5:], esc(last[:120]))
    print_table(table, out)


@webhooks.command("replay")
@click.argument("event_id", required=False)
@click.option("--all-failed", is_flag=True, help="Every dead letter (of --webhook if given).")
@click.option("--webhook", "webhook_id", metavar="ID", help="Only this webhook's.")
def replay(event_id: str | None, all_failed: bool, webhook_id: str | None) -> None:
    """Queue dead letters again: one event (EVENT_ID) or --all-failed. The server sends them.

    \b
        customer-service webhooks replay evt_2f1c...
        customer-service webhooks replay --all-failed --webhook 2
    """
    if (event_id is None) == (not all_failed):
        raise BadRequest("replay: give an EVENT_ID or --all-failed (not both)")
    wanted = None if webhook_id is None else _webhook_id(webhook_id, "--webhook")

    async def work(store: Store) -> int:
        try:
            return await store.replay_webhook_deliveries(event_id, wanted)
        except NotFound as exc:
            if exc.message.startswith("no webhook with id"):
                raise _known(exc, "--webhook") from None
            raise NotFound(f"EVENT_ID: {exc.message} (see 'customer-service webhooks "
                           "deliveries --failed')") from None

    count = with_store(current_config(), work)
    console().print(f"Queued {count} dead letter{'s' if count != 1 else ''} again."
                    if count else "Nothing to replay: no dead letter matched.", highlight=False)
