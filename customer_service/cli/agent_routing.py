"""``customer-service agents set NAME --capacity N``: how many open conversations
auto-assignment may give an agent (``[routing]``, ``core/assignment.py``).

Registered on the ``agents`` group by ``cli/app.py``. The value goes straight to the
database; running servers use it at their next assignment pass (within ``SWEEP_SECONDS``,
2 s), so a capacity raised makes room that waiting conversations fill by themselves.
"""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from customer_service.cli.common import console, current_config, esc, with_store
from customer_service.core.assignment import MAX_CAPACITY, parse_capacity
from customer_service.errors import BadRequest

if TYPE_CHECKING:
    from customer_service.core.assignment import AgentLoad
    from customer_service.storage.base import Store


def capacity_text(load: AgentLoad, default: int) -> str:
    """``2``, or ``5 (default)`` for an agent following ``[routing] default_capacity``."""
    return str(load.capacity) if load.capacity is not None else f"{default} (default)"


@click.command("set")
@click.argument("username")
@click.option("--capacity", metavar="N|default",
              help=f"Open conversations auto-assignment may give the agent (1-{MAX_CAPACITY}); "
                   "'default' follows [routing] default_capacity again.")
def set_agent(username: str, capacity: str | None) -> None:
    """Change an agent's settings: --capacity.

    \b
        customer-service agents set alice --capacity 2
        customer-service agents set alice --capacity default
    """
    if capacity is None:
        raise BadRequest("nothing to set: give --capacity N (or --capacity default)")
    value = parse_capacity(capacity)  # checked before the database is opened
    config = current_config()

    async def work(store: Store) -> AgentLoad:
        return await store.set_agent_capacity(username, value)

    load = with_store(config, work)
    shown = capacity_text(load, config.routing.default_capacity)
    console().print(f"Agent [bold]{load.username}[/bold] may hold {shown} open "
                    f"conversation(s); holds {load.open_count} now.")
    if config.routing.mode == "manual":
        console().print(esc('Auto-assignment is off ([routing] mode = "manual"): the '
                            "capacity applies once it is on."))
