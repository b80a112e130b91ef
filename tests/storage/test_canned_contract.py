"""The ``Store`` contract for canned replies, run against every backend (see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from customer_service.core.canned import check_shortcut, check_text
from customer_service.errors import Conflict, NotFound
from customer_service.storage.base import Store


async def test_add_list_and_delete(store: Store) -> None:
    assert await store.list_canned_replies() == []
    refund = await store.add_canned_reply("refund", "Hi {visitor.name}, refunds take 5 days.")
    hello = await store.add_canned_reply("hello", "Hello! I am {agent.name}.")
    assert refund.id != hello.id
    assert (refund.shortcut, refund.text) == ("refund", "Hi {visitor.name}, refunds take 5 days.")
    listed = await store.list_canned_replies()
    assert [r.shortcut for r in listed] == ["hello", "refund"]  # by shortcut
    assert listed[1] == refund
    await store.delete_canned_reply("hello")
    assert [r.shortcut for r in await store.list_canned_replies()] == ["refund"]


async def test_a_taken_shortcut_is_a_conflict_and_changes_nothing(store: Store) -> None:
    await store.add_canned_reply("refund", "first")
    with pytest.raises(Conflict, match="'refund' exists already"):
        await store.add_canned_reply("refund", "second")
    assert [r.text for r in await store.list_canned_replies()] == ["first"]


async def test_deleting_an_unknown_shortcut_is_not_found(store: Store) -> None:
    await store.add_canned_reply("refund", "text")
    with pytest.raises(NotFound, match="'nope'"):
        await store.delete_canned_reply("nope")
    assert len(await store.list_canned_replies()) == 1


async def test_text_is_kept_exactly_long_and_unicode(store: Store) -> None:
    """Every character survives: 4000 of them, Chinese and emoji (4-byte UTF-8), line
    breaks, literal braces."""
    text = check_text("你好 {visitor.name|朋友} 😀\n{{literal}}\n" + "x" * 3950)
    shortcut = check_shortcut("Long_One-2")
    stored = await store.add_canned_reply(shortcut, text)
    (listed,) = await store.list_canned_replies()
    assert listed == stored
    assert listed.shortcut == "long_one-2" and listed.text == text


async def test_shortcuts_differ_by_every_character(store: Store) -> None:
    """The unique key compares exactly (no trailing-space or accent folding on MySQL)."""
    await store.add_canned_reply("ab", "one")
    await store.add_canned_reply("ab_", "two")
    await store.add_canned_reply("ab-", "three")
    assert len(await store.list_canned_replies()) == 3


async def test_replies_survive_reopening(
        open_test_store: Callable[[], AbstractAsyncContextManager[Store]]) -> None:
    async with open_test_store() as first:
        await first.migrate()
        await first.add_canned_reply("refund", "text")
    async with open_test_store() as second:
        await second.migrate()
        assert [r.shortcut for r in await second.list_canned_replies()] == ["refund"]
