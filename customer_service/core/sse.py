"""An incremental Server-Sent Events decoder: bytes in, ``data`` payloads out.

Pure and bounded: feed it the body as it arrives, in pieces of any size; it
returns the data of each complete event. Lines end with CRLF, LF or CR (a CRLF
split across two pieces counts once); ``:`` lines are comments; ``event``,
``id`` and ``retry`` fields are ignored (OpenAI-compatible streams do not need
them). One UTF-8 byte-order mark at the very start of the stream is skipped, as
the SSE standard says (WHATWG HTML, "Interpreting an event stream"), even when
its three bytes arrive in separate pieces. An event or a line longer than
``max_event_bytes`` raises ``AiBadResponse`` instead of growing memory.

``is_event_stream`` tells whether a ``Content-Type`` announces such a stream.
"""

from __future__ import annotations

from customer_service.errors import AiBadResponse

BOM = b"\xef\xbb\xbf"
EVENT_STREAM = "text/event-stream"


def is_event_stream(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` value is ``text/event-stream``: the type and subtype
    compared case-insensitively (RFC 9110 §8.3.1), any parameters (``; charset=utf-8``)
    allowed."""
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == EVENT_STREAM


class SseDecoder:
    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        self.max_event_bytes = max_event_bytes
        self._line = bytearray()
        self._data: list[str] = []
        self._data_size = 0
        self._after_cr = False
        self._head: bytearray | None = bytearray()
        """The stream's first bytes while they may still be a byte-order mark; then None."""

    def feed(self, piece: bytes) -> list[str]:
        """The data of every event completed by ``piece``, in order."""
        if self._head is not None:
            self._head += piece
            if len(self._head) < len(BOM) and BOM.startswith(self._head):
                return []  # maybe a BOM cut short: wait for the rest
            piece = bytes(self._head)
            self._head = None
            if piece.startswith(BOM):
                piece = piece[len(BOM):]
        events: list[str] = []
        start = 0
        if self._after_cr and piece.startswith(b"\n"):
            start = 1
        self._after_cr = False
        if b"\r" not in piece:  # the usual stream: LF line ends only, split in one call
            lines = (piece[start:] if start else piece).split(b"\n")
            rest = lines.pop()
            for part in lines:
                if self._line:  # the start of this line came in an earlier piece
                    self._line += part
                    self._end_line(events)
                else:
                    self._take_line(part, events)
            if rest:
                self._line += rest
                if len(self._line) > self.max_event_bytes:
                    raise AiBadResponse(f"an event line is over {self.max_event_bytes} bytes")
            return events
        end = len(piece)
        while start < end:
            cut = _next_break(piece, start, end)
            if cut < 0:
                self._line += piece[start:]
                if len(self._line) > self.max_event_bytes:
                    raise AiBadResponse(f"an event line is over {self.max_event_bytes} bytes")
                break
            self._line += piece[start:cut]
            if piece[cut] == 0x0D:
                if cut + 1 < end and piece[cut + 1] == 0x0A:
                    cut += 1
                elif cut + 1 == end:
                    self._after_cr = True
            self._end_line(events)
            start = cut + 1
        return events

    def _end_line(self, events: list[str]) -> None:
        raw = bytes(self._line)
        self._line.clear()
        self._take_line(raw, events)

    def _take_line(self, raw: bytes, events: list[str]) -> None:
        if not raw:
            if self._data:
                events.append("\n".join(self._data))
                self._data = []
                self._data_size = 0
            return
        if raw.startswith(b":"):
            return
        name, _, value = raw.partition(b":")
        if name != b"data":
            return
        if value.startswith(b" "):
            value = value[1:]
        self._data_size += len(value) + 1
        if self._data_size > self.max_event_bytes:
            raise AiBadResponse(f"an event is over {self.max_event_bytes} bytes")
        try:
            self._data.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            raise AiBadResponse("an event is not valid UTF-8") from None


def _next_break(piece: bytes, start: int, end: int) -> int:
    lf = piece.find(b"\n", start, end)
    cr = piece.find(b"\r", start, end)
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(lf, cr)
