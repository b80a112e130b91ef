"""``contacts import|list|show|tag|untag|unsubscribe|delete`` against a real SQLite store."""

from __future__ import annotations

import json
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from customer_service.core.models import Contact, ContactInput
from customer_service.storage.base import Store
from tests.cli.conftest import CliRun

StoreCall = Callable[[Callable[[Store], Awaitable[Any]]], Any]

GOOD_CSV = (b"external_id,name,email,phone,tags,attributes,unsubscribed,plan\n"
            b'u1,Ann Lee,ann@example.com,+33 1,vip;news,"{""age"": 40}",no,pro\n'
            b"u2,Bob,bob@example.com,,news,,yes,\n"
            b"u3,Cy,,,,,,\n")
GOOD_JSONL = (b'{"external_id": "u1", "name": "Ann Lee", "email": "ann@example.com", '
              b'"phone": "+33 1", "tags": ["vip", "news"], "attributes": {"age": 40}, '
              b'"unsubscribed": false, "plan": "pro"}\n'
              b'{"external_id": "u2", "name": "Bob", "email": "bob@example.com", '
              b'"tags": ["news"], "unsubscribed": true}\n'
              b'{"external_id": "u3", "name": "Cy"}\n')
BAD_CSV = (b"external_id,name,attributes\n"   # 1
           b"u1,Ann,\n"                        # 2
           b',Nobody,"{}"\n'                   # 3: missing external_id
           b'u2,Bob,"{oops"\n'                 # 4: bad JSON in attributes
           b"u1,Ann again,\n"                  # 5: duplicate of line 2
           b"u3,Cl\xe9o,\n"                    # 6: a Latin-1 byte
           b"u4,Di,\n")                        # 7
BAD_JSONL = (b'{"external_id": "u1", "name": "Ann"}\n'
             b'{"name": "Nobody"}\n'
             b'{"external_id": "u2", "attributes": [1]}\n'
             b'{"external_id": "u1", "name": "Ann again"}\n'
             b'{"external_id": "u3", "name": "Cl\xe9o"}\n'
             b'{"external_id": "u4", "name": "Di"\n'
             b'{"external_id": "u5", "name": "Ed"}\n')


def all_contacts(store_call: StoreCall) -> list[Contact]:
    async def work(store: Store) -> list[Contact]:
        return await store.list_contacts(limit=1000)

    result: list[Contact] = store_call(work)
    return result


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# --- import ------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "data"), [("people.csv", GOOD_CSV),
                                            ("people.jsonl", GOOD_JSONL)])
def test_import_good_file_in_either_format(run: CliRun, store_call: StoreCall, tmp_path: Path,
                                           name: str, data: bytes) -> None:
    path = write(tmp_path, name, data)
    result = run("contacts", "import", path)
    assert result.exit_code == 0, result.output
    assert result.output == "Imported 3 contacts (3 created, 0 updated), 0 refused.\n"
    found = {c.external_id: c for c in all_contacts(store_call)}
    assert sorted(found) == ["u1", "u2", "u3"]
    ann = found["u1"]
    assert (ann.name, ann.email, ann.phone, ann.tags, ann.unsubscribed) == (
        "Ann Lee", "ann@example.com", "+33 1", ("news", "vip"), False)
    assert ann.attributes == {"age": 40, "plan": "pro"}
    assert found["u2"].unsubscribed and found["u2"].tags == ("news",)
    assert found["u3"].tags == () and found["u3"].attributes == {}

    again = run("contacts", "import", path)
    assert again.output == "Imported 3 contacts (0 created, 3 updated), 0 refused.\n"
    assert len(all_contacts(store_call)) == 3


@pytest.mark.parametrize(("name", "data", "expected"), [
    ("bad.csv", BAD_CSV, [
        "line 3: external_id: missing",
        "line 4: attributes: invalid JSON (JSON is malformed: object keys must be strings "
        "(byte 1))",
        "line 5: external_id: 'u1' already on line 2",
        "line 6: name: not UTF-8 (byte 0xe9)"]),
    ("bad.jsonl", BAD_JSONL, [
        "line 2: external_id: missing",
        "line 3: attributes: must be a JSON object, not a list",
        "line 4: external_id: 'u1' already on line 1",
        "line 5: not UTF-8 (byte 0xe9 at byte 34 of the line)",
        "line 6: invalid JSON (Input data was truncated)"]),
])
def test_bad_lines_are_named_and_nothing_is_imported_without_skip_errors(
        run: CliRun, store_call: StoreCall, tmp_path: Path, name: str, data: bytes,
        expected: list[str]) -> None:
    path = write(tmp_path, name, data)
    result = run("contacts", "import", path)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[:-1] == expected
    good = 2
    assert lines[-1] == (f"Error: {len(expected)} line(s) of {path} refused, so nothing was "
                         f"imported: fix them, or add --skip-errors to import the {good} good "
                         "line(s)")
    assert all_contacts(store_call) == []

    skipped = run("contacts", "import", path, "--skip-errors")
    assert skipped.exit_code == 0, skipped.output
    assert skipped.output.splitlines() == [
        *expected, f"Imported {good} contacts ({good} created, 0 updated), "
                   f"{len(expected)} refused."]
    found = {c.external_id: c.name for c in all_contacts(store_call)}
    assert found == ({"u1": "Ann", "u4": "Di"} if name.endswith(".csv")
                     else {"u1": "Ann", "u5": "Ed"})


def test_import_in_batches(run: CliRun, store_call: StoreCall, tmp_path: Path) -> None:
    rows = "".join(f"u{i},Name {i}\n" for i in range(1, 8))
    path = write(tmp_path, "seven.csv", ("external_id,name\n" + rows).encode())

    async def seed(store: Store) -> None:
        await store.upsert_contacts([ContactInput("u3", "Old name", tags=("kept",))])

    store_call(seed)
    result = run("contacts", "import", path, "--batch-size", "2")
    assert result.output == "Imported 7 contacts (6 created, 1 updated), 0 refused.\n"
    found = {c.external_id: c for c in all_contacts(store_call)}
    assert len(found) == 7 and found["u3"].name == "Name 3"
    assert found["u3"].tags == ("kept",)  # no tags column: the stored ones stay


def test_only_the_first_refusals_are_printed(run: CliRun, tmp_path: Path) -> None:
    rows = "".join(f",nobody {i}\n" for i in range(60))
    path = write(tmp_path, "many.csv", ("external_id,name\nu1,Ann\n" + rows).encode())
    result = run("contacts", "import", path, "--skip-errors")
    lines = result.output.splitlines()
    assert lines[0] == "line 3: external_id: missing"
    assert lines[49] == "line 52: external_id: missing"
    assert lines[50:] == ["… and 10 more refused line(s).",
                          "Imported 1 contact (1 created, 0 updated), 60 refused."]


def test_format_option_and_extension(run: CliRun, store_call: StoreCall,
                                     tmp_path: Path) -> None:
    path = write(tmp_path, "people.txt", GOOD_JSONL)
    unknown = run("contacts", "import", path)
    assert unknown.exit_code == 1
    assert unknown.output == (f"Error: {path}: cannot tell the format from the file name "
                              "(.csv, .jsonl or .ndjson); say it with --format csv or "
                              "--format jsonl\n")
    result = run("contacts", "import", path, "--format", "jsonl")
    assert result.exit_code == 0 and len(all_contacts(store_call)) == 3
    wrong = run("contacts", "import", path, "--format", "csv")
    assert wrong.exit_code == 1
    assert wrong.output.startswith(f"Error: {path}: line 1: the header has no external_id "
                                   "column")


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"id,name\n1,Ann\n", "line 1: the header has no external_id column (it has 'id', "
                          "'name'); the first line of a CSV file names the columns"),
])
def test_file_errors(run: CliRun, tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, "x.csv", data)
    result = run("contacts", "import", path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: {message}\n"


def test_a_json_depth_bomb_is_a_refused_line(run: CliRun, store_call: StoreCall,
                                             tmp_path: Path) -> None:
    bomb = "[" * 100_000 + "]" * 100_000
    path = write(tmp_path, "bomb.jsonl", (f'{{"external_id": "u1"}}\n'
                                          f'{{"external_id": "u2", "attributes": {{"a": {bomb}}}}}\n'
                                          ).encode())
    result = run("contacts", "import", path)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "line 2: attributes: nested deeper than 32 levels"
    assert all_contacts(store_call) == []


def test_missing_file_and_bad_batch_size(run: CliRun, tmp_path: Path) -> None:
    missing = run("contacts", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    path = write(tmp_path, "x.csv", GOOD_CSV)
    zero = run("contacts", "import", path, "--batch-size", "0")
    assert zero.exit_code == 2 and "--batch-size" in zero.output


# --- list and show -----------------------------------------------------------------

@pytest.fixture
def imported(run: CliRun, tmp_path: Path) -> None:
    result = run("contacts", "import", write(tmp_path, "people.csv", GOOD_CSV))
    assert result.exit_code == 0, result.output


def test_list_table(run: CliRun, imported: None) -> None:
    result = run("contacts", "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "3 contact(s)"
    row = next(line for line in lines if " u1 " in line)
    assert "Ann Lee" in row and "ann@example.com" in row and "news, vip" in row
    assert "yes" in next(line for line in lines if " u2 " in line)
    assert "More with" not in result.output


def test_list_json_filters_and_pages(run: CliRun, imported: None) -> None:
    everything = json.loads(run("contacts", "list", "--json").output)
    assert [c["external_id"] for c in everything] == ["u1", "u2", "u3"]
    first = everything[0]
    assert set(first) == {"id", "external_id", "name", "email", "phone", "tags", "attributes",
                          "unsubscribed", "last_campaign_at", "created_at", "updated_at"}
    assert first["tags"] == ["news", "vip"] and first["attributes"] == {"age": 40, "plan": "pro"}
    assert first["last_campaign_at"] is None and first["created_at"].endswith("Z")

    def ids(*args: str) -> list[str]:
        result = run("contacts", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [c["external_id"] for c in json.loads(result.output)]

    assert ids("--tag", "news") == ["u1", "u2"]
    assert ids("--tag", "news", "--tag", "vip") == ["u1"]
    assert ids("--tag", "nobody-has-it") == []
    assert ids("--unsubscribed") == ["u2"]
    assert ids("--subscribed") == ["u1", "u3"]
    assert ids("--limit", "2") == ["u1", "u2"]
    assert ids("--after", str(everything[1]["id"])) == ["u3"]
    page = run("contacts", "list", "--limit", "2")
    assert f"More with --after {everything[1]['id']}." in page.output


def test_list_bad_values(run: CliRun) -> None:
    assert run("contacts", "list", "--limit", "0").exit_code == 2
    # past the largest id a database holds: a usage error, not SQLite's OverflowError
    for after in ("-1", str(2**63), "9" * 30):
        too_far = run("contacts", "list", "--after", after)
        assert too_far.exit_code == 2, too_far.output
        assert "Invalid value for '--after'" in too_far.output
        assert "Traceback" not in too_far.output
    assert run("contacts", "list", "--after", str(2**63 - 1)).exit_code == 0
    bad_tag = run("contacts", "list", "--tag", "a;b")
    assert bad_tag.exit_code == 1
    assert bad_tag.output == ("Error: tag 'a;b': a tag cannot hold ';' or ',' (they separate "
                              "tags in CSV)\n")


def test_show_and_show_json(run: CliRun, imported: None) -> None:
    shown = run("contacts", "show", "u1")
    assert shown.exit_code == 0
    lines = [line.split(None, 1) for line in shown.output.splitlines()]
    fields = {parts[0]: parts[1] if len(parts) > 1 else "" for parts in lines}
    assert fields["external_id"] == "u1" and fields["name"] == "Ann Lee"
    assert fields["tags"] == "news, vip" and fields["unsubscribed"] == "no"
    assert '"plan": "pro"' in shown.output
    data = json.loads(run("contacts", "show", "u2", "--json").output)
    assert data["external_id"] == "u2" and data["unsubscribed"] is True
    assert data["tags"] == ["news"] and data["attributes"] == {}


def test_unknown_external_id_is_named(run: CliRun, imported: None) -> None:
    for args in (("show", "nope"), ("unsubscribe", "nope"), ("delete", "nope", "--yes"),
                 ("tag", "u1", "nope", "--tag", "x"), ("untag", "nope", "--tag", "x")):
        result = run("contacts", *args)
        assert result.exit_code == 1, args
        assert result.output == ("Error: no contact with external_id 'nope' (see "
                                 "'customer-service contacts list')\n"), args


def test_an_unknown_long_external_id_is_named_in_one_short_line(run: CliRun) -> None:
    result = run("contacts", "show", "x" * 5000)
    assert result.exit_code == 1
    assert result.output == ("Error: no contact with external_id 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                             "xxxxxxxxxx…' (see 'customer-service contacts list')\n")


# --- changes -----------------------------------------------------------------------

def tags_of(run: CliRun, external_id: str) -> list[str]:
    tags: list[str] = json.loads(run("contacts", "show", external_id, "--json").output)["tags"]
    return tags


def test_tag_and_untag(run: CliRun, imported: None) -> None:
    result = run("contacts", "tag", "u1", "u3", "u3", "--tag", "spring", "--tag", " b2b ")
    assert result.exit_code == 0, result.output
    assert result.output == "Tagged 2 contact(s) with b2b, spring.\n"
    assert tags_of(run, "u1") == ["b2b", "news", "spring", "vip"]
    assert tags_of(run, "u3") == ["b2b", "spring"]
    removed = run("contacts", "untag", "u1", "u3", "--tag", "spring")
    assert removed.output == "Removed spring from 2 contact(s).\n"
    assert tags_of(run, "u1") == ["b2b", "news", "vip"] and tags_of(run, "u3") == ["b2b"]


def test_tag_with_an_unknown_id_changes_nothing(run: CliRun, imported: None) -> None:
    result = run("contacts", "tag", "u1", "ghost", "--tag", "spring")
    assert result.exit_code == 1 and "'ghost'" in result.output
    assert tags_of(run, "u1") == ["news", "vip"]
    assert run("contacts", "tag", "u1").exit_code == 2  # --tag is required
    assert run("contacts", "tag", "--tag", "x").exit_code == 2  # an id is required
    empty = run("contacts", "tag", "u1", "--tag", " ")
    assert empty.exit_code == 1 and empty.output == "Error: a tag cannot be empty\n"


def test_unsubscribe_and_undo(run: CliRun, imported: None) -> None:
    result = run("contacts", "unsubscribe", "u1")
    assert result.output == "Unsubscribed contact u1 (Ann Lee): campaigns skip it.\n"
    assert json.loads(run("contacts", "show", "u1", "--json").output)["unsubscribed"] is True
    undo = run("contacts", "unsubscribe", "u1", "--undo")
    assert undo.output == "Contact u1 (Ann Lee) is subscribed again.\n"
    assert json.loads(run("contacts", "show", "u1", "--json").output)["unsubscribed"] is False


def test_delete_asks_unless_yes(run: CliRun, store_call: StoreCall, imported: None) -> None:
    kept = run("contacts", "delete", "u1", input="n\n")
    assert kept.exit_code == 1 and "Delete contact u1 (Ann Lee)?" in kept.output
    assert "Aborted" in kept.output
    assert len(all_contacts(store_call)) == 3
    confirmed = run("contacts", "delete", "u1", input="y\n")
    assert confirmed.exit_code == 0 and "Deleted contact u1 (Ann Lee)." in confirmed.output
    forced = run("contacts", "delete", "u3", "--yes")
    assert forced.output == "Deleted contact u3 (Cy).\n"
    assert [c.external_id for c in all_contacts(store_call)] == ["u2"]
    assert run("contacts", "show", "u1").exit_code == 1


# --- the documented session ----------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
WITH_ERRORS = (b"external_id,name,email,attributes\n"
               b"u1001,Ann Lee,ann@example.com,\n"
               b",Nobody,nobody@example.com,\n"
               b'u1004,Dan,dan@example.com,"{city: Lyon}"\n'
               b"u1001,Ann again,ann2@example.com,\n"
               b"u1005,Ren\xe9e,renee@example.com,\n")


def documented_session(doc: Path) -> list[tuple[list[str], list[str]]]:
    """(arguments, output lines) of each ``contacts`` command the doc's Contacts section
    shows, in order; those piped into another command or printing times are left out."""
    text = doc.read_text(encoding="utf-8")
    section = text[text.index("\n## Contacts\n"):]
    section = section[: section.index("\n## ", 5)]
    lines = section.splitlines()
    runs = []
    for i, line in enumerate(lines):
        if not line.startswith("$ ") or "|" in line:
            continue
        output = []
        for following in lines[i + 1:]:
            if following.startswith(("$ ", "```")):
                break
            output.append(following)
        if not any("(UTC)" in shown for shown in output):
            runs.append((shlex.split(line[2:])[1:], output))
    return runs


def test_the_documented_session_prints_what_the_docs_show(run: CliRun, tmp_path: Path) -> None:
    contacts_doc = (REPO / "docs" / "contacts.md").read_text(encoding="utf-8")
    csv_block = contacts_doc.split("```csv\n", 1)[1].split("```", 1)[0]
    write(tmp_path, "customers.csv", csv_block.encode())
    write(tmp_path, "with-errors.csv", WITH_ERRORS)
    runs = documented_session(REPO / "docs" / "cli.md")
    assert len(runs) == 7
    for args, shown in runs:
        answer = "y\n" if args[:2] == ["contacts", "delete"] else None
        result = run(*args, input=answer)
        assert result.output.splitlines() == shown, args
    for block in ("contacts import with-errors.csv\n", "--skip-errors\n"):
        start = contacts_doc.index(block)  # contacts.md shows the same two runs
        assert contacts_doc[start:].split("\n$ ", 1)[0].split("```", 1)[0] in (
            REPO / "docs" / "cli.md").read_text(encoding="utf-8")
