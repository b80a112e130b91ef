"""Label rules (core/labels.py): one spelling per label, clear refusals."""

from __future__ import annotations

import pytest

from customer_service.core.labels import MAX_LABEL_CHARS, normalize_label, normalize_labels
from customer_service.errors import BadRequest


@pytest.mark.parametrize(("raw", "label"), [
    ("billing", "billing"),
    ("  VIP ", "vip"),
    ("\uff36\uff29\uff30", "vip"),          # full-width letters (NFKC)
    ("Stra\u00dfe", "strasse"),             # case-folded, not only lowered
    ("follow-up_2", "follow-up_2"),
    ("退款", "退款"),                        # Chinese letters are letters
    ("हिन्दी", "हिन्दी"),                    # combining vowel signs belong to the letter
    ("9to5", "9to5"),
    ("x" * MAX_LABEL_CHARS, "x" * MAX_LABEL_CHARS),
])
def test_normalized(raw: str, label: str) -> None:
    assert normalize_label(raw) == label


@pytest.mark.parametrize(("raw", "problem"), [
    ("", "cannot be empty"),
    ("   ", "cannot be empty"),
    ("x" * (MAX_LABEL_CHARS + 1), f"too long: at most {MAX_LABEL_CHARS} characters, not 33"),
    ("two words", "may only contain letters, digits, '-' and '_' (not ' ')"),
    ("a/b", "(not '/')"),
    ("<b>", "must begin with a letter or a digit"),
    ("-x", "must begin with a letter or a digit"),
    ("_x", "must begin with a letter or a digit"),
    ("emoji\U0001f600", "(not '\U0001f600')"),
    ("tab\there", "(not '\\t')"),
])
def test_refused_with_the_reason(raw: str, problem: str) -> None:
    with pytest.raises(BadRequest) as caught:
        normalize_label(raw)
    assert problem in caught.value.message


def test_several_drop_duplicates_in_their_spelling() -> None:
    assert normalize_labels(["VIP", "billing", "vip", " Billing"]) == ["vip", "billing"]
