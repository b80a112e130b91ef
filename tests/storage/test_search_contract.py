"""The ``Store`` contract for full-text search, run against every backend (see conftest.py):
SQLite's FTS5 trigram index and MariaDB's FULLTEXT over tokens (core/search.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from customer_service.config import StorageConfig
from customer_service.core.models import NewMessage, Role
from customer_service.core.search import (
    MESSAGE,
    VISITOR,
    VISITOR_HITS,
    SearchCursor,
    SearchHit,
    next_cursor,
    parse_query,
)
from customer_service.errors import BadRequest
from customer_service.storage import _sql_schema, _sql_search
from customer_service.storage._sql import Tx
from customer_service.storage.base import Store
from customer_service.storage.mysql import open_mysql_store
from tests.storage.conftest import AdminSql


def says(cid: int, content: str, role: Role = Role.VISITOR, name: str = "Vera") -> NewMessage:
    return NewMessage(cid, role, None, name, content)


async def conversation(store: Store, token: str, name: str = "Vera",
                       email: str = "") -> int:
    visitor = await store.create_visitor(f"hash-{token}", name, email, "/")
    return (await store.current_conversation(visitor.id)).id


async def find(store: Store, text: str, limit: int = 20) -> list[SearchHit]:
    return await store.search(parse_query(text), limit)


def messages(hits: list[SearchHit]) -> list[tuple[int, int]]:
    return [(hit.conversation_id, hit.seq) for hit in hits if hit.kind == MESSAGE]


async def test_an_english_word_finds_its_message_with_a_snippet(store: Store) -> None:
    cid = await conversation(store, "a")
    await store.append_messages([says(cid, "Hello there"),
                                 says(cid, "I would like a REFUND for order 1234, please"),
                                 says(cid, "Thanks!", Role.AGENT, "Alice")])
    hits = await find(store, "refund")
    assert messages(hits) == [(cid, 2)]
    hit = hits[0]
    assert (hit.role, hit.sender_name, hit.visitor_name) == (Role.VISITOR, "Vera", "Vera")
    assert hit.snippet == "I would like a REFUND for order 1234, please"
    assert [hit.snippet[a:b] for a, b in hit.highlights] == ["REFUND"]
    assert hit.created_at.tzinfo is not None
    assert messages(await find(store, "Refund 1234")) == [(cid, 2)]  # every term, any case
    assert messages(await find(store, "refund hello")) == []
    assert messages(await find(store, "thanks")) == [(cid, 3)]        # agents' words too


async def test_a_two_character_chinese_word_is_found(store: Store) -> None:
    cid = await conversation(store, "a")
    await store.append_messages([says(cid, "你好"), says(cid, "我要退款"),
                                 says(cid, "退款了吗?"), says(cid, "谢谢")])
    hits = await find(store, "退款")
    assert messages(hits) == [(cid, 3), (cid, 2)]
    assert [hits[1].snippet[a:b] for a, b in hits[1].highlights] == ["退款"]
    assert messages(await find(store, "款")) == [(cid, 3), (cid, 2)]


async def test_a_chinese_phrase_is_found_as_written(store: Store) -> None:
    cid = await conversation(store, "a")
    await store.append_messages([says(cid, "请问你们的退款政策是什么？"),
                                 says(cid, "政策上不能退款"), says(cid, "退款和政策")])
    assert messages(await find(store, "退款政策")) == [(cid, 1)]
    assert messages(await find(store, "不能退款")) == [(cid, 2)]
    assert messages(await find(store, "政策 退款")) == [(cid, 3), (cid, 2), (cid, 1)]
    assert messages(await find(store, "退款的政策")) == []


async def test_short_english_terms_and_query_characters_are_plain_text(store: Store) -> None:
    cid = await conversation(store, "a")
    await store.append_messages([says(cid, "my tv is broken"), says(cid, "order #5 arrived"),
                                 says(cid, 'he said "100% sure"')])
    assert messages(await find(store, "tv")) == [(cid, 1)]
    assert messages(await find(store, "#5 order")) == [(cid, 2)]
    assert messages(await find(store, '"100%')) == [(cid, 3)]
    assert messages(await find(store, "100% OR tv")) == []
    assert messages(await find(store, "*")) == []
    assert messages(await find(store, "tv\x00broken")) == [(cid, 1)]  # NUL: a space
    for odd in ('"""', "NEAR(tv broken)", "tv:zz", "^zz", "\U0001f600\U0001f600\U0001f600",
                "\u0301\u0301", "\\%_", "' OR 1=1 --"):
        assert messages(await find(store, odd)) == [], odd


async def test_visitors_are_found_by_name_and_email(store: Store) -> None:
    zhang = await conversation(store, "z", "张伟", "zhang.wei@example.com")
    other = await conversation(store, "o", "Olga", "olga@example.org")
    await store.append_messages([says(other, "hi", name="Olga")])
    hits = await find(store, "张伟")
    assert [(hit.kind, hit.conversation_id, hit.seq, hit.visitor_name) for hit in hits] == [
        (VISITOR, zhang, 0, "张伟")]
    assert hits[0].snippet == "张伟 <zhang.wei@example.com>"
    assert [hits[0].snippet[a:b] for a, b in hits[0].highlights] == ["张伟"]
    by_email = await find(store, "zhang.wei@example")
    assert [(hit.kind, hit.conversation_id) for hit in by_email] == [(VISITOR, zhang)]
    assert [hit.conversation_id for hit in await find(store, "example")] == [other, zhang]


async def test_a_first_page_has_a_few_visitors_then_the_messages(store: Store) -> None:
    cids = [await conversation(store, f"v{n}", f"Kim {n}") for n in range(VISITOR_HITS + 2)]
    await store.append_messages([says(cid, "ask Kim", name="Kim") for cid in cids])
    hits = await find(store, "kim", limit=3)
    assert [hit.kind for hit in hits] == [VISITOR] * VISITOR_HITS + [MESSAGE] * 3
    assert [hit.conversation_id for hit in hits[:VISITOR_HITS]] == cids[::-1][:VISITOR_HITS]
    following = next_cursor(hits, 3)
    assert following is not None
    rest = await store.search(parse_query("kim"), 10, before=following)
    assert {hit.kind for hit in rest} == {MESSAGE}
    assert len(messages(hits)) + len(rest) == len(cids)


async def test_a_renamed_visitor_is_found_by_the_new_name_only(store: Store) -> None:
    cid = await conversation(store, "a", "Anonymous", "")
    visitor = await store.get_conversation(cid)
    assert visitor is not None
    await store.update_visitor(visitor.visitor_id, "Bartholomew", "bart@example.com", None)
    assert [hit.conversation_id for hit in await find(store, "bartholomew")] == [cid]
    assert await find(store, "anonymous") == []


async def test_a_message_written_later_is_found_at_once(store: Store) -> None:
    cid = await conversation(store, "a")
    assert await find(store, "parcel") == []
    await store.append_messages([says(cid, "Where is my parcel?")])
    assert messages(await find(store, "parcel")) == [(cid, 1)]
    await store.append_messages([says(cid, "parcel found", Role.AI, "AI"),
                                 says(cid, "conversation closed: parcel", Role.SYSTEM, "system")])
    hits = await find(store, "parcel")
    assert [(hit.seq, hit.role) for hit in hits] == [
        (3, Role.SYSTEM), (2, Role.AI), (1, Role.VISITOR)]


async def test_pages_follow_each_other_newest_first(store: Store) -> None:
    first = await conversation(store, "a")
    second = await conversation(store, "b")
    for n in range(3):
        await store.append_messages([says(first, f"invoice {n}"),
                                     says(second, f"invoice {n} too")])
        # MySQL orders by (created_at in ms, conversation, seq): batches one millisecond
        # apart at least, or two of them may share a stamp and interleave by conversation.
        await trio.sleep(0.002)
    expected = [(second, 3), (first, 3), (second, 2), (first, 2), (second, 1), (first, 1)]
    assert messages(await find(store, "invoice", limit=10)) == expected
    seen: list[tuple[int, int]] = []
    query = parse_query("invoice")
    page = await store.search(query, 4)
    while True:
        assert len(page) <= 4
        seen += messages(page)
        following = next_cursor(page, 4)
        if following is None:
            break
        page = await store.search(query, 4, before=following)
    assert seen == expected
    assert await store.search(query, 4, before=SearchCursor(1, 999, 1)) == []  # no such message
    assert [hit.created_at for hit in await find(store, "invoice", limit=10)] == sorted(
        [hit.created_at for hit in await find(store, "invoice", limit=10)], reverse=True)
    with pytest.raises(BadRequest, match="limit"):
        await store.search(query, 0)


async def test_private_notes_are_not_searched(store: Store) -> None:
    cid = await conversation(store, "a")
    agent = await store.create_agent("alice", "Alice", "x")
    await store.append_messages([says(cid, "my zucchini order")])
    await store.add_note(cid, agent.id, "Alice", "zucchini guy is a VIP; secret discount 退款")
    assert messages(await find(store, "zucchini")) == [(cid, 1)]
    assert await find(store, "secret discount") == []
    assert await find(store, "退款") == []


async def test_rows_stored_before_the_index_are_indexed_by_the_migration(
        fresh_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database migrated up to the version before search, with messages and visitors in
    it (written by SQL: today's writes index as they go), then migrated: all are found,
    in batches on MySQL (small here, so there are several)."""
    shipped = _sql_schema.load_migrations
    monkeypatch.setattr(_sql_schema, "load_migrations",
                        lambda dialect: [m for m in shipped(dialect) if m.version < 12])
    await fresh_store.migrate()

    def old_rows(tx: Tx) -> int:
        cid = 0
        for n in range(3):
            visitor = tx.insert("INSERT INTO visitors (token_hash, name, email, page,"
                                " created_at) VALUES (?, ?, '', '/', 1000)",
                                (f"t{n}", f"李{n}娜"))
            cid = tx.insert("INSERT INTO conversations (visitor_id, status, last_seq,"
                            " created_at, updated_at) VALUES (?, 'open', 3, 1000, ?)",
                            (visitor, 1000 + n))
            tx.executemany("INSERT INTO messages (conversation_id, seq, sender_role,"
                           " sender_name, content, created_at) VALUES (?, ?, 'visitor', 'x',"
                           " ?, ?)", [(cid, seq, f"old message {seq} 退款", 1000 + n)
                                      for seq in (1, 2, 3)])
        return cid

    last = await fresh_store._run(old_rows, write=True)  # type: ignore[attr-defined]
    monkeypatch.setattr(_sql_schema, "load_migrations", shipped)
    monkeypatch.setattr(_sql_search, "BACKFILL_BATCH", 2)
    await fresh_store.migrate()
    assert len(messages(await find(fresh_store, "退款"))) == 9
    assert messages(await find(fresh_store, "old message 3", limit=1)) == [(last, 3)]
    assert len(await find(fresh_store, "娜")) == 3
    assert await fresh_store.backfill_search_index() == 0


@pytest.mark.mysql
async def test_an_instance_indexing_old_rows_is_not_waited_for(
        mysql_databases: Callable[[], StorageConfig], mysql_admin: AdminSql) -> None:
    """Another instance holding the backfill's named lock: this one's start does not wait
    (nothing indexed, still pending); once it is free, the backfill finishes the job."""
    cfg = mysql_databases()
    async with open_mysql_store(cfg) as store:
        await store.migrate()
        cid = await conversation(store, "a")
        await store.append_messages([says(cid, f"old parcel {n}") for n in range(5)])
        db = cfg.mysql_database
        mysql_admin(db, ["DELETE FROM message_search",
                         "UPDATE search_backfill SET after_a = 0, after_b = 0, done = 0"])
        assert mysql_admin(db, "SELECT GET_LOCK(%s, 0)", _sql_search.BACKFILL_LOCK) == [(1,)]
        assert await store.backfill_search_index() == 0
        assert await find(store, "parcel") == []
        mysql_admin(db, "SELECT RELEASE_LOCK(%s)", _sql_search.BACKFILL_LOCK)
        assert await store.backfill_search_index() == 5 + 1   # the messages and the visitor
        assert len(await find(store, "parcel")) == 5
