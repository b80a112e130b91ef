"""Reading MySQL DDL: what a statement creates or removes, and whether that is done.

``apply_migration`` (in ``_sql_schema``, where the rule for MySQL migrations is
written) asks ``statement_applied`` before each statement of a MySQL migration.
``schema_objects`` reads a statement (a small tokenizer: quoted names, strings
and comments cannot fool it) into the tables, columns, indexes and constraints
it creates or removes; ``statement_applied`` looks each one up in
``information_schema``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, cast

from customer_service.errors import StorageError
from customer_service.storage._sql import Tx

ObjectKind = Literal["table", "column", "index", "constraint"]


@dataclass(frozen=True, slots=True)
class SchemaObject:
    """Something a DDL statement creates (``exists_after`` True) or removes (False)."""

    kind: ObjectKind
    schema: str | None
    table: str
    name: str
    exists_after: bool

    @property
    def namespace(self) -> tuple[str, str, str]:
        """Columns and tables have names of their own; indexes share theirs with constraints."""
        kind = "key" if self.kind in ("index", "constraint") else self.kind
        return kind, self.table.lower(), self.name.lower()


_ObjectMaker = Callable[[ObjectKind, str, bool], SchemaObject]


def statement_applied(tx: Tx, statement: str, migration: str = "") -> bool:
    """True when the statement's checkable effects are all in the schema already.

    False when none is, or when nothing in it can be checked (it then runs).
    Raise ``StorageError`` when its effects are partly there.
    """
    objects = schema_objects(statement)
    if not objects:
        return False
    states = [_exists(tx, obj) == obj.exists_after for obj in objects]
    if all(states):
        return True
    if not any(states):
        return False
    described = ", ".join(
        f"{obj.kind} {obj.name} {'present' if _exists(tx, obj) else 'absent'}"
        for obj in objects)
    raise StorageError(
        f"migration {migration}: the statement {' '.join(statement.split())!r} is partly"
        f" applied ({described}); the schema was changed by hand: fix it, then migrate again")


def _exists(tx: Tx, obj: SchemaObject) -> bool:
    schema = "table_schema = COALESCE(?, DATABASE()) AND table_name = ?"
    if obj.kind == "table":
        sql = f"SELECT 1 FROM information_schema.tables WHERE {schema}"
        params: tuple[str | None, ...] = (obj.schema, obj.table)
    else:
        view, column = {"column": ("columns", "column_name"),
                        "index": ("statistics", "index_name"),
                        "constraint": ("table_constraints", "constraint_name")}[obj.kind]
        sql = (f"SELECT 1 FROM information_schema.{view} WHERE {schema}"
               f" AND LOWER({column}) = LOWER(?) LIMIT 1")
        params = (obj.schema, obj.table, obj.name)
    return tx.one(sql, params) is not None


_TokenKind = Literal["word", "quoted", "string", "punct"]


class _Token(NamedTuple):
    kind: _TokenKind
    text: str

    @property
    def keyword(self) -> str:
        """The upper-cased word; '' for anything else (a `quoted` name is never a keyword)."""
        return self.text.upper() if self.kind == "word" else ""

    @property
    def identifier(self) -> str | None:
        if self.kind == "word":
            return self.text
        if self.kind == "quoted":
            return self.text[1:-1].replace("``", "`")
        return None


_TOKEN = re.compile(r"""
    (?P<skip> \s+ | --(?=\s|$)[^\n]* | \#[^\n]* | /\*.*?\*/ )
  | (?P<quoted> `(?:[^`]|``)*` )
  | (?P<string> '(?:[^'\\]|\\.|'')*' | "(?:[^"\\]|\\.|"")*" )
  | (?P<word> [\w$]+ )
  | (?P<punct> . )
""", re.VERBOSE | re.DOTALL)


def _tokenize(statement: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _TOKEN.finditer(statement):
        kind = match.lastgroup
        if kind is not None and kind != "skip":
            tokens.append(_Token(cast(_TokenKind, kind), match.group()))
    return tokens


class _Reader:
    """A cursor over one statement's (or one clause's) tokens."""

    def __init__(self, tokens: Sequence[_Token]) -> None:
        self._tokens = tokens
        self._at = 0

    def peek(self, ahead: int = 0) -> _Token | None:
        at = self._at + ahead
        return self._tokens[at] if at < len(self._tokens) else None

    def keyword(self, ahead: int = 0) -> str:
        token = self.peek(ahead)
        return "" if token is None else token.keyword

    def accept(self, *words: str) -> bool:
        """Consume ``words`` when the next tokens are exactly those keywords."""
        if all(self.keyword(i) == word for i, word in enumerate(words)):
            self._at += len(words)
            return True
        return False

    def accept_any(self, *words: str) -> str:
        word = self.keyword()
        if word and word in words:
            self._at += 1
            return word
        return ""

    def name(self) -> str | None:
        """The next identifier, unless it is punctuation or the end."""
        token = self.peek()
        name = None if token is None else token.identifier
        if name is not None:
            self._at += 1
        return name

    def table(self) -> tuple[str | None, str] | None:
        """``name`` or ``schema.name``."""
        first = self.name()
        if first is None:
            return None
        token = self.peek()
        if token is not None and token.text == ".":
            self._at += 1
            second = self.name()
            return None if second is None else (first, second)
        return None, first

    def at_end(self) -> bool:
        return self._at >= len(self._tokens)

    def clauses(self) -> list[list[_Token]]:
        """The rest, split at commas outside parentheses."""
        clauses: list[list[_Token]] = [[]]
        depth = 0
        for token in self._tokens[self._at:]:
            if token.kind == "punct" and token.text == "(":
                depth += 1
            elif token.kind == "punct" and token.text == ")":
                depth -= 1
            elif token.kind == "punct" and token.text == "," and depth == 0:
                clauses.append([])
                continue
            clauses[-1].append(token)
        self._at = len(self._tokens)
        return [clause for clause in clauses if clause]


_ADD_NOT_A_COLUMN = {"CHECK", "FOREIGN", "PARTITION", "PERIOD", "SYSTEM"}
_DROP_NOT_A_COLUMN = {"PARTITION", "PERIOD", "SYSTEM", "DEFAULT"}
_INDEX_KINDS = ("UNIQUE", "FULLTEXT", "SPATIAL")


def schema_objects(statement: str) -> list[SchemaObject]:
    """What a MySQL DDL statement creates or removes, as far as it can be checked.

    Empty for anything else (data changes, ``MODIFY``, unnamed indexes...).
    """
    reader = _Reader(_tokenize(statement))
    found: list[SchemaObject]
    if reader.accept("ALTER"):
        found = _alter_table(reader)
    elif reader.accept("CREATE"):
        found = _create(reader)
    elif reader.accept("DROP"):
        found = _drop(reader)
    else:
        return []
    touched = Counter(obj.namespace for obj in found)
    return [obj for obj in found if touched[obj.namespace] == 1]


def _alter_table(reader: _Reader) -> list[SchemaObject]:
    while reader.accept_any("ONLINE", "IGNORE"):
        pass
    if not reader.accept("TABLE"):
        return []
    reader.accept("IF", "EXISTS")
    table = reader.table()
    if table is None:
        return []
    schema, name = table
    found: list[SchemaObject] = []
    for clause in reader.clauses():
        found.extend(_alter_clause(_Reader(clause), schema, name))
    return found


def _alter_clause(reader: _Reader, schema: str | None, table: str) -> list[SchemaObject]:
    def obj(kind: ObjectKind, name: str, exists_after: bool) -> SchemaObject:
        return SchemaObject(kind, schema, table, name, exists_after)

    if reader.accept("ADD"):
        return _added(reader, obj)
    if reader.accept("DROP"):
        return _dropped(reader, obj)
    if reader.accept("RENAME"):
        kind: ObjectKind | None = (
            "column" if reader.accept("COLUMN")
            else "index" if reader.accept_any("INDEX", "KEY") else None)
        old = reader.name() if kind is not None else None
        new = reader.name() if old is not None and reader.accept("TO") else None
        if kind is None or old is None or new is None:
            return []
        return [obj(kind, old, False), obj(kind, new, True)]
    return []


def _added(reader: _Reader, obj: _ObjectMaker) -> list[SchemaObject]:
    if reader.accept("PRIMARY", "KEY"):
        return [obj("index", "PRIMARY", True)]
    if reader.accept("CONSTRAINT"):
        reader.accept("IF", "NOT", "EXISTS")
        if reader.keyword() in {"PRIMARY", "UNIQUE", "FOREIGN", "CHECK"}:
            return []           # unnamed
        name = reader.name()
        if name is None:
            return []
        if reader.accept("PRIMARY", "KEY"):
            return [obj("index", "PRIMARY", True)]
        return [obj("constraint", name, True)]
    kind: ObjectKind = "column"
    if reader.accept_any("INDEX", "KEY"):
        kind = "index"
    elif reader.accept_any(*_INDEX_KINDS):
        reader.accept_any("INDEX", "KEY")
        kind = "index"
    elif reader.keyword() in _ADD_NOT_A_COLUMN:
        return []
    else:
        reader.accept("COLUMN")
    reader.accept("IF", "NOT", "EXISTS")
    if kind == "index" and reader.keyword() == "USING":
        return []               # unnamed
    name = reader.name()
    return [] if name is None else [obj(kind, name, True)]


def _dropped(reader: _Reader, obj: _ObjectMaker) -> list[SchemaObject]:
    if reader.accept("PRIMARY", "KEY"):
        return [obj("index", "PRIMARY", False)]
    kind: ObjectKind = "column"
    if reader.accept_any("INDEX", "KEY"):
        kind = "index"
    elif reader.accept("FOREIGN", "KEY") or reader.accept_any("CONSTRAINT", "CHECK"):
        kind = "constraint"
    elif reader.keyword() in _DROP_NOT_A_COLUMN:
        return []
    else:
        reader.accept("COLUMN")
    reader.accept("IF", "EXISTS")
    name = reader.name()
    return [] if name is None else [obj(kind, name, False)]


def _create(reader: _Reader) -> list[SchemaObject]:
    if reader.accept("TABLE"):
        reader.accept("IF", "NOT", "EXISTS")
        table = reader.table()
        return [] if table is None else [SchemaObject("table", *table, table[1], True)]
    reader.accept_any(*_INDEX_KINDS)
    if not reader.accept("INDEX"):
        return []               # CREATE TEMPORARY TABLE, CREATE OR REPLACE, a view...
    reader.accept("IF", "NOT", "EXISTS")
    index = reader.name()
    table = reader.table() if index is not None and reader.accept("ON") else None
    return [] if index is None or table is None else [SchemaObject("index", *table, index, True)]


def _drop(reader: _Reader) -> list[SchemaObject]:
    if reader.accept("TABLE"):
        reader.accept("IF", "EXISTS")
        table = reader.table()
        if table is None or not (reader.at_end() or reader.accept_any("RESTRICT", "CASCADE")):
            return []           # several tables: not atomic, not checked
        return [SchemaObject("table", *table, table[1], False)]
    if not reader.accept("INDEX"):
        return []
    reader.accept("IF", "EXISTS")
    index = reader.name()
    table = reader.table() if index is not None and reader.accept("ON") else None
    return [] if index is None or table is None else [SchemaObject("index", *table, index, False)]
