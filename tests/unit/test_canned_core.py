"""core/canned.py: shortcuts, texts and their fields, checked before they are stored."""

from __future__ import annotations

import pytest

from customer_service.core.canned import (
    FIELDS,
    MAX_TEXT,
    CannedError,
    check_shortcut,
    check_text,
    render,
)


@pytest.mark.parametrize(("raw", "stored"), [
    ("refund", "refund"), ("Refund", "refund"), ("/refund", "refund"), (" a-b_9 ", "a-b_9"),
    ("x" * 32, "x" * 32)])
def test_good_shortcuts(raw: str, stored: str) -> None:
    assert check_shortcut(raw) == stored


@pytest.mark.parametrize(("raw", "message"), [
    ("", "the shortcut is empty"), ("/", "the shortcut is empty"),
    ("re fund", "'re fund' may hold only letters, digits, '-' and '_'"),
    ("réfund", "may hold only letters"), ("a.b", "may hold only"),
    ("x" * 33, "longer than 32 characters")])
def test_bad_shortcuts_are_refused_naming_them(raw: str, message: str) -> None:
    with pytest.raises(CannedError, match=message.replace("(", r"\(")) as caught:
        check_shortcut(raw)
    assert caught.value.http_status == 400


def test_every_field_is_accepted_with_or_without_a_fallback() -> None:
    text = " ".join(f"{{{name}}} {{{name}|none}}" for name in FIELDS)
    assert check_text(text) == text


def test_an_unknown_field_is_refused_naming_it() -> None:
    with pytest.raises(CannedError, match=r"unknown field \{visitor\.phone\}") as caught:
        check_text("Hi {visitor.name}, call {visitor.phone}")
    assert "{visitor.name}" in caught.value.message  # the message lists the known fields


@pytest.mark.parametrize(("text", "message"), [
    ("", "the text is empty"), ("  \n\t ", "the text is empty"),
    ("x" * (MAX_TEXT + 1), f"the text has {MAX_TEXT + 1} characters; at most {MAX_TEXT}"),
    ("Hi {visitor.name", "unbalanced '{'"), ("a } b", "unbalanced '}'"),
    ("Hi {}", "empty field"), ("{name}", r"unknown field \{name\}")])
def test_bad_texts_are_refused(text: str, message: str) -> None:
    with pytest.raises(CannedError, match=message):
        check_text(text)


def test_trailing_blanks_are_dropped_and_the_longest_text_fits() -> None:
    assert check_text("Hello  \n") == "Hello"
    assert len(check_text("y" * MAX_TEXT)) == MAX_TEXT


def test_render_fills_fields_with_fallbacks_and_literal_braces() -> None:
    text = "Hi {visitor.name|there}, I am {agent.name}. {{ref}} #{conversation.id}{contact.phone}"
    assert render(text, {"visitor.name": "Ann", "agent.name": "Bob", "conversation.id": "7"}) \
        == "Hi Ann, I am Bob. {ref} #7"
    assert render(text, {"visitor.name": "", "agent.name": "Bob"}) == "Hi there, I am Bob. {ref} #"
