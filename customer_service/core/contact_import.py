"""Reading a contacts file (CSV or JSON Lines) into ``ContactInput`` records, line by line.

Pure: bytes in, records and per-line refusals out, no I/O of its own. The file is read
one line at a time (``read_lines`` over any binary stream), so a file of a million lines
costs the memory of one line plus the ``external_id``s seen so far (to refuse a
duplicate, naming the line it repeats).

The rules, the same for both formats (docs/contacts.md shows them with examples):

- ``external_id`` is required, 1-255 characters after trimming the spaces around it,
  without control characters; JSON Lines also takes an integer (``42`` is ``"42"``).
- ``name`` (255 characters), ``email`` (320), ``phone`` (64): strings.
- ``tags``: JSON Lines, a list of strings; CSV, one cell with the tags separated by ``;``
  or ``,`` (``vip;newsletter``). At most 100 tags of at most 64 characters each.
- ``attributes``: a JSON object (in CSV, the cell holds its JSON text), at most 65,000
  bytes as JSON.
- ``unsubscribed``: ``true/false/1/0/yes/no`` (any case); JSON Lines also ``true``,
  ``false``, ``1``, ``0``.
- Any other column (CSV) or key (JSON Lines) becomes an attribute of that name, put into
  the ``attributes`` object (replacing a key of the same name there). CSV values stay
  strings.
- Nothing given (a missing column or key, an empty CSV cell, a JSON ``null``): the stored
  value is kept (a new contact gets the empty default). Given values replace the stored
  ones: ``tags`` the whole set, ``attributes`` the whole object. In JSON Lines ``""``
  clears a text field and ``[]`` / ``{}`` clear the tags / attributes.

A line with problems is refused with each problem named (``line 12: external_id:
missing``); the second line with an ``external_id`` already seen is refused naming the
first. Problems with the file as a whole (empty, a CSV header without ``external_id``)
raise ``BadRequest``.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from typing import Any, Final, Protocol

import msgspec

from customer_service.core.models import ContactInput
from customer_service.errors import BadRequest

MAX_EXTERNAL_ID: Final = 255
MAX_NAME: Final = 255
MAX_EMAIL: Final = 320
MAX_PHONE: Final = 64
MAX_TAG: Final = 64
MAX_TAGS: Final = 100
MAX_ATTRIBUTES_BYTES: Final = 65_000
"""Of the attributes object encoded as JSON (it is stored as one JSON text)."""
MAX_ATTRIBUTES_DEPTH: Final = 32
"""Levels of objects and lists, the attributes object being the first. JSON decoders and
encoders recurse once per level, so a "depth bomb" would otherwise fail with a
``RecursionError`` here, or later wherever the contact is read (a server thread, the bus)."""
_TOO_DEEP: Final = f"nested deeper than {MAX_ATTRIBUTES_DEPTH} levels"
MAX_LINE_BYTES: Final = 1 << 20
"""A longer line is refused without being read into memory whole."""

KNOWN: Final = ("external_id", "name", "email", "phone", "tags", "attributes", "unsubscribed")
_TEXT_LIMITS: Final = {"name": MAX_NAME, "email": MAX_EMAIL, "phone": MAX_PHONE}
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})
_TAG_SPLIT: Final = re.compile(r"[;,]")
_BOM: Final = b"\xef\xbb\xbf"
_SURROGATE: Final = re.compile("[\udc80-\udcff]")
_json_decode = msgspec.json.Decoder()
_json_encode = msgspec.json.Encoder()


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


_EXTENSIONS: Final = {".csv": FileFormat.CSV, ".jsonl": FileFormat.JSONL,
                      ".ndjson": FileFormat.JSONL}


def format_for(path: str, given: str | None = None) -> FileFormat:
    """The format asked for, else the one the file's extension names."""
    if given is not None:
        return FileFormat(given)
    lowered = path.lower()
    for extension, fmt in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return fmt
    raise BadRequest(f"{path}: cannot tell the format from the file name (.csv, .jsonl or "
                     ".ndjson); say it with --format csv or --format jsonl")


@dataclass(frozen=True, slots=True)
class Problem:
    field: str | None
    """The column or key at fault; None when it is the line as a whole."""
    message: str

    def __str__(self) -> str:
        return self.message if self.field is None else f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class Refused:
    line: int
    """Where the record starts (1 is the first line of the file, a CSV's header)."""
    problems: tuple[Problem, ...]

    def __str__(self) -> str:
        return f"line {self.line}: " + "; ".join(str(p) for p in self.problems)


@dataclass(frozen=True, slots=True)
class Accepted:
    line: int
    contact: ContactInput


Parsed = Accepted | Refused


class OverLong(bytes):
    """A line longer than ``MAX_LINE_BYTES``: only its start, the rest was skipped."""


class Readable(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def read_lines(stream: Readable, max_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a binary stream (with their ``\\n``), one at a time; a line longer than
    ``max_bytes`` (its newline not counted) comes as an ``OverLong`` holding its start."""
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if len(line) > max_bytes and not (len(line) == max_bytes + 1 and line.endswith(b"\n")):
            rest = line
            while rest and not rest.endswith(b"\n"):
                rest = stream.readline(max_bytes + 1)
            yield OverLong(line[:64])
            continue
        yield line


def parse_contacts(lines: Iterable[bytes], fmt: FileFormat) -> Iterator[Parsed]:
    """Each record of the file, accepted or refused, in file order. Raises ``BadRequest``
    for a file that cannot be read at all (before yielding anything)."""
    if fmt is FileFormat.CSV:
        return _parse_csv(iter(lines))
    return _parse_jsonl(iter(lines))


# --- shared checks --------------------------------------------------------------

class _Builder:
    """Checks one record's values and remembers the ``external_id``s seen."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def build(self, line: int, values: dict[str, Any], extra: dict[str, Any],
              problems: list[Problem]) -> Parsed:
        """``values``: the known fields present (None: not given); ``extra``: the other
        columns or keys, non-empty ones only; ``problems``: those found already."""
        external_id = self._external_id(line, values.get("external_id"), problems)
        texts: dict[str, str | None] = {}
        for name, limit in _TEXT_LIMITS.items():
            texts[name] = _text(name, values.get(name), limit, problems)
        tags = _tags(values.get("tags"), problems)
        attributes = _attributes(values.get("attributes"), extra, problems)
        unsubscribed = _flag(values.get("unsubscribed"), problems)
        if problems or external_id is None:
            return Refused(line, tuple(problems))
        return Accepted(line, ContactInput(external_id, texts["name"], texts["email"],
                                           texts["phone"], tags, attributes, unsubscribed))

    def _external_id(self, line: int, raw: Any, problems: list[Problem]) -> str | None:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            problems.insert(0, Problem("external_id", "missing"))
            return None
        if not isinstance(raw, str):
            problems.insert(0, Problem("external_id", "must be a string or an integer"))
            return None
        value = raw.strip()
        if len(value) > MAX_EXTERNAL_ID:
            problems.insert(0, Problem("external_id",
                                       f"longer than {MAX_EXTERNAL_ID} characters"))
            return None
        control = _control(value)
        if control:
            problems.insert(0, Problem("external_id", control))
            return None
        first = self.seen.get(value)
        if first is not None:
            problems.insert(0, Problem("external_id", f"{quoted(value)} already on line {first}"))
            return None
        self.seen[value] = line
        return value


def _control(value: str) -> str:
    """What is wrong with a control character in ``value`` (a signed-in visitor's id can
    hold none, so such a contact could never be identified), or ''."""
    for char in value:
        if unicodedata.category(char) == "Cc":
            return f"holds a control character (U+{ord(char):04X})"
    return ""


def quoted(value: str, width: int = 40) -> str:
    """A value quoted for a message, cut when long."""
    return repr(value if len(value) <= width else value[: width - 1] + "…")


def _text(name: str, raw: Any, limit: int, problems: list[Problem]) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        problems.append(Problem(name, "must be a string"))
        return None
    value = raw.strip()
    if len(value) > limit:
        problems.append(Problem(name, f"longer than {limit} characters"))
        return None
    return value


def _tags(raw: Any, problems: list[Problem]) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not (isinstance(raw, list) and all(isinstance(t, str) for t in raw)):
        problems.append(Problem("tags", "must be a list of strings"))
        return None
    tags = sorted({tag.strip() for tag in raw if tag.strip()})
    for tag in tags:
        problem = tag_problem(tag)
        if problem:
            problems.append(Problem("tags", problem))
            return None
    if len(tags) > MAX_TAGS:
        problems.append(Problem("tags", f"{len(tags)} tags, at most {MAX_TAGS}"))
        return None
    return tuple(tags)


def tag_problem(tag: str) -> str:
    """What is wrong with a (trimmed) tag, or ''."""
    if not tag:
        return "a tag cannot be empty"
    if len(tag) > MAX_TAG:
        return f"{quoted(tag)} is longer than {MAX_TAG} characters"
    if _TAG_SPLIT.search(tag):
        return f"{quoted(tag)}: a tag cannot hold ';' or ',' (they separate tags in CSV)"
    control = _control(tag)
    return f"{quoted(tag)} {control}" if control else ""


def check_tag(tag: str) -> str:
    """``tag`` trimmed, or ``BadRequest`` saying what is wrong with it."""
    problem = tag_problem(tag.strip())
    if problem:
        raise BadRequest(f"tag {problem}" if problem.startswith("'") else problem)
    return tag.strip()


def _attributes(raw: Any, extra: dict[str, Any], problems: list[Problem]
                ) -> dict[str, object] | None:
    attributes: dict[str, object] | None = None
    if any(p.field == "attributes" for p in problems):
        return None  # the CSV cell was not JSON
    if raw is not None:
        if not isinstance(raw, dict):
            problems.append(Problem("attributes", f"must be a JSON object, not {_json_kind(raw)}"))
            return None
        attributes = dict(raw)
    if extra:
        attributes = {**(attributes or {}), **extra}
    if attributes is not None and _depth(attributes) > MAX_ATTRIBUTES_DEPTH:
        problems.append(Problem("attributes", _TOO_DEEP))
        return None
    if attributes is not None and len(_json_encode.encode(attributes)) > MAX_ATTRIBUTES_BYTES:
        problems.append(Problem("attributes", f"larger than {MAX_ATTRIBUTES_BYTES} bytes "
                                              "as JSON"))
        return None
    return attributes


def _depth(value: object) -> int:
    """How many objects and lists deep ``value`` is (0 for a scalar), without recursion."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children: Iterable[object]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_ATTRIBUTES_DEPTH:
            break
        pending.extend((child, level + 1) for child in children)
    return deepest


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _flag(raw: Any, problems: list[Problem]) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        problems.append(Problem("unsubscribed", f"{quoted(raw)} is not one of true, false, 1, "
                                                "0, yes, no"))
        return None
    problems.append(Problem("unsubscribed", "must be true or false"))
    return None


def _utf8_problem(raw: bytes) -> str:
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
    return ""


# --- JSON Lines -----------------------------------------------------------------

def _parse_jsonl(lines: Iterator[bytes]) -> Iterator[Parsed]:
    builder = _Builder()
    any_line = False
    for number, line in enumerate(lines, start=1):
        if isinstance(line, OverLong):
            any_line = True
            yield Refused(number, (Problem(None, f"longer than {MAX_LINE_BYTES} bytes"),))
            continue
        raw = line.removeprefix(_BOM) if number == 1 else line
        if not raw.strip():
            continue
        any_line = True
        problem = _utf8_problem(raw)
        if problem:
            yield Refused(number, (Problem(None, problem),))
            continue
        try:
            data = _json_decode.decode(raw)
        except msgspec.DecodeError as exc:
            yield Refused(number, (Problem(None, f"invalid JSON ({exc})"),))
            continue
        except RecursionError:  # far deeper than MAX_ATTRIBUTES_DEPTH
            yield Refused(number, (Problem("attributes", _TOO_DEEP),))
            continue
        if not isinstance(data, dict):
            yield Refused(number, (Problem(None, f"must be a JSON object, not "
                                                 f"{_json_kind(data)}"),))
            continue
        values = {key: data[key] for key in KNOWN if key in data}
        extra = {key: value for key, value in data.items() if key not in KNOWN}
        yield builder.build(number, values, extra, [])
    if not any_line:  # nothing but blank lines (and a byte-order mark), if anything
        raise BadRequest("the file is empty")


# --- CSV ------------------------------------------------------------------------

def _delimiter(header: str) -> str:
    """``,`` unless the header line has more ``;`` or tabs (a spreadsheet's export in a
    language that writes decimal commas)."""
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _columns(header: list[str]) -> list[str]:
    names = [name.strip() for name in header]
    columns = [name.lower() if name.lower() in KNOWN else name for name in names]
    seen: set[str] = set()
    for name in columns:
        if name and name in seen:
            raise BadRequest(f"line 1: the column {name!r} appears twice in the header")
        seen.add(name)
    if "external_id" not in seen:
        shown = ", ".join(repr(n) for n in names[:10]) + (", …" if len(names) > 10 else "")
        raise BadRequest(f"line 1: the header has no external_id column (it has {shown}); "
                         "the first line of a CSV file names the columns")
    return columns


def _parse_csv(lines: Iterator[bytes]) -> Iterator[Parsed]:
    first = next(lines, None)
    if first is None:
        raise BadRequest("the file is empty")
    if isinstance(first, OverLong):
        raise BadRequest(f"line 1: the header is longer than {MAX_LINE_BYTES} bytes")
    first = first.removeprefix(_BOM)
    if not first.strip():
        raise BadRequest("line 1: the header is empty; the first line of a CSV file names "
                         "the columns")
    problem = _utf8_problem(first)
    if problem:
        raise BadRequest(f"line 1: the header is {problem}")
    header_text = first.decode()
    long_lines: list[int] = []

    def texts() -> Iterator[str]:
        for number, raw in enumerate(lines, start=2):
            if isinstance(raw, OverLong):
                long_lines.append(number)
                yield "\n"
            else:
                yield raw.decode("utf-8", "surrogateescape")

    reader = csv.reader(chain([header_text], texts()), delimiter=_delimiter(header_text),
                        strict=True)
    try:
        columns = _columns(next(reader))
    except csv.Error as exc:
        raise BadRequest(f"line 1: the header is not valid CSV ({exc})") from None
    return _csv_rows(reader, columns, long_lines)


def _csv_rows(reader: Any, columns: list[str], long_lines: list[int]) -> Iterator[Parsed]:
    builder = _Builder()
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row: list[str] = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            # a stray quote swallows the lines after it: say which, as none of them is
            # imported (a field over the csv module's limit stops it after 128 KiB)
            span = f" in lines {start} to {end}, read as one record" if end > start else ""
            yield Refused(start, (Problem(None, f"not valid CSV ({exc}){span}"),))
            continue
        end = reader.line_num
        if long_lines and long_lines[0] <= end:
            first_long = long_lines[0]
            del long_lines[: sum(1 for n in long_lines if n <= end)]
            where = "" if first_long == start else f"its line {first_long} is "
            yield Refused(start, (Problem(None, f"{where}longer than {MAX_LINE_BYTES} bytes"),))
            continue
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        yield _csv_record(builder, start, row, columns)


def _csv_record(builder: _Builder, line: int, row: list[str], columns: list[str]) -> Parsed:
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns):]):
        problems.append(Problem(None, f"{len(row)} values for {len(columns)} columns"))
    for index, (column, cell) in enumerate(zip(columns, row, strict=False)):
        field = column or f"column {index + 1}"
        bad = _SURROGATE.search(cell)
        if bad:
            problem = Problem(field, f"not UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02x})")
            if column == "external_id":  # nothing to name or remember it by
                return Refused(line, (problem, *problems))
            problems.append(problem)
        elif not cell.strip():
            continue
        elif not column:
            problems.append(Problem(field, "has no name in the header"))
        elif column == "tags":
            values[column] = _TAG_SPLIT.split(cell)
        elif column == "attributes":
            values[column] = _json_cell(cell, problems)
        elif column in KNOWN:
            values[column] = cell
        else:
            extra[column] = cell
    return builder.build(line, values, extra, problems)


def _json_cell(cell: str, problems: list[Problem]) -> object:
    """The attributes cell's JSON (None, with a problem noted, when it is not JSON)."""
    try:
        return _json_decode.decode(cell)
    except msgspec.DecodeError as exc:
        problems.append(Problem("attributes", f"invalid JSON ({exc})"))
    except RecursionError:  # far deeper than MAX_ATTRIBUTES_DEPTH
        problems.append(Problem("attributes", _TOO_DEEP))
    return None
