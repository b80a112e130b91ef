"""The contacts file parser: CSV and JSON Lines in, records and per-line refusals out."""

from __future__ import annotations

import csv
import io
import json
import string
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from customer_service.core.contact_import import (
    MAX_ATTRIBUTES_BYTES,
    MAX_ATTRIBUTES_DEPTH,
    MAX_EXTERNAL_ID,
    MAX_TAGS,
    Accepted,
    FileFormat,
    OverLong,
    Parsed,
    Refused,
    format_for,
    parse_contacts,
    read_lines,
)
from customer_service.core.models import ContactInput
from customer_service.errors import BadRequest

CSV = FileFormat.CSV
JSONL = FileFormat.JSONL


def parse(data: bytes, fmt: FileFormat) -> list[Parsed]:
    return list(parse_contacts(read_lines(io.BytesIO(data)), fmt))


def accepted(data: bytes, fmt: FileFormat) -> list[ContactInput]:
    results = parse(data, fmt)
    assert all(isinstance(r, Accepted) for r in results), [str(r) for r in results]
    return [r.contact for r in results if isinstance(r, Accepted)]


def refusals(data: bytes, fmt: FileFormat) -> list[str]:
    return [str(r) for r in parse(data, fmt) if isinstance(r, Refused)]


# --- CSV: good files ---------------------------------------------------------

def test_csv_reads_every_column() -> None:
    data = (b"external_id,name,email,phone,tags,attributes,unsubscribed\n"
            b'u1,Ann Lee,ann@example.com,+33 1 23,vip;news,"{""plan"": ""pro"", ""n"": 3}",no\n'
            b"u2,Bob,,,,,\n")
    assert accepted(data, CSV) == [
        ContactInput("u1", "Ann Lee", "ann@example.com", "+33 1 23", ("news", "vip"),
                     {"plan": "pro", "n": 3}, False),
        ContactInput("u2", "Bob"),  # empty cells: keep what is stored
    ]


def test_csv_other_columns_become_string_attributes_over_the_attributes_cell() -> None:
    data = b'external_id,attributes,plan,city\nu1,"{""plan"": ""free"", ""age"": 40}",pro,\n'
    assert accepted(data, CSV)[0].attributes == {"plan": "pro", "age": 40}
    only_columns = b"external_id,plan\nu1,42\nu2,\n"
    assert [c.attributes for c in accepted(only_columns, CSV)] == [{"plan": "42"}, None]


@pytest.mark.parametrize("cell", ["a;b", "a,b", " b ; a ;", "b;a;b", "a,b;a"])
def test_csv_tags_split_on_semicolons_or_commas_trimmed_unique_and_sorted(cell: str) -> None:
    data = f'external_id,tags\nu1,"{cell}"\n'.encode()
    assert accepted(data, CSV)[0].tags == ("a", "b")


@pytest.mark.parametrize(("cell", "value"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("Yes", True),
    ("false", False), ("0", False), ("no", False), (" NO ", False), ("", None)])
def test_csv_unsubscribed_words(cell: str, value: bool | None) -> None:
    data = f"external_id,unsubscribed\nu1,{cell}\n".encode()
    assert accepted(data, CSV)[0].unsubscribed is value


def test_csv_header_is_case_insensitive_trimmed_and_may_start_with_a_bom() -> None:
    data = b"\xef\xbb\xbf External_ID , NAME \r\nu1,Ann\r\n u2 ,Bob\r\n"
    assert accepted(data, CSV) == [ContactInput("u1", "Ann"), ContactInput("u2", "Bob")]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_semicolon_or_tab_separated_files(delimiter: str) -> None:
    data = delimiter.join(["external_id", "name", "tags"]).encode() + b"\n"
    data += delimiter.join(["u1", "Ann, Lee", '"a;b"']).encode() + b"\n"
    assert accepted(data, CSV) == [ContactInput("u1", "Ann, Lee", tags=("a", "b"))]


def test_csv_quoted_field_over_several_lines_keeps_line_numbers() -> None:
    data = b'external_id,name\nu1,"two\nlines"\n\nu2,\n,nobody\n'
    results = parse(data, CSV)
    assert [r.line for r in results] == [2, 5, 6]
    assert isinstance(results[0], Accepted) and results[0].contact.name == "two\nlines"
    assert str(results[2]) == "line 6: external_id: missing"


def test_csv_header_only_and_blank_lines_give_nothing() -> None:
    assert parse(b"external_id,name\n\n\n", CSV) == []


# --- CSV: refused lines --------------------------------------------------------

def test_csv_refusals_name_the_line_and_the_field() -> None:
    data = (b"external_id,name,attributes,unsubscribed\n"   # 1
            b"u1,Ann,,\n"                                    # 2
            b",Nobody,,\n"                                   # 3
            b"   ,Spaces,,\n"                                # 4
            b'u2,Bad,"{nope",\n'                             # 5
            b'u3,List,"[1, 2]",\n'                           # 6
            b"u1,Again,,\n"                                  # 7
            b"u4,B\xffb,,\n"                                 # 8
            b"u5,Maybe,,maybe\n"                             # 9
            b"u6,Fine,,yes\n")                               # 10
    results = parse(data, CSV)
    assert [r.line for r in results] == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert [str(r) for r in results if isinstance(r, Refused)] == [
        "line 3: external_id: missing",
        "line 4: external_id: missing",
        "line 5: attributes: invalid JSON (JSON is malformed: object keys must be strings "
        "(byte 1))",
        "line 6: attributes: must be a JSON object, not a list",
        "line 7: external_id: 'u1' already on line 2",
        "line 8: name: not UTF-8 (byte 0xff)",
        "line 9: unsubscribed: 'maybe' is not one of true, false, 1, 0, yes, no",
    ]
    assert [r.contact.external_id for r in results if isinstance(r, Accepted)] == ["u1", "u6"]


def test_csv_several_problems_on_one_line_are_all_named() -> None:
    data = b"external_id,email,unsubscribed\n,x\xfe,perhaps\n"
    assert refusals(data, CSV) == [
        "line 2: external_id: missing; email: not UTF-8 (byte 0xfe); "
        "unsubscribed: 'perhaps' is not one of true, false, 1, 0, yes, no"]


def test_csv_non_utf8_external_id_is_refused_and_not_remembered() -> None:
    data = b"external_id,name\nu\xe9,Latin-1\nu\xc3\xa9,UTF-8\n"
    results = parse(data, CSV)
    assert str(results[0]) == "line 2: external_id: not UTF-8 (byte 0xe9)"
    assert isinstance(results[1], Accepted) and results[1].contact.external_id == "ué"


def test_csv_a_refused_line_still_holds_its_external_id() -> None:
    """The second line with an id is refused even when the first was refused for something
    else: every problem shows up in one pass, not after fixing the first."""
    data = b"external_id,unsubscribed\nu1,maybe\nu1,yes\n"
    assert refusals(data, CSV) == [
        "line 2: unsubscribed: 'maybe' is not one of true, false, 1, 0, yes, no",
        "line 3: external_id: 'u1' already on line 2"]


def test_csv_length_limits() -> None:
    longest = "x" * MAX_EXTERNAL_ID
    data = (f"external_id,name,email,phone,tags\n{longest},,,,\n{longest}y,,,,\n"
            f"u1,{'n' * 256},{'e' * 321},{'p' * 65},\n"
            f"u2,,,,{'t' * 65}\n"
            f"u3,,,,\"{';'.join(str(i) for i in range(MAX_TAGS + 1))}\"\n").encode()
    assert refusals(data, CSV) == [
        "line 3: external_id: longer than 255 characters",
        "line 4: name: longer than 255 characters; email: longer than 320 characters; "
        "phone: longer than 64 characters",
        f"line 5: tags: '{'t' * 39}…' is longer than 64 characters",
        "line 6: tags: 101 tags, at most 100",
    ]


def test_control_characters_in_ids_and_tags() -> None:
    data = b'{"external_id": "u\\u0001"}\n{"external_id": "u2", "tags": ["a\\tb"]}\n'
    assert refusals(data, JSONL) == [
        "line 1: external_id: holds a control character (U+0001)",
        "line 2: tags: 'a\\tb' holds a control character (U+0009)"]
    assert refusals(b"external_id\n\tu1\t\n", CSV) == []  # spaces around are trimmed


def test_csv_attributes_size_limit() -> None:
    big = "v" * MAX_ATTRIBUTES_BYTES
    data = f"external_id,note\nu1,{big}\n".encode()
    assert refusals(data, CSV) == [f"line 2: attributes: larger than {MAX_ATTRIBUTES_BYTES} "
                                   "bytes as JSON"]


def test_csv_extra_values_and_unnamed_columns() -> None:
    data = b"external_id,name,\nu1,Ann,\nu2,Bob,stray\nu3,Cy,,,\nu4,Di,,,more\n"
    assert refusals(data, CSV) == [
        "line 3: column 3: has no name in the header",
        "line 5: 5 values for 3 columns",
    ]


def test_csv_bad_quoting_refuses_that_record_and_goes_on() -> None:
    data = b'external_id,name\nu1,"a"b\nu2,ok\nu3,"never closed\n'
    results = parse(data, CSV)
    assert [str(r) if isinstance(r, Refused) else r.contact.external_id for r in results] == [
        "line 2: not valid CSV (',' expected after '\"')", "u2",
        "line 4: not valid CSV (unexpected end of data)"]


def test_csv_an_unclosed_quote_names_the_lines_it_swallowed() -> None:
    # the quote on line 3 runs to the end of the file: lines 4-6 are not contacts
    # of their own, which --skip-errors would otherwise leave out without a word
    data = b'external_id,name\nu1,ok\nu2,"never closed\nu3,a\nu4,b\nu5,c\n'
    assert refusals(data, CSV) == ["line 3: not valid CSV (unexpected end of data) in "
                                   "lines 3 to 6, read as one record"]
    big = b"external_id,name\nu1,\"oops\n" + b"".join(
        b"u%d,%s\n" % (i, b"x" * 100) for i in range(2, 3002))
    results = parse(big, CSV)
    assert str(results[0]).startswith("line 2: not valid CSV (field larger than field limit")
    assert str(results[0]).endswith(", read as one record")
    swallowed_to = int(str(results[0]).split(" to ")[1].split(",")[0])
    first_kept = results[1]
    assert isinstance(first_kept, Accepted) and first_kept.line == swallowed_to + 1


def test_csv_over_long_line_is_refused_without_reading_it_whole() -> None:
    data = b"external_id,name\nu1," + b"x" * 3000 + b"\nu2,ok\n"
    lines = read_lines(io.BytesIO(data), max_bytes=1000)
    results = list(parse_contacts(lines, CSV))
    assert str(results[0]) == "line 2: longer than 1048576 bytes"
    assert isinstance(results[1], Accepted) and results[1].line == 3
    quoted = b'external_id,name\nu1,"x\n' + b"y" * 3000 + b'\nz"\nu2,ok\n'
    results = list(parse_contacts(read_lines(io.BytesIO(quoted), max_bytes=1000), CSV))
    assert str(results[0]) == "line 2: its line 3 is longer than 1048576 bytes"
    assert isinstance(results[1], Accepted) and results[1].line == 5


# --- CSV: the file as a whole ------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"\n", "line 1: the header is empty; the first line of a CSV file names the columns"),
    (b"id,name\n1,Ann\n", "line 1: the header has no external_id column (it has 'id', "
                          "'name'); the first line of a CSV file names the columns"),
    (b"external_id,name,Name\n", "line 1: the column 'name' appears twice in the header"),
    (b"external_id,n\xe4me\n", "line 1: the header is not UTF-8 (byte 0xe4 at byte 14 of "
                               "the line)"),
])
def test_csv_file_errors(data: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(data, CSV)
    assert caught.value.message == message


def test_csv_over_long_header() -> None:
    with pytest.raises(BadRequest, match="line 1: the header is longer than"):
        list(parse_contacts(read_lines(io.BytesIO(b"external_id," + b"x" * 50), 20), CSV))


# --- JSON Lines --------------------------------------------------------------

def test_jsonl_reads_every_key_and_other_keys_become_attributes() -> None:
    data = (b'{"external_id": "u1", "name": "Ann", "email": "a@x.io", "phone": "1", '
            b'"tags": ["vip", "a", "vip"], "attributes": {"plan": "pro"}, "unsubscribed": true, '
            b'"age": 40, "plan": "max"}\n'
            b'\n'
            b'{"external_id": 42, "name": null, "email": "", "tags": [], "attributes": {}}\n'
            b'{"external_id": "u3", "unsubscribed": "no"}\n')
    assert accepted(data, JSONL) == [
        ContactInput("u1", "Ann", "a@x.io", "1", ("a", "vip"), {"plan": "max", "age": 40}, True),
        ContactInput("42", None, "", None, (), {}),
        ContactInput("u3", unsubscribed=False),
    ]


def test_jsonl_refusals_name_the_line_and_the_field() -> None:
    data = (b'{"external_id": "u1"}\n'                       # 1
            b'{"name": "nobody"}\n'                           # 2
            b'{"external_id": "u2", "attributes": "{}"}\n'    # 3
            b'{"external_id": "u3", "attributes": [1]}\n'     # 4
            b'{"external_id": "u4", "tags": "a;b"}\n'         # 5
            b'{"external_id": "u5", "name": 5}\n'             # 6
            b'{"external_id": "u1"}\n'                        # 7
            b'{"external_id": "u6", "name": "B\xffb"}\n'      # 8
            b'{"external_id": "u7",\n'                        # 9
            b'["external_id"]\n'                              # 10
            b'{"external_id": true}\n'                        # 11
            b'{"external_id": ""}\n'                          # 12
            b'{"external_id": "u8", "unsubscribed": 2}\n'     # 13
            b'   \n'                                          # 14
            b'{"external_id": "u9"}')                         # 15, no newline at the end
    assert [str(r) for r in parse(data, JSONL)] == [
        "Accepted(line=1, contact=ContactInput(external_id='u1', name=None, email=None, "
        "phone=None, tags=None, attributes=None, unsubscribed=None))",
        "line 2: external_id: missing",
        "line 3: attributes: must be a JSON object, not a string",
        "line 4: attributes: must be a JSON object, not a list",
        "line 5: tags: must be a list of strings",
        "line 6: name: must be a string",
        "line 7: external_id: 'u1' already on line 1",
        "line 8: not UTF-8 (byte 0xff at byte 33 of the line)",
        "line 9: invalid JSON (Input data was truncated)",
        "line 10: must be a JSON object, not a list",
        "line 11: external_id: must be a string or an integer",
        "line 12: external_id: missing",
        "line 13: unsubscribed: must be true or false",
        "Accepted(line=15, contact=ContactInput(external_id='u9', name=None, email=None, "
        "phone=None, tags=None, attributes=None, unsubscribed=None))",
    ]


def test_jsonl_bom_and_crlf() -> None:
    data = b'\xef\xbb\xbf{"external_id": "u1"}\r\n{"external_id": "u2"}\r\n'
    assert [c.external_id for c in accepted(data, JSONL)] == ["u1", "u2"]


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n", b"\xef\xbb\xbf\r\n  \n\n"])
def test_jsonl_empty_file(data: bytes) -> None:
    # a byte-order mark or blank lines alone hold no contact: the same as a CSV file
    with pytest.raises(BadRequest, match="the file is empty"):
        parse(data, JSONL)


def test_jsonl_over_long_line() -> None:
    data = b'{"external_id": "u1", "name": "' + b"x" * 5000 + b'"}\n{"external_id": "u2"}\n'
    results = list(parse_contacts(read_lines(io.BytesIO(data), max_bytes=100), JSONL))
    assert str(results[0]) == "line 1: longer than 1048576 bytes"
    assert isinstance(results[1], Accepted) and results[1].contact.external_id == "u2"


# --- reading -------------------------------------------------------------------

def test_read_lines_bounds_each_line() -> None:
    data = b"12345\n123456\n1234567\nabc"
    lines = list(read_lines(io.BytesIO(data), max_bytes=6))
    assert lines == [b"12345\n", b"123456\n", b"1234567"[:64], b"abc"]
    assert [isinstance(line, OverLong) for line in lines] == [False, False, True, False]


class CountingStream:
    """A large file, generated as it is read; ``read`` counts the bytes handed out."""

    def __init__(self, fmt: FileFormat, lines: int) -> None:
        self.fmt, self.total, self.read = fmt, lines, 0
        self._lines = self._generate()

    def _generate(self) -> Iterator[bytes]:
        if self.fmt is CSV:
            yield b"external_id,name,tags\n"
        for i in range(self.total):
            yield (f"u{i},Name {i},a;b\n" if self.fmt is CSV
                   else f'{{"external_id": "u{i}", "name": "Name {i}"}}\n').encode()

    def readline(self, size: int = -1) -> bytes:
        line = next(self._lines, b"")
        assert size < 0 or len(line) <= size
        self.read += len(line)
        return line


@pytest.mark.parametrize("fmt", [CSV, JSONL])
def test_large_files_are_parsed_as_they_are_read(fmt: FileFormat) -> None:
    stream = CountingStream(fmt, 120_000)
    results = parse_contacts(read_lines(stream), fmt)
    first = next(results)
    assert isinstance(first, Accepted) and first.contact.external_id == "u0"
    assert stream.read < 200  # the first record came before the rest was read
    count = 1 + sum(1 for r in results if isinstance(r, Accepted))
    assert count == 120_000


def test_format_for() -> None:
    assert format_for("people.CSV") is CSV
    assert format_for("/tmp/x.jsonl") is JSONL and format_for("x.ndjson") is JSONL
    assert format_for("x.txt", "csv") is CSV
    with pytest.raises(BadRequest, match="--format csv or --format jsonl"):
        format_for("x.txt")


# --- properties ----------------------------------------------------------------

printable = st.text(string.ascii_letters + string.digits + " éü中-_.@'\"", max_size=30)
ids = st.text(string.ascii_letters + string.digits + "-_é", min_size=1, max_size=40)
tags = st.lists(st.text(string.ascii_lowercase + "-", min_size=1, max_size=10), max_size=5)
attrs = st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=8),
                        st.one_of(st.integers(-10**6, 10**6), st.booleans(), printable),
                        max_size=4)
contacts = st.lists(st.tuples(ids, printable, printable, tags, attrs, st.booleans()),
                    max_size=20, unique_by=lambda c: c[0].strip())


@given(contacts)
@settings(max_examples=150, deadline=None)
def test_csv_and_jsonl_of_the_same_contacts_read_the_same(
        rows: list[tuple[str, str, str, list[str], dict[str, object], bool]]) -> None:
    rows = [r for r in rows if r[0].strip()]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["external_id", "name", "email", "tags", "attributes", "unsubscribed"])
    jsonl = []
    for external_id, name, email, tag_list, attributes, unsubscribed in rows:
        writer.writerow([external_id, name, email, ";".join(tag_list),
                         json.dumps(attributes), "yes" if unsubscribed else "no"])
        jsonl.append(json.dumps({"external_id": external_id, "name": name.strip() or None,
                                 "email": email.strip() or None, "tags": tag_list or None,
                                 "attributes": attributes, "unsubscribed": unsubscribed}))
    from_csv = accepted(out.getvalue().encode(), CSV)
    from_jsonl = accepted("\n".join(jsonl).encode(), JSONL) if jsonl else []
    assert from_csv == from_jsonl
    assert [c.external_id for c in from_csv] == [r[0].strip() for r in rows]
    assert [c.tags for c in from_csv] == [tuple(sorted(set(r[3]))) or None for r in rows]


@given(st.binary(max_size=300), st.sampled_from([CSV, JSONL]))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_records_refusals_or_a_file_error(data: bytes, fmt: FileFormat) -> None:
    try:
        results = parse(data, fmt)
    except BadRequest as exc:
        assert exc.message
        return
    lines = [r.line for r in results]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    assert all(1 <= line <= data.count(b"\n") + 1 for line in lines)
    for r in results:
        if isinstance(r, Refused):
            assert r.problems and str(r).startswith(f"line {r.line}: ")
        else:
            assert 1 <= len(r.contact.external_id) <= MAX_EXTERNAL_ID
    seen = [r.contact.external_id for r in results if isinstance(r, Accepted)]
    assert len(seen) == len(set(seen))


# --- nesting (a JSON "depth bomb" is a refusal, not a RecursionError) -------------

def nested(depth: int) -> str:
    """A JSON value ``depth`` containers deep: ``[[...]]``."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_ATTRIBUTES_DEPTH, 100, 5000, 50_000])
def test_deeply_nested_attributes_are_refused_by_line_and_field(depth: int) -> None:
    # the attributes object is the first level, so a value of depth d makes d + 1
    jsonl = (f'{{"external_id": "u1", "attributes": {{"a": {nested(depth)}}}}}\n'
             f'{{"external_id": "u2", "orders": {nested(depth)}}}\n'
             '{"external_id": "u3"}\n').encode()
    cell = nested(depth).replace('"', '""')
    csv_data = (f'external_id,attributes\nu1,"{{""a"": {cell}}}"\nu3,\n').encode()
    message = f"attributes: nested deeper than {MAX_ATTRIBUTES_DEPTH} levels"
    assert refusals(jsonl, JSONL) == [f"line 1: {message}", f"line 2: {message}"]
    assert refusals(csv_data, CSV) == [f"line 2: {message}"]
    assert [c.external_id for c in accepted(b'{"external_id": "u3"}\n', JSONL)] == ["u3"]


def test_attributes_as_deep_as_allowed_are_kept() -> None:
    value = json.loads(nested(MAX_ATTRIBUTES_DEPTH - 1))
    data = json.dumps({"external_id": "u1", "attributes": {"a": value}}).encode()
    assert accepted(data, JSONL) == [ContactInput("u1", attributes={"a": value})]
