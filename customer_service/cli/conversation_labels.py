"""``customer-service conversations label|unlabel ID LABEL...``: an admin's labels.

Registered on the ``conversations`` group by ``cli/app.py``. The labels go straight to
the database; dashboards open now show the change the next time they load the
conversation (the server announces changes made through it, not the CLI's).
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from customer_service.cli.common import console, current_config, echo_json, esc, json_option, with_store
from customer_service.core.labels import normalize_labels
from customer_service.errors import BadRequest

if TYPE_CHECKING:
    from customer_service.storage.base import Store


def label_values(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
                 ) -> list[str]:
    """Labels given on the command line in their one spelling, or a usage error naming
    the bad one (``--label`` of ``conversations list`` too)."""
    try:
        return normalize_labels(value)
    except BadRequest as exc:
        raise click.BadParameter(exc.message, ctx, param) from None


def _change(conversation_id: int, labels: list[str], *, add: bool, as_json: bool) -> None:
    async def work(store: Store) -> list[str]:
        if add:
            return await store.add_conversation_labels(conversation_id, labels)
        return await store.remove_conversation_labels(conversation_id, labels)

    now = with_store(current_config(), work)
    if as_json:
        echo_json({"conversation_id": conversation_id, "labels": now})
        return
    shown = ", ".join(now) if now else "none"
    console().print(f"Conversation {conversation_id} labels: {esc(shown)}.", soft_wrap=True)


_ID = click.argument("conversation_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
_LABELS = click.argument("labels", metavar="LABEL...", nargs=-1, required=True,
                         callback=label_values)


@click.command()
@_ID
@_LABELS
@json_option
def label(conversation_id: int, labels: list[str], as_json: bool) -> None:
    """Add labels to a conversation (it keeps the ones it has).

    A label is 1 to 32 letters (any script), digits, '-' and '_', beginning with a letter
    or a digit; it is stored case-folded (VIP is vip). At most 20 per conversation.

    \b
        customer-service conversations label 42 billing vip
        customer-service conversations label 42 退款 --json
    """
    _change(conversation_id, labels, add=True, as_json=as_json)


@click.command()
@_ID
@_LABELS
@json_option
def unlabel(conversation_id: int, labels: list[str], as_json: bool) -> None:
    """Remove labels from a conversation.

    Removing a label it does not have is no error.

    \b
        customer-service conversations unlabel 42 vip
    """
    _change(conversation_id, labels, add=False, as_json=as_json)
