"""MySQL migrations are re-runnable: a migration that stopped half-way (DDL commits
implicitly; the process died before the version row) runs again cleanly.

The first tests read statements only; the ``mysql`` ones run migrations on
MariaDB, stop them half-way by hand and migrate again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from customer_service.config import StorageConfig
from customer_service.errors import StorageError
from customer_service.storage import _sql_ddl, _sql_schema
from customer_service.storage._sql import MYSQL, Tx
from customer_service.storage._sql_ddl import SchemaObject
from customer_service.storage._sql_schema import Migration, split_statements
from customer_service.storage.mysql import MysqlStore, open_mysql_store

AdminSql = Callable[..., list[tuple[object, ...]]]


# --- which statements are checked, and for what -----------------------------

def objects(statement: str) -> list[tuple[str, str | None, str, str, bool]]:
    return [(o.kind, o.schema, o.table, o.name, o.exists_after)
            for o in _sql_ddl.schema_objects(statement)]


@pytest.mark.parametrize(("statement", "expected"), [
    ("ALTER TABLE conversations ADD COLUMN needs_agent TINYINT NOT NULL DEFAULT 0",
     [("column", None, "conversations", "needs_agent", True)]),
    ("alter table `my table` add `key` int, add column if not exists b int",
     [("column", None, "my table", "key", True), ("column", None, "my table", "b", True)]),
    ("ALTER TABLE other_db.t ADD c DECIMAL(10, 2) NOT NULL DEFAULT 0, ADD INDEX t_c (c, id)",
     [("column", "other_db", "t", "c", True), ("index", "other_db", "t", "t_c", True)]),
    ("ALTER TABLE t ADD UNIQUE KEY t_u (a), ADD FULLTEXT t_f (b), ADD PRIMARY KEY (id)",
     [("index", None, "t", "t_u", True), ("index", None, "t", "t_f", True),
      ("index", None, "t", "PRIMARY", True)]),
    ("ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (a) REFERENCES u (id) ON DELETE CASCADE",
     [("constraint", None, "t", "t_fk", True)]),
    ("ALTER TABLE t DROP COLUMN a, DROP b, DROP INDEX t_i, DROP FOREIGN KEY t_fk,"
     " DROP CHECK t_ck, DROP PRIMARY KEY",
     [("column", None, "t", "a", False), ("column", None, "t", "b", False),
      ("index", None, "t", "t_i", False), ("constraint", None, "t", "t_fk", False),
      ("constraint", None, "t", "t_ck", False), ("index", None, "t", "PRIMARY", False)]),
    ("ALTER TABLE t RENAME COLUMN a TO b",
     [("column", None, "t", "a", False), ("column", None, "t", "b", True)]),
    ("CREATE UNIQUE INDEX t_x ON t (x)", [("index", None, "t", "t_x", True)]),
    ("DROP INDEX t_x ON s.t", [("index", "s", "t", "t_x", False)]),
    ("CREATE TABLE IF NOT EXISTS t (id INT, KEY k (id))", [("table", None, "t", "t", True)]),
    ("DROP TABLE t", [("table", None, "t", "t", False)]),
    # A comment or a string mentioning commas and keywords changes nothing.
    ("ALTER TABLE t -- ADD COLUMN z, DROP y\n ADD COLUMN e ENUM('a, b', 'DROP x') /* , ADD w */",
     [("column", None, "t", "e", True)]),
])
def test_checked_statements(statement: str,
                            expected: list[tuple[str, str | None, str, str, bool]]) -> None:
    assert objects(statement) == expected


@pytest.mark.parametrize("statement", [
    "ALTER TABLE t MODIFY COLUMN a BIGINT NOT NULL",          # re-runnable as it is
    "ALTER TABLE t ADD INDEX (a)",                             # unnamed: cannot be checked
    "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u (id)",
    "ALTER TABLE t ADD CONSTRAINT CHECK (a > 0)",
    "ALTER TABLE t DROP COLUMN a, ADD COLUMN a INT",           # one name twice: says nothing
    "INSERT IGNORE INTO t (a) VALUES (1)",
    "UPDATE t SET a = 1 WHERE a = 0",
    "CREATE TEMPORARY TABLE t (a INT)",
    "DROP TABLE a, b",
])
def test_unchecked_statements(statement: str) -> None:
    assert objects(statement) == []


def test_two_clauses_on_one_name_leave_the_others_checked() -> None:
    assert objects("ALTER TABLE t DROP COLUMN a, ADD COLUMN a INT, ADD INDEX t_b (b)") == [
        ("index", None, "t", "t_b", True)]
    assert _sql_ddl.schema_objects("ALTER TABLE t ADD COLUMN c INT, ADD INDEX c (c)") == [
        SchemaObject("column", None, "t", "c", True), SchemaObject("index", None, "t", "c", True)]


_MODIFY = re.compile(r"ALTER TABLE \w+ MODIFY \w+ [^,]*$", re.IGNORECASE | re.DOTALL)
"""One column set to a given definition: the same result however often it runs."""
_FILL = re.compile(r"UPDATE (\w+) SET (\w+) = .* WHERE .*\b\2 IS NULL$", re.IGNORECASE | re.DOTALL)
"""A column filled where it is still NULL (``UPDATE ... WHERE`` the old value): a second run
finds nothing left to fill."""


def test_every_shipped_mysql_statement_is_checked_or_idempotent() -> None:
    """The rule, applied to the files we ship: each statement is checked by the
    runner or says IF NOT EXISTS (INSERT IGNORE for data) itself."""
    for migration in _sql_schema.load_migrations(MYSQL):
        for statement in migration.statements:
            assert (_sql_ddl.schema_objects(statement)
                    or "IF NOT EXISTS" in statement.upper()
                    or statement.upper().startswith("INSERT IGNORE")
                    or _MODIFY.match(statement) is not None
                    or _FILL.match(statement) is not None), (migration.name, statement)


# --- on MariaDB ----------------------------------------------------------------

ADDS = """
-- Test migration NEXT: one of each kind of statement that creates something.
ALTER TABLE conversations ADD COLUMN priority INT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN label VARCHAR(32) NULL,
    ADD KEY conversations_label (label, id);
CREATE INDEX conversations_priority ON conversations (priority, id);
CREATE TABLE scratch_notes (
    id              BIGINT NOT NULL PRIMARY KEY,
    conversation_id BIGINT NOT NULL,
    body            TEXT   NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
ALTER TABLE scratch_notes ADD CONSTRAINT scratch_notes_conversation_fk FOREIGN KEY (conversation_id)
    REFERENCES conversations (id);
ALTER TABLE messages ADD INDEX messages_stream (stream_id);
INSERT IGNORE INTO scratch_notes (id, conversation_id, body) SELECT id, id, 'migrated' FROM conversations;
"""

CHANGES = """
-- Test migration NEXT + 1: renames and removes what migration NEXT made.
ALTER TABLE conversations RENAME COLUMN label TO topic;
ALTER TABLE conversations DROP INDEX conversations_label;
ALTER TABLE scratch_notes DROP FOREIGN KEY scratch_notes_conversation_fk;
DROP INDEX conversations_priority ON conversations;
ALTER TABLE conversations DROP COLUMN priority;
DROP TABLE scratch_notes;
"""

SHIPPED = _sql_schema.load_migrations(MYSQL)
ALL = [m.version for m in SHIPPED]
NEXT = ALL[-1] + 1
EXTRA = [Migration(NEXT, f"{NEXT:04d}_test_adds.sql", tuple(split_statements(ADDS))),
         Migration(NEXT + 1, f"{NEXT + 1:04d}_test_changes.sql", tuple(split_statements(CHANGES)))]


def ship(monkeypatch: pytest.MonkeyPatch, migrations: list[Migration]) -> None:
    """Make ``migrate()`` see these migrations instead of the shipped files."""
    monkeypatch.setattr(_sql_schema, "load_migrations", lambda dialect: list(migrations))


def snapshot(admin: AdminSql, database: str) -> dict[str, list[tuple[object, ...]]]:
    """The schema (columns in their order, indexes, constraints), the versions and
    the rows a data statement wrote."""
    def rows(sql: str) -> list[tuple[object, ...]]:
        return admin(database, sql, database)

    tables = [str(row[0]) for row in rows(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s")]
    return {
        "columns": rows("SELECT table_name, ordinal_position, column_name, column_type,"
                        " is_nullable, column_default FROM information_schema.columns"
                        " WHERE table_schema = %s ORDER BY 1, 2"),
        "indexes": rows("SELECT table_name, index_name, seq_in_index, column_name, non_unique"
                        " FROM information_schema.statistics WHERE table_schema = %s"
                        " ORDER BY 1, 2, 3"),
        "constraints": rows("SELECT table_name, constraint_name, constraint_type"
                            " FROM information_schema.table_constraints"
                            " WHERE constraint_schema = %s ORDER BY 1, 2"),
        "versions": admin(database, "SELECT version FROM schema_migrations ORDER BY 1"),
        "notes": (admin(database,
                        "SELECT id, conversation_id, body FROM scratch_notes ORDER BY id")
                  if "scratch_notes" in tables else []),
    }


async def add_conversations(store: MysqlStore, count: int) -> list[int]:
    """Visitors with a conversation each, written with the columns every version has:
    today's ``current_conversation`` reads ``contact_id`` (version 5) to choose one, and
    ``create_visitor`` indexes the visitor for search (version 12)."""
    ids = []
    for i in range(count):
        def insert(tx: Tx, token: str = f"m-{i}") -> int:
            visitor_id = tx.insert("INSERT INTO visitors (token_hash, name, email, page,"
                                   " created_at) VALUES (?, '', '', '', 1)", (token,))
            return tx.insert(
                "INSERT INTO conversations (visitor_id, status, assigned_to, last_seq,"
                " agent_read_seq, visitor_read_seq, created_at, updated_at)"
                " VALUES (?, 'open', NULL, 0, 0, 0, 1, 1)", (visitor_id,))

        ids.append(await store._run(insert, write=True))
    return ids


@pytest.mark.mysql
async def test_shipped_migrations_run_again_without_their_version_rows(
        mysql_databases: Callable[[], StorageConfig], mysql_admin: AdminSql) -> None:
    """Version 2 (a plain ADD COLUMN) runs again after its row is lost, and then all
    of them: nothing fails, the versions are recorded again, column and data stay."""
    cfg = dataclasses.replace(mysql_databases(), mysql_pool_size=1)
    db = cfg.mysql_database
    async with open_mysql_store(cfg) as store:
        assert await store.migrate() == ALL
        (cid,) = await add_conversations(store, 1)
        await store.set_needs_agent(cid, True)
        before = snapshot(mysql_admin, db)

        mysql_admin(db, "DELETE FROM schema_migrations WHERE version = 2")
        assert await store.schema_version() == ALL[-1]
        assert await store.migrate() == [2]
        assert await store.schema_version() == ALL[-1]
        assert snapshot(mysql_admin, db) == before
        conversation = await store.get_conversation(cid)
        assert conversation is not None and conversation.needs_agent is True

        mysql_admin(db, "DELETE FROM schema_migrations")
        assert await store.migrate() == ALL
        assert snapshot(mysql_admin, db) == before
        assert await store.get_conversation(cid) == conversation
        assert await store.migrate() == []


@pytest.mark.mysql
@pytest.mark.parametrize("migration", [SHIPPED[-1], *EXTRA], ids=lambda m: m.name)
async def test_a_migration_stopped_after_any_statement_runs_again_cleanly(
        mysql_databases: Callable[[], StorageConfig], mysql_admin: AdminSql,
        monkeypatch: pytest.MonkeyPatch, migration: Migration) -> None:
    """For every k: the migrations before it applied, then its first k statements
    run by hand (a process died there), then ``migrate()``: it applies this version,
    and the schema (columns in order, indexes, constraints) and the data are exactly
    those of an uninterrupted run. A second ``migrate()`` does nothing. The newest
    shipped migration is tried too."""
    earlier = [m for m in [*SHIPPED, *EXTRA] if m.version < migration.version]

    @asynccontextmanager
    async def prepared() -> AsyncIterator[tuple[str, MysqlStore]]:
        cfg = dataclasses.replace(mysql_databases(), mysql_pool_size=1)
        async with open_mysql_store(cfg) as store:
            ship(monkeypatch, earlier)
            await store.migrate()
            await add_conversations(store, 2)
            ship(monkeypatch, [*earlier, migration])
            yield cfg.mysql_database, store

    async with prepared() as (db, store):
        assert await store.migrate() == [migration.version]
        reference = snapshot(mysql_admin, db)
    assert reference["versions"][-1] == (migration.version,)

    for done in range(len(migration.statements) + 1):
        async with prepared() as (db, store):
            mysql_admin(db, list(migration.statements[:done]) or "SELECT 1")
            assert await store.migrate() == [migration.version], done
            assert snapshot(mysql_admin, db) == reference, done
            assert await store.migrate() == []


@pytest.mark.mysql
async def test_a_statement_found_partly_applied_stops_the_migration(
        mysql_databases: Callable[[], StorageConfig], mysql_admin: AdminSql,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One ALTER TABLE is atomic, so finding one of its two columns means someone changed
    the schema by hand: migrate refuses with StorageError naming the statement, records
    nothing, and succeeds once the schema is put right."""
    statement = "ALTER TABLE conversations ADD COLUMN a INT NULL, ADD COLUMN b INT NULL"
    cfg = dataclasses.replace(mysql_databases(), mysql_pool_size=1)
    db = cfg.mysql_database
    async with open_mysql_store(cfg) as store:
        await store.migrate()
        ship(monkeypatch, [*SHIPPED, Migration(NEXT, f"{NEXT:04d}_two_columns.sql", (statement,))])
        mysql_admin(db, "ALTER TABLE conversations ADD COLUMN a INT NULL")
        with pytest.raises(StorageError, match="partly applied") as raised:
            await store.migrate()
        assert "ADD COLUMN b" in str(raised.value) and f"{NEXT:04d}_two_columns.sql" in str(raised.value)
        assert await store.schema_version() == ALL[-1]
        mysql_admin(db, "ALTER TABLE conversations DROP COLUMN a")
        assert await store.migrate() == [NEXT]
        columns = mysql_admin(db, "SELECT column_name FROM information_schema.columns"
                              " WHERE table_schema = %s AND table_name = 'conversations'"
                              " AND column_name IN ('a', 'b') ORDER BY 1", db)
        assert columns == [("a",), ("b",)]
