"""Identified visitors: the hash a site computes, its constant-time check, and the decision
on a hello's identity fields (``core/identity.py``)."""

from __future__ import annotations

import pytest

from customer_service.core.identity import (
    USER_ID_MAX,
    check_user_id,
    expected_hash,
    hash_matches,
    identify,
)
from customer_service.errors import IdentityInvalid, IdentityRequired

SECRET = "s3cret-identity-key-0123"

KNOWN = [
    # (secret, user id, HMAC-SHA256 hex): computed independently with
    # `printf %s "$ID" | openssl dgst -sha256 -hmac "$SECRET"` and Node's crypto.createHmac;
    # docs/identity.md's examples must give the same (tests/unit/test_identity_docs.py).
    (SECRET, "user-42", "2caefd02f84e0e15cbc29ea2c1c67ff39a43eb93fa10136b8c18a30bee184f0b"),
    (SECRET, "Zoë 🌍", "2282754ec091c8303a95ebee11935515ebc2cf2ccaf4fdd378cc6cdb8dcb313d"),
    ("k" * 32, "1", "707db812ff6c540849b7ec7f00a6cc6eae7d9a92abcfd3e5480c0c1f07ac9b57"),
]


@pytest.mark.parametrize(("secret", "user_id", "digest"), KNOWN)
def test_expected_hash_gives_the_known_answers(secret: str, user_id: str, digest: str) -> None:
    assert expected_hash(secret, user_id) == digest


@pytest.mark.parametrize(("secret", "user_id", "digest"), KNOWN)
def test_a_matching_hash_is_accepted_in_either_case(secret: str, user_id: str,
                                                    digest: str) -> None:
    assert hash_matches(secret, user_id, digest)
    assert hash_matches(secret, user_id, digest.upper())
    assert identify(secret, False, user_id, digest.upper()) == user_id


@pytest.mark.parametrize("bad", [
    "",                                   # nothing
    "2caefd02",                           # too short
    "2caefd02f84e0e15cbc29ea2c1c67ff39a43eb93fa10136b8c18a30bee184f0",   # 63 digits
    "2caefd02f84e0e15cbc29ea2c1c67ff39a43eb93fa10136b8c18a30bee184f0b0",  # 65 digits
    "2caefd02f84e0e15cbc29ea2c1c67ff39a43eb93fa10136b8c18a30bee184f0g",   # not hex
    " 2caefd02f84e0e15cbc29ea2c1c67ff39a43eb93fa10136b8c18a30bee184f0b",  # padded
    "2caefd02f84e0e15cbc29ea2c1c67ff39a43eb93fa10136b8c18a30bee184f0c",   # one digit off
    "é" * 64,                             # not ASCII: compare_digest would raise on it
])
def test_anything_but_the_right_hex_does_not_match(bad: str) -> None:
    assert not hash_matches(SECRET, "user-42", bad)


def test_the_hash_depends_on_the_secret_and_on_the_exact_user_id() -> None:
    good = expected_hash(SECRET, "user-42")
    assert not hash_matches(SECRET + "x", "user-42", good)
    assert not hash_matches(SECRET, "user-42 ", good)   # no trimming
    assert not hash_matches(SECRET, "USER-42", good)    # no case folding


@pytest.mark.parametrize("user_id", ["1", "a" * USER_ID_MAX, "Zoë 🌍", "user@example.com",
                                     "tab\u00a0nbsp"])
def test_user_ids_that_name_a_contact(user_id: str) -> None:
    assert check_user_id(user_id) == user_id


@pytest.mark.parametrize(("user_id", "problem"), [
    ("", "user_id is empty"),
    ("a" * (USER_ID_MAX + 1), "user_id is 256 characters; the limit is 255"),
    ("line\nbreak", r"control character \(U\+000A\)"),
    ("nul\x00", r"control character \(U\+0000\)"),
    ("del\x7f", r"control character \(U\+007F\)"),
    ("c1\x85", r"control character \(U\+0085\)"),
    ("lone\ud800", r"control character \(U\+D800\)"),
])
def test_user_ids_refused_with_the_reason(user_id: str, problem: str) -> None:
    with pytest.raises(IdentityInvalid, match=problem):
        check_user_id(user_id)
    # identify checks the id before the hash, so the reason is the id's, not "no match"
    with pytest.raises(IdentityInvalid, match=problem):
        identify(SECRET, False, user_id, "0" * 64)


def test_an_anonymous_hello_is_allowed_unless_identity_is_required() -> None:
    assert identify(SECRET, False, None, None) is None
    assert identify("", False, None, None) is None
    with pytest.raises(IdentityRequired, match="for signed-in users") as refused:
        identify(SECRET, True, None, None)
    assert refused.value.code == "identity_required"


@pytest.mark.parametrize(("secret", "user_id", "user_hash", "problem"), [
    (SECRET, "user-42", None, "user_id was sent without user_hash"),
    (SECRET, None, KNOWN[0][2], "user_hash was sent without user_id"),
    (SECRET, "user-42", "0" * 64, "user_hash does not match user_id"),
    (SECRET, "user-43", KNOWN[0][2], "user_hash does not match user_id"),
    ("", "user-42", KNOWN[0][2], r"does not identify visitors \(\[identity\] secret is not set\)"),
    ("", "user-42", None, "does not identify visitors"),
])
def test_identities_refused_with_the_reason(secret: str, user_id: str | None,
                                           user_hash: str | None, problem: str) -> None:
    with pytest.raises(IdentityInvalid, match=problem) as refused:
        identify(secret, False, user_id, user_hash)
    assert refused.value.code == "identity_invalid"
    if secret:  # required = true refuses a bad identity the same way, not as "required"
        with pytest.raises(IdentityInvalid, match=problem) as again:
            identify(secret, True, user_id, user_hash)
        assert again.value.code == "identity_invalid"
