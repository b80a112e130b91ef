"""Blocked visitors and networks, for both dialects (see ``core.blocks``)."""

from __future__ import annotations

from datetime import datetime

from customer_service.core.blocks import Block
from customer_service.errors import NotFound
from customer_service.storage._sql import Row, Tx, from_ms, now_ms, to_ms

_COLUMNS = "id, visitor_id, network, reason, created_by, created_at, expires_at"


def _block_from(row: Row) -> Block:
    return Block(id=int(row[0]), visitor_id=None if row[1] is None else int(row[1]),
                 network=row[2], reason=row[3], created_by=row[4],
                 created_at=from_ms(row[5]),
                 expires_at=None if row[6] is None else from_ms(row[6]))


def add_block(tx: Tx, visitor_id: int | None, network: str | None, *, reason: str,
              created_by: str, expires_at: datetime | None) -> Block:
    if visitor_id is None and network is None:
        raise ValueError("a block names a visitor, a network, or both")
    if visitor_id is not None and tx.one("SELECT 1 FROM visitors WHERE id = ?",
                                         (visitor_id,)) is None:
        raise NotFound(f"no visitor {visitor_id}")
    block_id = tx.insert(
        "INSERT INTO blocks (visitor_id, network, reason, created_by, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (visitor_id, network, reason, created_by, now_ms(),
         None if expires_at is None else to_ms(expires_at)))
    found = get_block(tx, block_id)
    assert found is not None  # inserted in this transaction
    return found


def get_block(tx: Tx, block_id: int) -> Block | None:
    row = tx.one(f"SELECT {_COLUMNS} FROM blocks WHERE id = ?", (block_id,))
    return None if row is None else _block_from(row)


def list_blocks(tx: Tx, now: datetime | None) -> list[Block]:
    """The blocks active at ``now`` (every block for None), by id."""
    if now is None:
        rows = tx.all(f"SELECT {_COLUMNS} FROM blocks ORDER BY id")
    else:
        rows = tx.all(f"SELECT {_COLUMNS} FROM blocks WHERE expires_at IS NULL"
                      " OR expires_at > ? ORDER BY id", (to_ms(now),))
    return [_block_from(row) for row in rows]


def remove_block(tx: Tx, block_id: int) -> Block:
    found = get_block(tx, block_id)
    if found is None:
        raise NotFound(f"no block {block_id}")
    tx.execute("DELETE FROM blocks WHERE id = ?", (block_id,))
    return found
