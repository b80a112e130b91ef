"""The one exception tree of customer-service.

Every error the core or an edge raises on purpose is a ``CustomerServiceError``.
Each edge converts it in exactly one place: the socket handler turns it into an
``error`` frame (``code`` is the protocol's ``error`` field), the HTTP layer into
a JSON body with ``http_status``, the CLI into a ``click`` error.
"""

from __future__ import annotations

from collections.abc import Iterator


class CustomerServiceError(Exception):
    """Base of every error raised on purpose by customer-service."""

    code: str = "internal"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(CustomerServiceError):
    """A client broke the wire contract or asked for what it may not do.

    Answered with an ``error`` frame echoing ``client_id`` (the frame's ``id``).
    """

    def __init__(self, message: str, *, client_id: str | None = None) -> None:
        super().__init__(message)
        self.client_id = client_id


class BadRequest(ProtocolError):
    code = "bad_request"
    http_status = 400


class TooLarge(ProtocolError):
    code = "too_large"
    http_status = 413


class HeadTooLarge(TooLarge):
    """Request line and headers over the limit (431, RFC 6585)."""

    http_status = 431


class RateLimited(ProtocolError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, client_id: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message, client_id=client_id)
        self.retry_after = retry_after
        """Whole seconds to wait, sent as HTTP ``Retry-After`` when known."""


class Unauthorized(ProtocolError):
    code = "unauthorized"
    http_status = 401


class Forbidden(ProtocolError):
    code = "forbidden"
    http_status = 403


class NotFound(ProtocolError):
    code = "not_found"
    http_status = 404


class Conflict(ProtocolError):
    code = "conflict"
    http_status = 409


class Busy(ProtocolError):
    """The server takes no more texts for now (admission control): resend the same frame,
    with the same id, after ``retry_after`` seconds. Nothing of the frame was stored."""

    code = "busy"
    http_status = 503

    def __init__(self, message: str, *, client_id: str | None = None,
                 retry_after: float) -> None:
        super().__init__(message, client_id=client_id)
        self.retry_after = retry_after


class DeadlineExceeded(ProtocolError):
    code = "timeout"
    http_status = 504


class IdentityInvalid(ProtocolError):
    """A visitor's identity (``user_id`` and ``user_hash`` in hello) was refused: malformed,
    incomplete, not matching, or sent to a server that identifies nobody. The socket is
    closed after the error frame; nothing is linked."""

    code = "identity_invalid"
    http_status = 403


class IdentityRequired(IdentityInvalid):
    """``[identity] required = true`` and the hello did not identify the visitor."""

    code = "identity_required"


class Blocked(ProtocolError):
    """The visitor, or the network it comes from, is blocked (``blocks add``, the dashboard):
    the socket gets this error frame, then is closed (1008, reason ``blocked``)."""

    code = "blocked"
    http_status = 403


class Unavailable(CustomerServiceError):
    code = "unavailable"
    http_status = 503


class StorageError(Unavailable):
    """The database failed or could not be reached."""


class DatabaseMissing(StorageError):
    """The configured database (a MySQL database, an SQLite file) does not exist, and the
    caller asked not to create it (``db status``, ``doctor``)."""


class ConnectionClosed(CustomerServiceError):
    """A WebSocket is closed: by a close frame (``code``, ``reason``), or by the connection
    going away (1006). Raised by the server's connections and by the client alike."""

    def __init__(self, close_code: int, reason: str = "") -> None:
        super().__init__(f"connection closed ({close_code}{': ' + reason if reason else ''})")
        self.close_code = close_code
        self.reason = reason


class WebSocketError(CustomerServiceError):
    """A WebSocket client could not open or use its socket; the message says why."""

    code = "unavailable"
    http_status = 503


class WebSocketTimeout(WebSocketError):
    """Opening the WebSocket took longer than its deadline."""


class HandshakeFailed(WebSocketError):
    """The server did not switch protocols properly. ``status`` is the HTTP status it
    answered with (None when the answer was not HTTP at all) and ``headers`` its response
    headers, lower-case names, as far as they could be read."""

    def __init__(self, message: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class ListenError(CustomerServiceError):
    """The server cannot listen on its address (port taken, address not local...)."""


class BusError(Unavailable):
    """Redis, the bus between instances, failed or did not answer in time."""


class ConfigError(CustomerServiceError):
    """The configuration file is wrong; the message names the file, line and key."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        where = path or "<config>"
        if line is not None:
            where = f"{where}:{line}"
        full = f"{where}: {message}" if path or line is not None else message
        super().__init__(full)
        self.path = path
        self.key = key
        self.line = line


class AiError(Unavailable):
    """The AI upstream could not give a reply. ``kind`` labels it in metrics."""

    kind = "error"


class AiTimeout(AiError):
    kind = "timeout"


class AiRateLimited(AiError):
    kind = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AiUpstreamError(AiError):
    """An HTTP error status from the upstream (``status`` says which)."""

    kind = "http_error"

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        """The upstream's ``Retry-After`` in seconds (honoured on 503), if it sent one."""

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.status in (408, 409)


class AiConnectionError(AiError):
    kind = "connection"


class AiBadResponse(AiError):
    kind = "malformed"


class AiCircuitOpen(AiError):
    kind = "circuit_open"


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def the_error(exc: BaseException, *, besides: tuple[type[BaseException], ...] = ()
              ) -> CustomerServiceError | None:
    """The one ``CustomerServiceError`` behind ``exc``, looking through exception groups
    (trio wraps what fails inside a nursery, several levels deep) and past ``besides``
    (the cancellations the failure caused on its way out); None when there is another
    error, or several."""
    found = {id(leaf): leaf for leaf in _leaves(exc) if not isinstance(leaf, besides)}
    if len(found) == 1:  # one error, even when the groups hold it in two places
        (leaf,) = found.values()
        if isinstance(leaf, CustomerServiceError):
            return leaf
    return None
