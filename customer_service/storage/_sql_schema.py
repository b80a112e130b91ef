"""Schema migrations for both dialects, and the write probe.

Migrations are files ``migrations/<dialect>/NNNN_name.sql`` (see that package),
applied in version order; each one's ``schema_migrations`` row is written after
its statements.

**SQLite** applies every pending migration in one transaction (its DDL is
transactional): a migration is all or nothing.

**MySQL/MariaDB** commit every DDL statement implicitly, so a migration can stop
half-way: the process dies after some statements and before the version row.
The next ``migrate()`` then runs the whole file again, and that must work. The
rule for a MySQL migration is therefore: *every statement is safe to run
again*. Plain MySQL 8 DDL (which has no ``ADD COLUMN IF NOT EXISTS``) is made so
by ``_sql_ddl.statement_applied``, which looks at ``information_schema`` before
each statement and skips it when its effect is already there:

- ``ALTER TABLE t ADD [COLUMN] c ...``: skipped when ``t`` has the column ``c``;
- ``ALTER TABLE t ADD {INDEX|KEY|UNIQUE|FULLTEXT|SPATIAL} i ...``,
  ``ADD PRIMARY KEY``, ``CREATE [UNIQUE] INDEX i ON t ...``: when the index exists;
- ``ALTER TABLE t ADD CONSTRAINT k ...``: when the constraint exists;
- ``ALTER TABLE t DROP [COLUMN] c``, ``DROP {INDEX|KEY} i``, ``DROP PRIMARY KEY``,
  ``DROP {FOREIGN KEY|CONSTRAINT|CHECK} k``, ``DROP INDEX i ON t``: when it is gone;
- ``ALTER TABLE t RENAME {COLUMN|INDEX|KEY} a TO b``: when ``a`` is gone and ``b`` exists;
- ``CREATE TABLE t``: when ``t`` exists; ``DROP TABLE t``: when it does not.

One ``ALTER TABLE`` is one atomic statement, so its checkable clauses agree:
all applied (skip it) or none (run it). When they disagree the schema was
changed by hand, and the migration stops with ``StorageError`` naming the
statement rather than guess. A name that two clauses of one statement touch
(drop and re-add ``c``) tells nothing and is left out of the decision.

What the runner cannot check must be re-runnable as written: name every index
and constraint (an unnamed ``ADD INDEX (c)`` would be added twice), and write
data changes so that a second run changes nothing (``INSERT IGNORE``,
``UPDATE ... WHERE`` the old value). ``MODIFY``/``CHANGE`` of a column to a
given definition are re-runnable as they are.

The checks see the schema as it is, not the history: within one migration,
never rename or remove what an earlier statement of the same migration creates
(re-run, that statement would create it again). Do that in the next migration.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from customer_service.errors import NotFound
from customer_service.storage._sql import Dialect, Tx, now_ms
from customer_service.storage._sql_ddl import statement_applied

logger = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: each ends with ``;`` at the end of a line."""
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line.rstrip())
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current).rstrip())
    return statements


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The migrations shipped for a dialect, oldest first (works inside a zipapp)."""
    folder = resources.files("customer_service.storage.migrations") / dialect.name
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None or not entry.is_file():
            continue
        found.append(Migration(int(match.group(1)), entry.name,
                               tuple(split_statements(entry.read_text(encoding="utf-8")))))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two {dialect.name} migrations share a version: {versions}")
    return found


def applied_versions(tx: Tx) -> set[int]:
    if tx.one(tx.dialect.table_exists, ("schema_migrations",)) is None:
        return set()
    return {int(row[0]) for row in tx.all("SELECT version FROM schema_migrations")}


def schema_version(tx: Tx) -> int:
    return max(applied_versions(tx), default=0)


def deployment_token(tx: Tx) -> str:
    """The random token migration 3 gave this database."""
    row = tx.one("SELECT token FROM deployment WHERE id = 1")
    if row is None:
        raise NotFound("this database has no deployment token; run customer-service db migrate")
    return str(row[0])


def probe_write(tx: Tx) -> None:
    """A write that matches no row: it needs the write lock (SQLite) and the UPDATE
    privilege (MySQL), and changes nothing."""
    tx.execute("UPDATE schema_migrations SET applied_at = applied_at WHERE version < 0")


def apply_pending(tx: Tx, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations not recorded yet, in order; return their versions."""
    applied = applied_versions(tx)
    done: list[int] = []
    for migration in migrations:
        if migration.version not in applied:
            apply_migration(tx, migration)
            done.append(migration.version)
    return done


NO_PAD_COLLATION = "utf8mb4_nopad_bin"
"""MariaDB's exact binary collation (trailing spaces count, as in SQLite); MySQL 8 calls
its own ``utf8mb4_0900_bin``. Migrations name MariaDB's; ``for_server`` translates."""


def for_server(tx: Tx, statement: str) -> str:
    """A MySQL-dialect statement as the server at hand spells it."""
    if NO_PAD_COLLATION not in statement:
        return statement
    row = tx.one("SELECT VERSION()")
    if row is not None and "mariadb" in str(row[0]).lower():
        return statement
    return statement.replace(NO_PAD_COLLATION, "utf8mb4_0900_bin")


def apply_migration(tx: Tx, migration: Migration) -> None:
    """Run a migration's statements, then record its version.

    Without transactional DDL (MySQL) a statement whose effect is already in
    the schema (an earlier run stopped half-way) is skipped; see the module
    docstring for the rule.
    """
    for written in migration.statements:
        statement = written if tx.dialect.transactional_ddl else for_server(tx, written)
        if not tx.dialect.transactional_ddl and statement_applied(tx, statement,
                                                                  migration.name):
            logger.info("migration %s: already applied, skipped: %s", migration.name,
                        " ".join(statement.split()))
            continue
        tx.script(statement)
    tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
               (migration.version, now_ms()))
