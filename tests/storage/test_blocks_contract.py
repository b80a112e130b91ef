"""The ``Store`` contract for blocks, on SQLite and MariaDB (see conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from customer_service.errors import NotFound
from customer_service.storage.base import Store


async def test_a_block_is_stored_listed_and_removed(store: Store) -> None:
    visitor = await store.create_visitor("hash-v", "Vera", "", "")
    soon = datetime.now(UTC) + timedelta(hours=1)
    by_visitor = await store.add_block(visitor_id=visitor.id, network=None, reason="spam",
                                       created_by="ann", expires_at=None)
    by_net = await store.add_block(visitor_id=None, network="2001:db8::/32", reason="",
                                   created_by="cli", expires_at=soon)
    both = await store.add_block(visitor_id=visitor.id, network="203.0.113.7/32",
                                 reason="abuse", created_by="ann", expires_at=None)
    assert (by_visitor.visitor_id, by_visitor.network, by_visitor.reason,
            by_visitor.created_by, by_visitor.expires_at) == (visitor.id, None, "spam", "ann",
                                                              None)
    assert by_net.network == "2001:db8::/32" and by_net.visitor_id is None
    # Milliseconds survive the round trip, as a UTC datetime.
    assert by_net.expires_at is not None
    assert abs(by_net.expires_at - soon) < timedelta(milliseconds=1)
    assert by_net.expires_at.tzinfo is not None
    assert await store.list_blocks(datetime.now(UTC)) == [by_visitor, by_net, both]
    assert await store.get_block(both.id) == both
    assert await store.remove_block(by_visitor.id) == by_visitor
    assert await store.get_block(by_visitor.id) is None
    assert [b.id for b in await store.list_blocks(None)] == [by_net.id, both.id]


async def test_expired_blocks_are_not_listed_as_active(store: Store) -> None:
    now = datetime.now(UTC)
    past = await store.add_block(visitor_id=None, network="10.0.0.0/8", reason="",
                                 created_by="cli", expires_at=now - timedelta(seconds=1))
    later = await store.add_block(visitor_id=None, network="10.1.0.0/16", reason="",
                                  created_by="cli", expires_at=now + timedelta(minutes=5))
    assert [b.id for b in await store.list_blocks(now)] == [later.id]
    assert [b.id for b in await store.list_blocks(now + timedelta(minutes=6))] == []
    assert [b.id for b in await store.list_blocks(None)] == [past.id, later.id]


async def test_unknown_visitor_and_unknown_block_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no visitor 999"):
        await store.add_block(visitor_id=999, network=None, reason="", created_by="cli",
                              expires_at=None)
    assert await store.list_blocks(None) == []
    with pytest.raises(NotFound, match="no block 42"):
        await store.remove_block(42)
    assert await store.get_block(42) is None


async def test_a_long_reason_and_many_blocks_fit(store: Store) -> None:
    reason = "被封锁的原因 " * 60  # 420 characters, not ASCII
    for i in range(300):
        await store.add_block(visitor_id=None, network=f"198.{i // 256}.{i % 256}.0/24",
                              reason=reason, created_by="cli", expires_at=None)
    listed = await store.list_blocks(datetime.now(UTC))
    assert len(listed) == 300 and listed[0].reason == reason
