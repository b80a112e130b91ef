"""Bytes that are not UTF-8 reach the CLI from a shell (``$(printf '\\xff')``, a Latin-1
file on stdin): each is one ``Error:`` line naming the argument or stdin, never a
traceback (they used to end in ``UnicodeEncodeError`` inside the store), and nothing is
stored."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import CliRun

NOT_UTF8 = "caf\udce9"
"""How Python hands a program the Latin-1 bytes ``caf\\xe9`` of its command line."""


@pytest.mark.parametrize("args", [
    ("canned", "add", "x", NOT_UTF8),
    ("conversations", "search", NOT_UTF8),
    ("blocks", "add", "--ip", "10.0.0.1", "--reason", NOT_UTF8),
    ("canned", "add", NOT_UTF8, "hi"),
])
def test_an_argument_that_is_not_utf8_is_one_error_line(run: CliRun,
                                                        args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.output == "Error: the command line is not UTF-8: 'caf\\xe9'\n"
    assert run("canned", "list", "--json").output == "[]\n"
    assert json.loads(run("blocks", "list", "--json").output) == []


def test_stdin_that_is_not_utf8_is_one_error_line(run: CliRun) -> None:
    result = run("canned", "add", "terms", "-", input=b"Conditions g\xe9n\xe9rales\n")
    assert result.exit_code == 1, result.output
    assert result.output == "Error: the text read from stdin is not UTF-8 (byte 12)\n"
    assert run("canned", "list", "--json").output == "[]\n"
