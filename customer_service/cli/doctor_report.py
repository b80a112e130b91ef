"""What ``customer-service doctor`` reports: verdicts, and the pure helpers that word them
(masking secrets, describing an error chain, the summary line)."""

# ruff: noqa: PLC0415

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from customer_service.errors import CustomerServiceError

Status = Literal["ok", "warn", "fail", "skip"]

CHECK_NAMES = ("config", "database", "redis", "ai", "file descriptors", "public url")
EXTRA_FDS = 100
"""Descriptors a process needs besides client sockets: database pool, Redis, AI pool, files."""
DEPLOY_DOC = "docs/deploy.md"
PING_ID = "doctor"


@dataclass(slots=True)
class Check:
    name: str
    status: Status
    detail: str


class Failed(Exception):
    """A check failed for a reason it understands: ``detail`` says what and what to do."""

    def __init__(self, detail: str, status: Status = "fail") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status: Status = status


class Progress:
    """What a check is doing right now, so a timeout can say where it stopped."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.target = ""  # what the check talks to, when the step does not say

    def where(self) -> str:
        return f"{self.target}: " if self.target else ""


# --- helpers (pure) ----------------------------------------------------------------------

_SECRET_NAME = re.compile(r"pass|secret|token|key|auth", re.IGNORECASE)
KEY_LIKE = re.compile(r"\b(sk|pk|rk)-[\w*\-]{6,}")


def mask_url(url: str) -> str:
    """``url`` with any password (in the user part, or a query parameter such as
    ``password=`` or ``api-key=``) replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)
    netloc = parts.netloc
    if password is not None:
        user = parts.username or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_NAME.search(key) for key, _ in pairs):
            query = urlencode([(key, "***" if _SECRET_NAME.search(key) else value)
                               for key, value in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc or "", parts.path, query, parts.fragment))


def expected_descriptors(connections: int, workers: int) -> int:
    """Descriptors one process needs: its share of the connections plus the fixed extras."""
    return math.ceil(connections / max(1, workers)) + EXTRA_FDS


def summary_line(checks: list[Check]) -> str:
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    warnings = f"{warned} warning{'s' if warned != 1 else ''}"
    if failed:
        text = f"{failed} check{'s' if failed != 1 else ''} failed"
        return f"{text} ({warnings})." if warned else f"{text}."
    return f"All checks passed ({warnings})." if warned else "All checks passed."


def leaf_error(exc: BaseException) -> BaseException:
    """The error behind ``exc``: single-exception groups (trio nurseries) unwrapped."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes, groups unwrapped, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = leaf_error(exc)
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nxt = current.__cause__ or current.__context__
        current = leaf_error(nxt) if nxt is not None else None


def os_reason(exc: BaseException) -> str | None:
    """The operating system's word for a network failure in ``exc``'s chain, if any."""
    import socket
    import ssl

    for link in error_chain(exc):
        if isinstance(link, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({link.verify_message or link.reason})"
        if isinstance(link, ssl.SSLError):  # an OSError whose errno is not the OS's
            return f"TLS handshake failed ({link.reason or link})"
        if isinstance(link, socket.gaierror):
            return f"cannot resolve the host name ({link.strerror})"
        if isinstance(link, OSError) and link.errno and link.errno > 0:
            reason = os.strerror(link.errno)
            return reason[:1].lower() + reason[1:]
    return None


def describe_error(exc: BaseException) -> str:
    """One line for an unexpected error: the OS reason when there is one, else type and text."""
    reason = os_reason(exc)
    if reason:
        return reason
    leaf = leaf_error(exc)
    if isinstance(leaf, CustomerServiceError):
        return leaf.message
    text = str(leaf).strip() or "no details"
    return f"{type(leaf).__name__}: {text}"


def as_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"


# --- the checks --------------------------------------------------------------------------


def scrub(text: str, secret: str) -> str:
    """``text`` without ``secret`` or anything shaped like an API key (upstreams quote
    the key they refused, partly masked or not)."""
    if secret:
        text = text.replace(secret, "***")
    return KEY_LIKE.sub(lambda m: f"{m.group(1)}-***", text)
