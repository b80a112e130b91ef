"""Identified visitors: is this hello's ``user_id`` really the one the site signed?

The site computes ``user_hash = HMAC-SHA256(key=[identity] secret, message=user_id)`` as
lowercase hex on its server (the scheme Intercom and Chatwoot use) and gives both to the
widget; the server recomputes it and compares in constant time. The key is the secret's
UTF-8 bytes as written in the config (a hex-looking secret is not decoded), the message the
user id's UTF-8 bytes, exactly as sent (no trimming, no case folding).

Pure: the visitor session calls ``identify`` with the hello's fields and the config and
gets the verified user id, None (an anonymous visitor, allowed), or an ``IdentityInvalid``
to send before closing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from typing import Final

from customer_service.errors import IdentityInvalid, IdentityRequired

__all__ = ["USER_ID_MAX", "check_user_id", "expected_hash", "hash_matches", "identify"]

USER_ID_MAX: Final = 255
"""The longest user id, in characters: the contacts' ``external_id`` column holds 255."""

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def expected_hash(secret: str, user_id: str) -> str:
    """The ``user_hash`` a site sends for ``user_id``: HMAC-SHA256, lowercase hex."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def hash_matches(secret: str, user_id: str, user_hash: str) -> bool:
    """Whether ``user_hash`` (hex, either case) is ``user_id``'s, compared in constant time.

    Anything but 64 hex digits is simply not a match. ``hmac.compare_digest`` on ASCII
    strings of equal length takes the same time wherever they differ, so the answer tells
    an attacker nothing about how close a guess was.
    """
    if not _HEX64.fullmatch(user_hash):
        return False
    return hmac.compare_digest(expected_hash(secret, user_id), user_hash.lower())


def check_user_id(user_id: str) -> str:
    """Refuse a user id that cannot name a contact: empty, longer than ``USER_ID_MAX``
    characters, or holding a control character (or a lone surrogate, which is no text)."""
    if not user_id:
        raise IdentityInvalid("user_id is empty")
    if len(user_id) > USER_ID_MAX:
        raise IdentityInvalid(f"user_id is {len(user_id)} characters; the limit is {USER_ID_MAX}")
    for ch in user_id:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise IdentityInvalid(f"user_id holds a control character (U+{ord(ch):04X})")
    return user_id


def identify(secret: str, required: bool, user_id: str | None,
             user_hash: str | None) -> str | None:
    """Decide on a hello's identity: the verified user id, or None for an anonymous
    visitor (when anonymous ones are allowed); raise ``IdentityInvalid`` (or
    ``IdentityRequired``) saying what is wrong otherwise.

    A half identity (one field without the other) is refused rather than ignored: a site
    that sends a user id believes the visitor is identified, and would otherwise never learn
    that the widget is not.
    """
    if user_id is None and user_hash is None:
        if required:
            raise IdentityRequired(
                "this chat is for signed-in users: hello must carry user_id and user_hash")
        return None
    if not secret:
        raise IdentityInvalid(
            "this server does not identify visitors ([identity] secret is not set); "
            "leave out user_id and user_hash")
    if user_id is None:
        raise IdentityInvalid("user_hash was sent without user_id")
    if user_hash is None:
        raise IdentityInvalid("user_id was sent without user_hash")
    check_user_id(user_id)
    if not hash_matches(secret, user_id, user_hash):
        raise IdentityInvalid("user_hash does not match user_id")
    return user_id
