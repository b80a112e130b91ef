"""Several writers on one MySQL database: two (or more) independent ``MysqlStore``
pools on the same database, as two server instances (or workers) would have.

Every test races real transactions through separate pools; what it checks is
read back from the database afterwards, never taken from the callers alone.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
import trio

from customer_service.config import StorageConfig
from customer_service.core.models import AppendResult, ConversationStatus, NewMessage, Role
from customer_service.errors import Conflict
from customer_service.storage._sql import MYSQL as MYSQL_DIALECT
from customer_service.storage._sql import Tx
from customer_service.storage._sql_schema import load_migrations
from customer_service.storage.mysql import MysqlStore, open_mysql_store

SHIPPED_VERSIONS = [m.version for m in load_migrations(MYSQL_DIALECT)]

pytestmark = pytest.mark.mysql

TIMEOUT = 60
"""Every race below finishes in a few seconds; this bounds a hang."""


@pytest.fixture
async def pools(mysql_databases: Callable[[], StorageConfig]) -> AsyncIterator[list[MysqlStore]]:
    """Two pools on one fresh, migrated database."""
    cfg = mysql_databases()
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(open_mysql_store(cfg))
        two = await stack.enter_async_context(open_mysql_store(cfg))
        await one.migrate()
        yield [one, two]


async def new_conversations(store: MysqlStore, count: int, prefix: str = "v") -> list[int]:
    ids = []
    for i in range(count):
        visitor = await store.create_visitor(f"{prefix}-{i}", f"Visitor {i}", "", "")
        ids.append((await store.current_conversation(visitor.id)).id)
    return ids


def message(conversation_id: int, content: str, client_id: str | None = None,
            sender_id: int | None = None) -> NewMessage:
    return NewMessage(conversation_id=conversation_id, sender_role=Role.VISITOR,
                      sender_id=sender_id, sender_name="Vera", content=content,
                      client_id=client_id)


async def test_concurrent_appends_from_two_pools_give_dense_unique_seqs(
        pools: list[MysqlStore]) -> None:
    """2 pools x 20 tasks x 4 batches of 1-5 messages over 6 shared conversations,
    batches in random conversation order (several conversations per batch, some
    twice): each conversation ends with seqs 1..N, each message stored once, at the
    seq its caller was told, and ``last_seq`` = N."""
    one, two = pools
    conversations = await new_conversations(one, 6)
    rng = random.Random(20240611)
    plans: dict[tuple[int, int], list[list[NewMessage]]] = {}
    for pool in range(2):
        for task in range(20):
            batches = []
            for batch in range(4):
                size = rng.randint(1, 5)
                batches.append([
                    message(rng.choice(conversations), f"p{pool}-t{task}-b{batch}-m{i}",
                            client_id=f"p{pool}-t{task}-b{batch}-m{i}" if i % 2 else None,
                            sender_id=pool)
                    for i in range(size)])
            plans[pool, task] = batches
    sent = [m for batches in plans.values() for batch in batches for m in batch]
    results: list[AppendResult] = []

    async def run(store: MysqlStore, batches: list[list[NewMessage]]) -> None:
        for batch in batches:
            answer = await store.append_messages(batch)
            assert [r.message.content for r in answer] == [m.content for m in batch]
            assert [r.message.conversation_id for r in answer] == [
                m.conversation_id for m in batch]
            results.extend(answer)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for (pool, _task), batches in plans.items():
                nursery.start_soon(run, pools[pool], batches)

    assert not any(r.duplicate for r in results)
    told = {r.message.content: (r.message.conversation_id, r.message.seq) for r in results}
    assert len(told) == len(sent)
    expected_counts = Counter(m.conversation_id for m in sent)
    stored_contents: list[str] = []
    for cid in conversations:
        stored = await two.messages_after(cid, 0, limit=10_000)
        assert [m.seq for m in stored] == list(range(1, expected_counts[cid] + 1))
        assert all(told[m.content] == (cid, m.seq) for m in stored)
        stored_contents.extend(m.content for m in stored)
        conversation = await one.get_conversation(cid)
        assert conversation is not None and conversation.last_seq == expected_counts[cid]
    assert sorted(stored_contents) == sorted(m.content for m in sent)
    assert (await two.stats()).messages == len(sent)


async def test_resend_racing_through_two_pools_is_stored_once(pools: list[MysqlStore]) -> None:
    """The same (sender, client id) sent at once through both pools, each copy in a
    batch with a fresh message: the copy is stored once and both callers get that
    row (one with ``duplicate=True``); the fresh messages are all stored, once."""
    one, two = pools
    same, other = await new_conversations(one, 2)
    rounds = 25
    with trio.fail_after(TIMEOUT):
        for round_ in range(rounds):
            # Even rounds race into one conversation, odd rounds into two.
            targets = (same, same) if round_ % 2 == 0 else (same, other)
            go = trio.Event()
            answers: dict[int, list[AppendResult]] = {}

            async def send(index: int, store: MysqlStore, conversation_id: int,
                           go: trio.Event = go, answers: dict[int, list[AppendResult]] = answers,
                           round_: int = round_) -> None:
                await go.wait()
                answers[index] = await store.append_messages([
                    message(conversation_id, f"fresh {round_}/{index}"),
                    message(conversation_id, f"copy {round_}/{index}",
                            client_id=f"resend-{round_}", sender_id=7)])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, 0, one, targets[0])
                nursery.start_soon(send, 1, two, targets[1])
                await trio.sleep(0.005)
                go.set()

            copies = [answers[0][1], answers[1][1]]
            assert copies[0].message == copies[1].message
            assert sorted(c.duplicate for c in copies) == [False, True]
            original = copies[0].message
            found = await one.find_message(Role.VISITOR, 7, f"resend-{round_}")
            assert found == original
            stored = await two.messages_after(original.conversation_id, original.seq - 1,
                                              limit=1)
            assert stored == [original]

    by_content: Counter[str] = Counter()
    for cid in (same, other):
        stored = await one.messages_after(cid, 0, limit=10_000)
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
        by_content.update(m.content for m in stored)
    fresh = [c for c in by_content if c.startswith("fresh")]
    copies_stored = [c for c in by_content if c.startswith("copy")]
    assert len(fresh) == 2 * rounds and len(copies_stored) == rounds
    assert set(by_content.values()) == {1}
    assert (await one.stats()).messages == 3 * rounds


async def test_two_agents_accepting_at_once_exactly_one_wins(pools: list[MysqlStore]) -> None:
    """``set_conversation_state`` with ``expected`` from both pools at once, 50 rounds:
    one call succeeds, the other raises ``Conflict``, and the stored state is the
    winner's."""
    one, two = pools
    ann = await one.create_agent("ann", "Ann", "h")
    bob = await two.create_agent("bob", "Bob", "h")
    (cid,) = await new_conversations(one, 1)
    wins: Counter[int] = Counter()
    with trio.fail_after(TIMEOUT):
        for _ in range(50):
            go = trio.Event()
            outcomes: dict[int, object] = {}

            async def accept(store: MysqlStore, agent_id: int, go: trio.Event = go,
                             outcomes: dict[int, object] = outcomes) -> None:
                await go.wait()
                try:
                    outcomes[agent_id] = await store.set_conversation_state(
                        cid, ConversationStatus.ASSIGNED, agent_id,
                        expected=(ConversationStatus.OPEN, None))
                except Conflict as exc:
                    outcomes[agent_id] = exc

            async with trio.open_nursery() as nursery:
                nursery.start_soon(accept, one, ann.id)
                nursery.start_soon(accept, two, bob.id)
                await trio.sleep(0.005)
                go.set()

            winners = [agent for agent, outcome in outcomes.items()
                       if not isinstance(outcome, Conflict)]
            losers = [agent for agent, outcome in outcomes.items()
                      if isinstance(outcome, Conflict)]
            assert len(winners) == 1 and len(losers) == 1
            stored = await one.get_conversation(cid)
            assert stored is not None
            assert (stored.status, stored.assigned_to) == (ConversationStatus.ASSIGNED,
                                                           winners[0])
            assert outcomes[winners[0]] == stored
            wins[winners[0]] += 1
            await two.set_conversation_state(cid, ConversationStatus.OPEN, None,
                                             expected=(ConversationStatus.ASSIGNED, winners[0]))
    assert sum(wins.values()) == 50


@pytest.mark.parametrize(("stores", "calls_each"), [(2, 1), (4, 3)])
async def test_concurrent_migrate_applies_each_migration_once(
        mysql_databases: Callable[[], StorageConfig], stores: int, calls_each: int) -> None:
    """``migrate()`` from several pools at once on a database that does not exist yet:
    every call succeeds, and each migration is applied by exactly one of them."""
    cfg = mysql_databases()
    async with AsyncExitStack() as stack:
        opened: list[MysqlStore] = []

        async def open_one() -> None:
            opened.append(await stack.enter_async_context(open_mysql_store(cfg)))

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for _ in range(stores):
                    nursery.start_soon(open_one)
            applied: list[list[int]] = []

            async def migrate(store: MysqlStore) -> None:
                applied.append(await store.migrate())

            async with trio.open_nursery() as nursery:
                for store in opened:
                    for _ in range(calls_each):
                        nursery.start_soon(migrate, store)

        assert len(applied) == stores * calls_each
        by_version: defaultdict[int, int] = defaultdict(int)
        for versions in applied:
            for version in versions:
                by_version[version] += 1
        assert dict(by_version) == dict.fromkeys(SHIPPED_VERSIONS, 1)
        assert [versions for versions in applied if versions] == [SHIPPED_VERSIONS]
        for store in opened:
            assert await store.schema_version() == SHIPPED_VERSIONS[-1]
            assert await store.migrate() == []
        visitor = await opened[-1].create_visitor("after", "", "", "")
        conversation = await opened[0].current_conversation(visitor.id)
        assert conversation.needs_agent is False


async def test_a_deadlock_between_pools_is_retried(pools: list[MysqlStore]) -> None:
    """Two units of work that lock two conversations in opposite orders, made to meet
    half-way: InnoDB picks a victim, the victim's pool runs it again, and both commit
    (no caller sees the deadlock)."""
    one, two = pools
    first, second = await new_conversations(one, 2)
    meet = threading.Barrier(2, timeout=5)
    runs: Counter[str] = Counter()

    def crossing(name: str, lock_first: int, lock_then: int) -> Callable[[Tx], int]:
        def work(tx: Tx) -> int:
            runs[name] += 1
            bump = "UPDATE conversations SET agent_read_seq = agent_read_seq + 1 WHERE id = ?"
            tx.execute(bump, (lock_first,))
            if runs[name] == 1:
                meet.wait()         # both hold their first row now
            tx.execute(bump, (lock_then,))
            return runs[name]

        return work

    answers: dict[str, int] = {}

    async def run(name: str, store: MysqlStore, work: Callable[[Tx], int]) -> None:
        answers[name] = await store._run(work, write=True)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "up", one, crossing("up", first, second))
            nursery.start_soon(run, "down", two, crossing("down", second, first))
    assert sorted(runs.values()) == [1, 2]
    assert answers == dict(runs)
    for cid in (first, second):
        conversation = await one.get_conversation(cid)
        assert conversation is not None and conversation.agent_read_seq == 2
