"""What counts as text that shows something: chat messages and AI replies alike."""

from __future__ import annotations

import unicodedata


def visible(text: str) -> bool:
    """Whether ``text`` shows anything: not empty, not only whitespace (no-break spaces
    included) and invisible format characters (zero-width spaces and joiners, BOMs)."""
    return any(not char.isspace() and unicodedata.category(char) != "Cf" for char in text)
