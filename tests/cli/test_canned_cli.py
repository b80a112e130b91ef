"""``canned add|list|remove`` against a real SQLite store: what an admin sees, and one
``Error:`` line for each bad input."""

from __future__ import annotations

import json

import pytest

from customer_service.core.canned import MAX_TEXT
from tests.cli.conftest import CliRun


def test_add_list_remove(run: CliRun) -> None:
    empty = run("canned", "list")
    assert empty.exit_code == 0
    assert empty.output == ("No canned replies yet: add one with 'customer-service canned add "
                            "SHORTCUT TEXT'.\n")
    assert run("canned", "list", "--json").output == "[]\n"

    added = run("canned", "add", "Refund", "Hi {visitor.name|there}, refunds take 5 days.")
    assert added.exit_code == 0, added.output
    assert added.output == "Added canned reply /refund (id 1).\n"
    assert run("canned", "add", "hello", "-", input="Hello, I am {agent.name}.\n").exit_code == 0

    table = run("canned", "list")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0] == "2 canned replies"
    rows = [line for line in lines if line.startswith("│")]
    assert "/hello" in rows[0] and "Hello, I am {agent.name}." in rows[0]
    assert "/refund" in rows[1] and "Hi {visitor.name|there}, refunds take 5 days." in rows[1]

    listed = json.loads(run("canned", "list", "--json").output)
    assert [(r["shortcut"], r["text"]) for r in listed] == [
        ("hello", "Hello, I am {agent.name}."),
        ("refund", "Hi {visitor.name|there}, refunds take 5 days.")]
    assert listed[1]["id"] == 1 and listed[1]["created_at"].endswith("Z")

    removed = run("canned", "remove", "HELLO")
    assert removed.exit_code == 0 and removed.output == "Removed canned reply /hello.\n"
    assert [r["shortcut"] for r in json.loads(run("canned", "list", "--json").output)] == [
        "refund"]


@pytest.mark.parametrize(("args", "message"), [
    (("add", "x", "Hi {visitor.phone}"),
     "unknown field {visitor.phone} in the text; the fields are {visitor.name}, "
     "{visitor.email}, {agent.name}, {contact.name}, {contact.email}, {contact.phone}, "
     "{contact.external_id}, {conversation.id}"),
    (("add", "x", "  "), "the text is empty"),
    (("add", "x", "y" * (MAX_TEXT + 1)),
     f"the text has {MAX_TEXT + 1} characters; at most {MAX_TEXT}"),
    (("add", "x", "Hi {visitor.name"), "the text: unbalanced '{' at character 4: close the "
     "field with '}' or write '{{' for a literal brace"),
    (("add", "re fund", "hi"), "the shortcut 're fund' may hold only letters, digits, '-' "
     "and '_'"),
    (("add", "", "hi"), "the shortcut is empty"),
    (("add", "x" * 33, "hi"), f"the shortcut '{'x' * 33}' is longer than 32 characters"),
    (("remove", "nope"), "no canned reply with the shortcut 'nope' (see 'customer-service "
     "canned list')"),
    (("remove", "a.b"), "the shortcut 'a.b' may hold only letters, digits, '-' and '_'"),
])
def test_bad_input_is_one_error_line(run: CliRun, args: tuple[str, ...], message: str) -> None:
    result = run("canned", *args)
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    assert run("canned", "list", "--json").output == "[]\n"


def test_a_duplicate_shortcut_is_refused_and_the_first_kept(run: CliRun) -> None:
    assert run("canned", "add", "refund", "first").exit_code == 0
    duplicate = run("canned", "add", "REFUND", "second")
    assert duplicate.exit_code == 1
    assert duplicate.output == "Error: a canned reply with the shortcut 'refund' exists already\n"
    assert [r["text"] for r in json.loads(run("canned", "list", "--json").output)] == ["first"]
