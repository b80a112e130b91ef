"""Conversation labels (``billing``, ``vip``, ``退款``): what a label may be, one spelling each.

A label is 1 to ``MAX_LABEL_CHARS`` characters of letters (any script), digits, ``-``
and ``_``, beginning with a letter or a digit (so that ``-x`` is never taken for a
command-line option). It is compared and stored in one spelling: NFKC-normalized
(full-width ``VIP`` is plain ``VIP``), trimmed and case-folded (``VIP`` is ``vip``), so
two agents typing it differently get the same label.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from customer_service.errors import BadRequest

MAX_LABEL_CHARS = 32
MAX_LABELS = 20
"""Labels one conversation may carry: a filter, not a notebook."""

_MARKS = frozenset({"Mn", "Mc"})
"""Combining marks: part of a letter in many scripts (Devanagari vowel signs, Thai)."""


def label_problem(label: str) -> str | None:
    """What is wrong with an already normalized label, or None."""
    if not label:
        return "a label cannot be empty"
    if len(label) > MAX_LABEL_CHARS:
        return (f"label {label[:40]!r} is too long: at most {MAX_LABEL_CHARS} characters, "
                f"not {len(label)}")
    if not label[0].isalnum():
        return f"label {label!r} must begin with a letter or a digit"
    for char in label:
        if not (char.isalnum() or char in "-_" or unicodedata.category(char) in _MARKS):
            return (f"label {label!r} may only contain letters, digits, '-' and '_' "
                    f"(not {char!r})")
    return None


def normalize_label(raw: str) -> str:
    """The label's one spelling; ``BadRequest`` naming what is wrong with it."""
    label = unicodedata.normalize("NFKC", raw).strip().casefold()
    problem = label_problem(label)
    if problem is not None:
        raise BadRequest(problem)
    return label


def normalize_labels(raw: Iterable[str]) -> list[str]:
    """Several labels, each normalized, duplicates dropped, in the order given."""
    return list(dict.fromkeys(normalize_label(item) for item in raw))
