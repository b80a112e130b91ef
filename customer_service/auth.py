"""Password hashing (scrypt) and bearer tokens. Pure functions, no I/O.

Passwords are stored as ``scrypt$n$r$p$salt$hash`` (hex): each hash records its own
cost, so hashes made with an older, lower cost still verify, and ``needs_rehash``
says when one should be replaced (at the next successful login). Tokens (agent login
tokens, visitor resume tokens) are random strings given to the client once;
only their SHA-256 is stored, so a leaked database does not leak sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT_N = 2**17
"""OWASP's advice for scrypt (2^17, r=8, p=1): about 0.3 s and 128 MiB per hash.
The server uses ``[auth] scrypt_n``."""
SCRYPT_R = 8
SCRYPT_P = 1
MAX_SCRYPT_N = 2**20
"""The most a stored hash may ask for (1 GiB at r=8): a larger one does not verify."""
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MIN_PASSWORD_LENGTH = 8


def _maxmem(n: int, r: int, p: int) -> int:
    """What OpenSSL's scrypt needs (128·r·(N+2) + 128·r·p bytes) plus slack: hashlib's
    default limit (32 MiB) refuses anything above N=2^14 at r=8."""
    return 128 * r * (n + 2) + 128 * r * p + (1 << 20)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, *, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r,
                          p=p, dklen=dklen, maxmem=_maxmem(n, r, p))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def hash_parameters(stored: str) -> tuple[int, int, int] | None:
    """A stored hash's (N, r, p), or None when it is not a usable scrypt hash."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        bytes.fromhex(parts[4])
        digest = bytes.fromhex(parts[5])
    except ValueError:
        return None
    if not 16 <= len(digest) <= 64:
        return None
    if not (1 < n <= MAX_SCRYPT_N and n & (n - 1) == 0 and 0 < r <= MAX_SCRYPT_R
            and 0 < p <= MAX_SCRYPT_P):
        return None
    return n, r, p


def verify_password(password: str, stored: str) -> bool:
    parameters = hash_parameters(stored)
    if parameters is None:
        return False
    n, r, p = parameters
    _, _, _, _, salt, digest = stored.split("$")
    expected = bytes.fromhex(digest)
    try:
        computed = _scrypt(password, bytes.fromhex(salt), n, r, p, dklen=len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(computed, expected)


def needs_rehash(stored: str, n: int) -> bool:
    """Whether a hash that just verified should be made again at cost ``n``: it was made
    with a lower N, or another r or p."""
    parameters = hash_parameters(stored)
    if parameters is None:
        return False
    stored_n, r, p = parameters
    return stored_n < n or (r, p) != (SCRYPT_R, SCRYPT_P)


def new_token() -> str:
    """A fresh random bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored for a token: its SHA-256 in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    return None
