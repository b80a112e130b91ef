"""Leave-a-message: the email address a visitor leaves when nobody can answer.

The address is checked here (the widget checks the same rule first): one ``@`` with
something before it, a domain with a dot after it, no spaces or control characters, at
most 254 characters (RFC 5321's limit on a path). Anything stricter refuses real
addresses; the agents write to it, which is the real test.
"""

from __future__ import annotations

import re
from typing import Final

from customer_service.errors import BadRequest

MAX_EMAIL: Final = 254

_EMAIL: Final = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


def check_email(text: str, field: str = "email") -> str:
    """The address without surrounding spaces, or ``BadRequest`` naming ``field``."""
    address = text.strip()
    if not address:
        raise BadRequest(f"field '{field}': an email address is needed")
    if len(address) > MAX_EMAIL:
        raise BadRequest(f"field '{field}': an email address has at most {MAX_EMAIL} characters")
    if not _EMAIL.fullmatch(address) or any(ord(c) < 32 or ord(c) == 127 for c in address):
        raise BadRequest(f"field '{field}': {address[:80]!r} is not an email address "
                         "(name@example.com)")
    return address
