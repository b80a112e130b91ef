"""The pure parts of the lean HTTP/1.1 upstream client (``ai/h11_upstream.py``).

Where a plain-``http://`` upstream lives (``origin``), the request head we send
(``request_head``), the response headers as one lower-case mapping
(``response_headers``), whether a connection may go back to the pool
(``reusable``), and the idle-connection stack (``IdleStack``): a LIFO of idle
connections per origin, so taking one is O(1) and never walks the pool (the cost
httpcore pays on every request), with idle expiry from the cold end.

No sockets and no event loop here: the edge module does the I/O and asks these.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote, urlsplit

from customer_service.errors import AiError

T = TypeVar("T")

@dataclass(frozen=True, slots=True)
class Origin:
    """Host and port of a plain-HTTP upstream, and the path prefix of its API."""

    host: str
    port: int
    prefix: str  # "/v1/" style: always starts and ends with "/"

    @property
    def host_header(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == 80 else f"{host}:{self.port}").encode("ascii")

    def target(self, path: str) -> bytes:
        """The request target of ``path`` relative to the API prefix (``chat/completions``)."""
        return (self.prefix + path.lstrip("/")).encode("ascii")


def origin(base_url: str) -> Origin:
    """The origin of an ``http://`` base URL; ``AiError`` for anything else."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise AiError(f"the lean HTTP/1.1 client takes http:// URLs only, not {base_url!r}")
    if parts.username is not None or parts.password is not None:
        raise AiError("the lean HTTP/1.1 client takes no user:password in the URL")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise AiError(f"bad port in {base_url!r}: {exc}") from None
    try:  # an internationalised name as its ASCII (IDNA) form, for the Host header
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise AiError(f"bad host in {base_url!r}: {exc}") from None
    # Percent-encode what a request line cannot carry (non-ASCII, spaces), as httpx does;
    # "%" stays, so an already encoded path is sent as written.
    prefix = "/" + quote(parts.path.strip("/"), safe="/%:@!$&'()*+,;=~")
    return Origin(host, port, prefix.rstrip("/") + "/")


def uses_lean_client(base_url: str, choice: str) -> bool:
    """``[ai] http_client``: ``auto`` takes the h11 client for ``http://`` upstreams
    without a user:password part (HTTP/2 is TLS-only here, so ``[ai] http2`` changes
    nothing for them); ``httpx`` always takes httpx; ``https://`` always goes through
    httpx (TLS, HTTP/2)."""
    parts = urlsplit(base_url)
    return (choice == "auto" and parts.scheme == "http" and bool(parts.hostname)
            and parts.username is None and parts.password is None)


def request_head(origin: Origin, method: str, path: str, headers: Iterable[tuple[str, str]],
                 body_length: int | None) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """Method, target and headers of one request: ``Host`` first, the caller's
    headers, then ``Content-Length`` when there is a body."""
    head = [(b"host", origin.host_header)]
    head.extend((name.lower().encode("ascii"), value.encode("latin-1"))
                for name, value in headers)
    if body_length is not None:
        head.append((b"content-length", str(body_length).encode("ascii")))
    return method.encode("ascii"), origin.target(path), head


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response headers by lower-case name; repeated names joined with ", " (as httpx's
    ``Headers.get`` does)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def reusable(our_state: str, their_state: str, body_read_to_end: bool,
             unread: int = 0) -> bool:
    """A connection goes back to the pool only when its response was read to the end
    and both sides of h11 are DONE (not MUST_CLOSE: ``Connection: close``, HTTP/1.0, an
    error); anything else (cancelled mid-body, a failure) closes it. ``unread`` bytes
    received past the end of the response (a body on a 204, more than Content-Length,
    a second response) answer nothing we asked: kept, they would be read as the next
    request's response, so such a connection is closed too."""
    return (body_read_to_end and our_state == "DONE" and their_state == "DONE"
            and not unread)


class IdleStack(Generic[T]):
    """Idle keep-alive connections of one origin, newest on top.

    ``take`` pops the newest (the warmest socket) after dropping those idle longer than
    ``expiry`` from the cold end; ``put`` pushes one back with the time it went idle.
    Returns what expired so the caller closes it: this class does no I/O.
    """

    def __init__(self, expiry: float, limit: int) -> None:
        self.expiry = expiry
        self.limit = limit
        self._idle: deque[tuple[float, T]] = deque()

    def __len__(self) -> int:
        return len(self._idle)

    def expired(self, now: float) -> list[T]:
        """Remove and return the connections idle longer than ``expiry``."""
        gone: list[T] = []
        idle = self._idle
        while idle and now - idle[0][0] > self.expiry:
            gone.append(idle.popleft()[1])
        return gone

    def take(self, now: float) -> tuple[T | None, float, list[T]]:
        """The newest idle connection (or None), how long it was idle, and the expired
        ones to close."""
        gone = self.expired(now)
        if not self._idle:
            return None, 0.0, gone
        since, conn = self._idle.pop()
        return conn, now - since, gone

    def put(self, conn: T, now: float) -> list[T]:
        """Keep ``conn`` idle; return what must be closed (expired ones, and the coldest
        when more than ``limit`` are idle)."""
        gone = self.expired(now)
        self._idle.append((now, conn))
        while len(self._idle) > self.limit:
            gone.append(self._idle.popleft()[1])
        return gone

    def drain(self) -> list[T]:
        """Every idle connection (at close)."""
        gone = [conn for _, conn in self._idle]
        self._idle.clear()
        return gone
