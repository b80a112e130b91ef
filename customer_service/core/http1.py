"""The pure parts of the lean HTTP/1.1 upstream client (``ai/h11_upstream.py``).

Where a plain-``http://`` upstream lives (``origin``), the request head we send
(``request_head``), the response headers as one lower-case mapping
(``response_headers``), whether a connection may go back to the pool
(``reusable``, ``keeps_alive``), the idle-connection stack (``IdleStack``): a LIFO of
idle connections per origin, so taking one is O(1) and never walks the pool (the cost
httpcore pays on every request), with idle expiry from the cold end; and the decoder of
a chunked response body (``ChunkedBody``), which takes over from h11 after the head.

No sockets and no event loop here: the edge module does the I/O and asks these.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote, urlsplit

from customer_service.errors import AiConnectionError, AiError

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


def keeps_alive(http_version: bytes, connection: Iterable[bytes]) -> bool:
    """Whether a response lets its connection be kept (as h11 decides): HTTP/1.1 or
    later, and no ``close`` token in its ``Connection`` header(s)."""
    if http_version < b"1.1":
        return False
    return not any(token.strip().lower() == b"close"
                   for value in connection for token in value.split(b","))


MAX_CHUNK_LINE = 16 * 1024
"""Longest chunk-size line (with its extensions) or trailer line taken (h11's head limit)."""
_HEX = b"0123456789abcdefABCDEF"
_SIZE, _DATA, _DATA_END, _TRAILER, _END = range(5)


class ChunkedBody:
    """Decodes a chunked response body (RFC 9112 §7.1) fed in pieces of any size:
    ``feed`` returns the payload bytes the piece completes, joined (a fast upstream's
    burst of twenty chunks is one ``bytes``). What h11 does per chunk (a regex, an event
    object, a state machine step) is a ``find`` and a slice here.

    As strict as h11: a size is 1-16 hex digits (h11 takes 20; no upstream sends a chunk
    of 2**64 bytes), extensions after ``;`` are ignored, each
    chunk's data ends with CRLF, lines end with CRLF and are at most ``MAX_CHUNK_LINE``
    bytes; anything else raises ``AiConnectionError``. Trailer fields are read and
    ignored. ``done`` once the last chunk and the trailer section ended; ``extra`` counts
    bytes received past that end (a connection with any must not be reused).
    """

    __slots__ = ("_buf", "_left", "_state", "done", "extra")

    def __init__(self) -> None:
        self._buf = b""
        self._left = 0
        self._state = _SIZE
        self.done = False
        self.extra = 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.extra += len(data)
            return b""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        out: list[bytes] = []
        pos = 0
        end = len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._left, end - pos)
                out.append(data[pos:pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if end - pos < 2:
                    if data[pos] != 0x0D:
                        raise AiConnectionError("upstream body: a chunk's data does not end "
                                                "with CRLF")
                    self._buf = data[pos:]
                    break
                if data[pos] != 0x0D or data[pos + 1] != 0x0A:
                    raise AiConnectionError("upstream body: a chunk's data does not end with CRLF")
                pos += 2
                self._state = _SIZE
            else:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise AiConnectionError("upstream body: a chunk line is too long")
                    self._buf = data[pos:]
                    break
                if eol - pos > MAX_CHUNK_LINE:
                    raise AiConnectionError("upstream body: a chunk line is too long")
                line = data[pos:eol]
                pos = eol + 2
                if state == _SIZE:
                    size = _chunk_size(line)
                    if size:
                        self._left = size
                        self._state = _DATA
                    else:
                        self._state = _TRAILER
                elif not line:  # the empty line after the trailer fields: the end
                    self._state = _END
                    self.done = True
                    self.extra = end - pos
                    break
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)


def _chunk_size(line: bytes) -> int:
    size, extension, _ = line.partition(b";")
    if not extension:  # spaces may end the line (h11 takes them), not come before a ";"
        size = size.rstrip(b" \t")
    if not 1 <= len(size) <= 16 or size.translate(None, _HEX):
        raise AiConnectionError(f"upstream body: bad chunk size {bytes(line[:40])!r}")
    return int(size, 16)


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
