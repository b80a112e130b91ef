"""``conversations show`` lists the agents' private notes among the messages, marked."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from click.testing import Result

from customer_service.auth import token_hash
from customer_service.core.models import NewMessage, Role
from customer_service.storage.base import Store

CliRun = Callable[..., Result]
StoreCall = Callable[[Callable[[Store], Any]], Any]


def test_show_lists_notes_in_place_and_marked(run: CliRun, store_call: StoreCall) -> None:
    async def work(store: Store) -> int:
        ann = await store.create_agent("ann", "Ann [lead]", "h")
        vera = await store.create_visitor(token_hash("v"), "Vera", "", "/")
        cid = (await store.current_conversation(vera.id)).id
        await store.append_messages([NewMessage(cid, Role.VISITOR, vera.id, "Vera", "first")])
        await store.add_note(cid, ann.id, ann.name, "[red]between[/red] \\", client_id="n")
        await store.append_messages([NewMessage(cid, Role.VISITOR, vera.id, "Vera", "second")])
        return cid

    cid: int = store_call(work)
    result = run("conversations", "show", str(cid))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2 message(s), 1 private note(s)" in out
    assert "Ann [lead] (private note)" in out
    assert out.index("first") < out.index("[red]between[/red] \\") < out.index("second")

    data = json.loads(run("conversations", "show", str(cid), "--json").stdout)
    assert [m["content"] for m in data["messages"]] == ["first", "second"]
    (note,) = data["notes"]
    assert {k: note[k] for k in ("agent_name", "content", "after_seq", "private")} == {
        "agent_name": "Ann [lead]", "content": "[red]between[/red] \\", "after_seq": 1,
        "private": True}
    assert note["created_at"].endswith("Z")


def test_show_without_notes_says_nothing_of_them(run: CliRun, store_call: StoreCall) -> None:
    async def work(store: Store) -> int:
        vera = await store.create_visitor(token_hash("w"), "Walt", "", "/")
        cid = (await store.current_conversation(vera.id)).id
        await store.append_messages([NewMessage(cid, Role.VISITOR, vera.id, "Walt", "hi")])
        return cid

    cid: int = store_call(work)
    result = run("conversations", "show", str(cid))
    assert result.exit_code == 0 and "private note" not in result.output
    assert json.loads(run("conversations", "show", str(cid), "--json").stdout)["notes"] == []
