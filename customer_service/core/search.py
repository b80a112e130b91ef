"""Full-text search: the query an agent types, what each database is asked, the snippet.

Pure: no I/O. The storage modules (``storage/_sql_search.py``) turn what is decided here
into SQL; the server, the CLI and the dashboard show the ``SearchHit``s.

**A query** is trimmed, its runs of whitespace (and control characters) become one space,
and it must then have 1 to ``MAX_QUERY_CHARS`` characters and at most ``MAX_TERMS``
space-separated terms. A hit contains every term (AND), each anywhere in the text
(SQLite) or, on MySQL/MariaDB, at the beginning of a word (Chinese, Japanese and Korean
text: anywhere). Nothing the agent types is query syntax: quotes, ``*``, ``+`` and
``-`` are characters like any other.

**SQLite** (FTS5 with the ``trigram`` tokenizer) answers terms of 3 or more characters
from its index (``trigram_match``); a trigram index cannot answer shorter ones (``退款``,
``tv``), so those are ``LIKE`` conditions (``like_pattern``), and a query made only of
short terms scans the messages, newest first (slower: see docs/agents.md).

**MySQL/MariaDB** InnoDB ``FULLTEXT`` with the default parser splits text at spaces and
punctuation, leaves out words under ``innodb_ft_min_token_size`` (3) and stopwords
(``the``, ``about``), and does not split Chinese at all; MariaDB has no ``ngram`` parser.
So the database never sees the raw text: a search column holds *tokens* made here
(``index_tokens``), which that parser indexes whatever its settings:

- a word (letters, digits, marks) becomes ``w`` + the word, NFKC-normalized and
  case-folded, every character outside ASCII written ``_`` + 6 hex digits, padded with
  ``_`` to 3 characters and cut at ``MAX_TOKEN_CHARS``: ``Refund`` is ``wrefund``, ``the``
  is ``wthe`` (no stopword), ``café`` is ``wcaf_0000e9``;
- a run of CJK characters becomes its overlapping pairs (bigrams) and, for the run's last
  character, that character alone, each ``k`` + 6 hex digits per character: ``退款`` is
  ``k009000006b3e k006b3e``.

A query term is asked the same way (``fulltext_query``): a word as a prefix (``+wrefund*``
also finds ``refunds``), one CJK character as the prefix of every pair it begins
(``+k009000*``), a longer CJK run as the phrase of its pairs (``+"k..退款 k..款政 ..."``,
adjacent: exactly that run). A term with a part too short for a prefix query (a word of
one letter, ``don't``'s ``t``) is also matched with ``LIKE``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any, Final

from customer_service.core.models import Role, format_ts
from customer_service.errors import BadRequest

MAX_QUERY_CHARS: Final = 200
MAX_TERMS: Final = 10
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 100
SNIPPET_CHARS: Final = 160
"""A snippet's length at most (plus an ellipsis at either end)."""
SNIPPET_BEFORE: Final = 50
"""Characters shown before the first hit when the text is longer than a snippet."""
TRIGRAM: Final = 3
"""SQLite's trigram index answers terms of at least this many characters."""
MIN_FULLTEXT_PREFIX: Final = 3
"""InnoDB's default ``innodb_ft_min_token_size``: a prefix query needs at least this."""
MAX_TOKEN_CHARS: Final = 80
"""Below InnoDB's ``innodb_ft_max_token_size`` (84): longer tokens are cut here."""
ELLIPSIS: Final = "…"

VISITOR_HITS: Final = 5
"""Visitors (by name or email) on a first page, before its messages."""

MESSAGE: Final = "message"
VISITOR: Final = "visitor"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    """The query as searched: trimmed, whitespace collapsed."""
    terms: tuple[str, ...]
    """Its distinct space-separated terms, in the order typed."""


@dataclass(frozen=True, slots=True)
class SearchCursor:
    """Where a page of message hits ends: the last message's time, conversation and seq.
    Messages come newest first in the order they were stored (SQLite: by rowid, that is
    commit order; MySQL: by time, conversation and seq)."""

    created_ms: int
    conversation_id: int
    seq: int

    def encode(self) -> str:
        return f"{self.created_ms}.{self.conversation_id}.{self.seq}"


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A message (``kind`` ``message``) or a visitor (``visitor``: found by name or
    email; its newest conversation, ``seq`` 0, ``created_at`` that conversation's last
    activity) that matches. ``highlights`` are ``[start, end)`` ranges of ``snippet`` in
    code points."""

    kind: str
    conversation_id: int
    seq: int
    role: Role
    sender_name: str
    created_at: datetime
    created_ms: int
    snippet: str
    highlights: tuple[tuple[int, int], ...]
    visitor_name: str

    @property
    def cursor(self) -> SearchCursor | None:
        """The page after this hit starts here (None for a visitor hit: they are all on
        the first page)."""
        if self.kind != MESSAGE:
            return None
        return SearchCursor(self.created_ms, self.conversation_id, self.seq)


# --- the query ----------------------------------------------------------------

def parse_query(raw: str) -> SearchQuery:
    """The query as searched, or ``BadRequest`` saying what is wrong with it. Control
    characters (NUL among them: never in a word) count as spaces."""
    text = " ".join("".join(" " if unicodedata.category(char) == "Cc" else char
                            for char in raw).split())
    if not text:
        raise BadRequest("the search text is empty: type at least one character")
    if len(text) > MAX_QUERY_CHARS:
        raise BadRequest(f"the search text is too long: at most {MAX_QUERY_CHARS} characters,"
                         f" not {len(text)}")
    terms = tuple(dict.fromkeys(text.split(" ")))
    if len(terms) > MAX_TERMS:
        raise BadRequest(f"the search text has too many words: at most {MAX_TERMS},"
                         f" not {len(terms)}")
    return SearchQuery(text, terms)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"the limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


def parse_cursor(raw: str) -> SearchCursor:
    """A cursor as ``SearchCursor.encode`` wrote it (``next`` of a page of hits)."""
    parts = raw.split(".")
    if len(parts) != 3 or not all(re.fullmatch(r"[0-9]{1,19}", part) for part in parts):
        raise BadRequest(f"the cursor {raw[:40]!r} is not one a search answered"
                         " (three numbers joined by '.')")
    created_ms, conversation_id, seq = (int(part) for part in parts)
    if max(created_ms, conversation_id, seq) > 2**63 - 1:
        raise BadRequest(f"the cursor {raw[:40]!r} is out of range")
    return SearchCursor(created_ms, conversation_id, seq)


def like_pattern(term: str) -> str:
    """``%term%`` with ``\\``, ``%`` and ``_`` escaped (``ESCAPE '\\'``)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def trigram_match(query: SearchQuery) -> tuple[str | None, list[str]]:
    """SQLite: the FTS5 ``MATCH`` expression for the terms a trigram index answers (each a
    quoted string: no FTS5 syntax reaches the database), and the shorter terms left for
    ``LIKE``. None when no term is long enough: the caller scans."""
    long_terms = [term for term in query.terms if len(term) >= TRIGRAM]
    short = [term for term in query.terms if len(term) < TRIGRAM]
    if not long_terms:
        return None, short
    return " ".join('"' + term.replace('"', '""') + '"' for term in long_terms), short


# --- MySQL tokens -------------------------------------------------------------

def is_cjk(char: str) -> bool:
    """Han, kana, Hangul, CJK symbols and full-width forms: scripts written without
    spaces between words."""
    code = ord(char)
    return (0x2E80 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF
            or 0x1100 <= code <= 0x11FF or 0x20000 <= code <= 0x3FFFF)


def _word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LNM"


def _pieces(text: str) -> list[tuple[bool, str]]:
    """Runs of CJK characters (True) and words (False) of normalized text, in order."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    pieces: list[tuple[bool, str]] = []
    current: list[str] = []
    current_cjk = False
    for char in folded:
        word = _word_char(char)
        cjk = word and is_cjk(char)
        if current and (not word or cjk != current_cjk):
            pieces.append((current_cjk, "".join(current)))
            current = []
        if word:
            current.append(char)
            current_cjk = cjk
    if current:
        pieces.append((current_cjk, "".join(current)))
    return pieces


def _hex(char: str) -> str:
    return f"{ord(char):06x}"


def _word_prefix(word: str) -> str:
    """``w`` + the word, non-ASCII characters as ``_`` + hex, cut at ``MAX_TOKEN_CHARS``
    between two characters."""
    out = "w"
    for char in word:
        part = char if char.isascii() and char.isalnum() else "_" + _hex(char)
        if len(out) + len(part) > MAX_TOKEN_CHARS:
            break
        out += part
    return out


def _cjk_tokens(run: str) -> list[str]:
    pairs = [f"k{_hex(a)}{_hex(b)}" for a, b in pairwise(run)]
    return [*pairs, f"k{_hex(run[-1])}"]


def index_tokens(texts: Iterable[str]) -> str:
    """What a MySQL search column holds for these texts (a message's content; a visitor's
    name and email): the tokens, space-separated, in order."""
    tokens: list[str] = []
    for text in texts:
        for cjk, piece in _pieces(text):
            if cjk:
                tokens += _cjk_tokens(piece)
            else:
                tokens.append(_word_prefix(piece).ljust(MIN_FULLTEXT_PREFIX, "_"))
    return " ".join(tokens)


def fulltext_query(query: SearchQuery) -> tuple[str | None, list[str]]:
    """MySQL: the ``MATCH ... AGAINST (... IN BOOLEAN MODE)`` expression (only tokens of
    ``[a-z0-9_]``, ``+``, ``*`` and quotes: nothing typed reaches it), and the terms that
    are matched with ``LIKE`` too (a part too short for the index). None when no part
    can be asked of the index: the caller scans."""
    items: list[str] = []
    like: list[str] = []
    for term in query.terms:
        pieces = _pieces(term)
        complete = bool(pieces)
        for cjk, piece in pieces:
            if cjk and len(piece) == 1:
                items.append(f"+k{_hex(piece)}*")
            elif cjk:
                pairs = _cjk_tokens(piece)[:-1]
                items.append(f"+{pairs[0]}" if len(pairs) == 1 else '+"' + " ".join(pairs) + '"')
            else:
                prefix = _word_prefix(piece)
                if len(prefix) < MIN_FULLTEXT_PREFIX:
                    complete = False
                else:
                    items.append(f"+{prefix}*")
        if not complete:
            like.append(term)
    items = list(dict.fromkeys(items))
    return (" ".join(items) if items else None), like


# --- snippets -----------------------------------------------------------------

def _hit_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    wanted = sorted({term for term in terms if term}, key=len, reverse=True)
    if not wanted:
        return None
    return re.compile("|".join(re.escape(term) for term in wanted), re.IGNORECASE)


def snippet(text: str, terms: Sequence[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The text on one line, cut to a window of ``SNIPPET_CHARS`` around the first hit
    (``…`` where it was cut), and the ``[start, end)`` ranges of every hit in it."""
    flat = " ".join(text.split())
    pattern = _hit_pattern(terms)
    found = list(pattern.finditer(flat)) if pattern is not None else []
    start, end = 0, len(flat)
    if len(flat) > SNIPPET_CHARS:
        first = found[0].start() if found else 0
        start = max(0, first - SNIPPET_BEFORE)
        end = min(len(flat), start + SNIPPET_CHARS)
        start = max(0, end - SNIPPET_CHARS)
    lead = ELLIPSIS if start > 0 else ""
    shown = lead + flat[start:end] + (ELLIPSIS if end < len(flat) else "")
    ranges = tuple((max(hit.start(), start) - start + len(lead),
                    min(hit.end(), end) - start + len(lead))
                   for hit in found if hit.start() < end and hit.end() > start)
    return shown, ranges


def visitor_text(name: str, email: str) -> str:
    """How a visitor hit reads: ``Vera <vera@example.com>``."""
    if name and email:
        return f"{name} <{email}>"
    return name or email


def hit_dict(hit: SearchHit) -> dict[str, Any]:
    """A hit as JSON: the REST answer, the CLI's ``--json`` and the dashboard share it."""
    return {"kind": hit.kind, "conversation_id": hit.conversation_id, "seq": hit.seq,
            "role": str(hit.role), "sender_name": hit.sender_name,
            "visitor_name": hit.visitor_name, "created_at": format_ts(hit.created_at),
            "snippet": hit.snippet, "highlights": [list(pair) for pair in hit.highlights],
            "cursor": None if hit.cursor is None else hit.cursor.encode()}


def next_cursor(hits: Sequence[SearchHit], limit: int) -> SearchCursor | None:
    """Where the following page starts: after the last message of a full page (None when
    this one holds fewer than ``limit`` messages: it is the last)."""
    found = [hit.cursor for hit in hits if hit.cursor is not None]
    return found[-1] if len(found) >= limit else None


def page_dict(query: SearchQuery, hits: Sequence[SearchHit], limit: int) -> dict[str, Any]:
    """``{"query", "hits", "next"}``: ``next`` is the ``before`` of the following page."""
    following = next_cursor(hits, limit)
    return {"query": query.text, "hits": [hit_dict(hit) for hit in hits],
            "next": None if following is None else following.encode()}
