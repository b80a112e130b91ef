"""A small RFC 6455 WebSocket codec: bytes in → events out, events → bytes out.

Pure code in the style of h11 and wsproto: no sockets, no trio, no clock. The
transport reads from the socket, hands the bytes to ``FrameDecoder.feed`` and
acts on the events; it writes whatever the ``FrameEncoder`` methods return.
No extensions (``permessage-deflate``) and no subprotocols are negotiated, so
every reserved bit must be zero.

Why not wsproto: on the hot path (one small masked text frame in, one small
unmasked text frame out per chat message) this codec does the minimum of work
per frame; ``bench/codec.py`` measures the difference.

Failure model: anything the peer does wrong raises ``ProtocolFailure`` with the
close code to send (1002 protocol error, 1007 invalid UTF-8, 1009 too big). The
decoder is then dead: every later ``feed`` raises the same failure. Events
decoded earlier in the same ``feed`` call ride along on ``ProtocolFailure.events``
so that a valid message followed by garbage in one TCP segment is delivered
exactly as it would have been had the garbage arrived in a later segment.

Handshake helpers (``validate_client_handshake``, ``accept_key``,
``accept_headers``) are pure too; h11 parses the HTTP request around them.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Literal

__all__ = [
    "BinaryMessage",
    "Close",
    "CloseCode",
    "Event",
    "FrameDecoder",
    "FrameEncoder",
    "HandshakeError",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolFailure",
    "Role",
    "TextMessage",
    "accept_headers",
    "accept_key",
    "mask",
    "validate_client_handshake",
]

Role = Literal["server", "client"]


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    """The close codes this codec produces or that a transport commonly sends."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: what ``Close.code`` says for an empty close frame
    ABNORMAL = 1006  # never on the wire: the transport's code for "TCP went away without a close"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


# --------------------------------------------------------------------------- events


@dataclass(slots=True)
class TextMessage:
    text: str


@dataclass(slots=True)
class BinaryMessage:
    data: bytes


@dataclass(slots=True)
class Ping:
    payload: bytes = b""


@dataclass(slots=True)
class Pong:
    payload: bytes = b""


@dataclass(slots=True)
class Close:
    """The peer's close frame. ``code`` is 1005 when the frame carried no status code."""

    code: int
    reason: str = ""


# Not frozen on purpose: a frozen slotted dataclass costs ~0.1 µs more per event
# (its __init__ goes through object.__setattr__), which is ~10 % of a decode.
Event = TextMessage | BinaryMessage | Ping | Pong | Close


class ProtocolFailure(Exception):
    """The peer broke RFC 6455; close the connection with ``code`` and ``reason``.

    Deliberately not a ``CustomerServiceError``: that tree's ``code`` is a string
    naming an ``error`` frame and every edge turns it into a reply, whereas this
    failure is never answered in-band; the transport sends a close frame with the
    integer ``code`` and tears the socket down (handlers then see
    ``ConnectionClosed``). Keeping it separate also keeps the codec free of
    project imports, so it can be tested and benchmarked alone.

    ``events`` holds the events completed earlier in the same ``feed`` call.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.events: list[Event] = []


# --------------------------------------------------------------------------- masking

_XOR_TABLES: Final = [bytes(a ^ b for a in range(256)) for b in range(256)]
# Measured crossover: below ~400 bytes one big-int XOR is faster; above it four
# strided bytes.translate() calls (C loops over a 256-byte table) win by up to 3x.
_TRANSLATE_FROM: Final = 400


def mask(payload: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (masking and unmasking are the same)."""
    n = len(payload)
    if n < _TRANSLATE_FROM:
        return (int.from_bytes(payload, "little")
                ^ int.from_bytes((key * ((n >> 2) + 1))[:n], "little")).to_bytes(n, "little")
    out = bytearray(payload)
    out[0::4] = out[0::4].translate(_XOR_TABLES[key[0]])
    out[1::4] = out[1::4].translate(_XOR_TABLES[key[1]])
    out[2::4] = out[2::4].translate(_XOR_TABLES[key[2]])
    out[3::4] = out[3::4].translate(_XOR_TABLES[key[3]])
    return bytes(out)


# --------------------------------------------------------------------------- close codes


def _valid_close_code(code: int) -> bool:
    """Codes a peer may put on the wire (RFC 6455 §7.4 plus the IANA registry).

    1004 is reserved, 1005/1006/1015 are local-only, 1016-2999 are unassigned
    protocol codes, 3000-3999 are registered and 4000-4999 private use.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _parse_close(payload: bytes) -> Close:
    n = len(payload)
    if n == 0:
        return Close(1005, "")
    if n == 1:
        raise ProtocolFailure(1002, "close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not _valid_close_code(code):
        raise ProtocolFailure(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolFailure(1007, "close reason is not valid UTF-8") from None
    return Close(code, reason)


# --------------------------------------------------------------------------- decoder

_Utf8Decoder: Final = codecs.getincrementaldecoder("utf-8")


def _check_utf8(utf8: codecs.IncrementalDecoder, data: bytes | bytearray, final: bool) -> None:
    """Feed the next bytes of a text message to its decoder; 1007 at the first invalid one."""
    try:
        utf8.decode(data, final)
    except UnicodeDecodeError:
        raise ProtocolFailure(1007, "text message is not valid UTF-8") from None
    pending = utf8.getstate()[0]
    # CPython's decoder holds back ED A0..BF (a UTF-16 surrogate) until a third
    # byte arrives; it can never become valid, so fail now.
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        raise ProtocolFailure(1007, "text message is not valid UTF-8")


def _rotated(key: bytes | bytearray, offset: int) -> bytes | bytearray:
    """The masking key as it applies from payload byte ``offset`` on."""
    shift = offset & 3
    return key[shift:] + key[:shift] if shift else key


def _check_role(role: str) -> bool:
    """True for the server role (expects masked frames, sends unmasked)."""
    if role not in ("server", "client"):
        raise ValueError(f"role must be 'server' or 'client', not {role!r}")
    return role == "server"


class FrameDecoder:
    """Turns the bytes one peer sends into events; one instance per connection.

    ``feed`` returns the events completed by the new bytes. Fragmented messages
    are reassembled (control frames may arrive between fragments); text is
    UTF-8-checked as its bytes arrive, even inside a frame that comes in pieces,
    so an invalid sequence fails (1007) with the ``feed`` that brings it, not at
    the end of the frame or message. A text frame that arrives whole is checked
    by the one ``decode`` that builds its ``str``; only a frame cut across feeds
    pays for an incremental decoder.

    Memory: an idle decoder owns nothing but its slots (~100 bytes). A bytearray
    exists only while a frame is incomplete and a message buffer only while a
    fragmented message is in progress; both are dropped as soon as they are done.
    A message (fragmented or not) larger than ``max_message_bytes`` fails with
    1009 as soon as the frame header announcing it arrives, before any of its
    payload is buffered.

    After a ``Close`` event the decoder ignores all further bytes (RFC 6455 allows
    nothing after a close frame); the transport answers the close and hangs up.
    """

    __slots__ = ("_buf", "_checked", "_closed", "_expect_mask", "_failure", "_max", "_msg_buf",
                 "_msg_opcode", "_need", "_text_head", "_utf8")

    def __init__(self, role: Role = "server", *, max_message_bytes: int = 1 << 20) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be at least 1")
        self._expect_mask = _check_role(role)
        self._max = max_message_bytes
        self._buf: bytearray | None = None  # unparsed bytes of an incomplete frame
        self._need = 0  # len(_buf) needed before parsing is worth retrying
        self._msg_opcode = 0  # opcode of the fragmented message in progress, 0 when none
        self._msg_buf: bytearray | None = None  # its payload so far
        self._utf8: codecs.IncrementalDecoder | None = None  # its UTF-8 checker (text only)
        self._checked = 0  # payload bytes of the incomplete frame already UTF-8-checked
        # (and, server role, already unmasked in place in _buf)
        self._text_head = 0  # header length of an incomplete text frame to check, for feed
        self._closed = False
        self._failure: ProtocolFailure | None = None

    @property
    def closed(self) -> bool:
        """True once a close frame arrived; ``feed`` then ignores everything."""
        return self._closed

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame or fragmented message (0 when idle)."""
        return len(self._buf or b"") + len(self._msg_buf or b"")

    def feed(self, data: bytes | bytearray) -> list[Event]:
        """Consume ``data`` (any chunk of the stream) and return the events it completes."""
        if self._failure is not None:
            raise ProtocolFailure(self._failure.code, self._failure.reason)
        if self._closed:
            return []
        buf = self._buf
        if buf is not None:
            buf += data
            if len(buf) < self._need:
                if self._text_head:  # more of an incomplete text frame: check it now
                    try:
                        self._check_partial(buf)
                    except ProtocolFailure as exc:
                        raise self._fail(exc, []) from None
                return []
            self._buf = None
            data = buf
        events: list[Event] = []
        try:
            pos = self._decode(data, events)
            if pos < len(data):
                rest = self._buf = bytearray(data[pos:]) if pos or data is not buf else buf
                if self._text_head:
                    self._check_partial(rest)
        except ProtocolFailure as exc:
            raise self._fail(exc, events) from None
        return events

    def _fail(self, exc: ProtocolFailure, events: list[Event]) -> ProtocolFailure:
        """Enter the failed state; ``exc`` carries the events completed before it."""
        self._failure = exc
        self._buf = self._msg_buf = self._utf8 = None
        self._msg_opcode = self._checked = self._text_head = 0
        exc.events = events
        return exc

    def _decode(self, data: bytes | bytearray, events: list[Event]) -> int:
        """Decode every complete frame in ``data``; return where the first incomplete one starts."""
        end = len(data)
        pos = 0
        while True:
            avail = end - pos
            if avail < 2:
                self._need = 2
                if avail:
                    self._text_head = 0
                return pos
            b0 = data[pos]
            b1 = data[pos + 1]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            length = b1 & 0x7F
            # Everything checkable from the first two bytes fails here, before
            # the rest of the header or any payload has arrived.
            if b0 & 0x70:
                raise ProtocolFailure(1002, "reserved bits set but no extension was negotiated")
            if bool(b1 & 0x80) is not self._expect_mask:
                raise ProtocolFailure(1002, "client frames must be masked" if self._expect_mask
                                      else "server frames must not be masked")
            if opcode >= 8:
                if opcode > 10:
                    raise ProtocolFailure(1002, f"unknown opcode {opcode:#x}")
                if not fin:
                    raise ProtocolFailure(1002, "fragmented control frame")
                if length > 125:
                    raise ProtocolFailure(1002, "control frame payload longer than 125 bytes")
            elif opcode == 0:
                if not self._msg_opcode:
                    raise ProtocolFailure(1002, "continuation frame without a message in progress")
            elif opcode > 2:
                raise ProtocolFailure(1002, f"unknown opcode {opcode:#x}")
            elif self._msg_opcode:
                raise ProtocolFailure(1002, "new data frame while a fragmented message is in progress")

            head = 2
            if length == 126:
                if avail < 4:
                    self._need = 4
                    self._text_head = 0
                    return pos
                length = (data[pos + 2] << 8) | data[pos + 3]
                if length < 126:
                    raise ProtocolFailure(1002, "payload length not minimally encoded")
                head = 4
            elif length == 127:
                if avail < 10:
                    self._need = 10
                    self._text_head = 0
                    return pos
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
                if length >> 63:
                    raise ProtocolFailure(1002, "64-bit payload length with the top bit set")
                if length < 65536:
                    raise ProtocolFailure(1002, "payload length not minimally encoded")
                head = 10
            if opcode < 8:
                so_far = len(self._msg_buf) if self._msg_buf is not None else 0
                if so_far + length > self._max:
                    raise ProtocolFailure(1009, f"message longer than {self._max} bytes")
            if self._expect_mask:
                head += 4
            frame_end = pos + head + length
            if frame_end > end:
                self._need = frame_end - pos
                # A text frame whose header is here: feed checks its payload as it
                # arrives, once it is in _buf (so it can be unmasked in place).
                self._text_head = head if (
                    opcode == 1 or (opcode == 0 and self._msg_opcode == 1)) else 0
                return pos

            checked = self._checked
            if checked:  # checked (and unmasked) while it arrived; data is that buffer
                self._checked = self._text_head = 0
                payload = self._finish_partial(data, pos + head, frame_end, checked)
            elif self._expect_mask:
                payload = mask(data[pos + head:frame_end], data[pos + head - 4:pos + head])
            else:
                payload = bytes(data[pos + head:frame_end])
            pos = frame_end

            if fin and opcode == 1:
                if checked:  # the decode below checks it all again
                    self._utf8 = None
                try:
                    events.append(TextMessage(payload.decode("utf-8")))
                except UnicodeDecodeError:
                    raise ProtocolFailure(1007, "text message is not valid UTF-8") from None
            elif fin and opcode == 2:
                events.append(BinaryMessage(payload))
            elif opcode == 8:
                events.append(_parse_close(payload))
                self._closed = True
                self._msg_buf = self._utf8 = None
                self._msg_opcode = 0
                return end
            elif opcode == 9:
                events.append(Ping(payload))
            elif opcode == 10:
                events.append(Pong(payload))
            else:
                self._fragment(opcode, fin, payload, events, checked)

    def _check_partial(self, buf: bytearray) -> None:
        """UTF-8-check the newly arrived part of the incomplete text frame at the start of
        ``buf`` (``self._checked`` bytes of its payload were checked before).

        Server role: the checked bytes are unmasked in place, so that no byte is
        unmasked twice; ``_finish_partial`` unmasks the rest when the frame is complete.
        """
        head = self._text_head
        start = head + self._checked
        end = len(buf)
        if end <= start:
            return
        chunk: bytes | bytearray
        if self._expect_mask:
            chunk = mask(buf[start:end], _rotated(buf[head - 4:head], self._checked))
            buf[start:end] = chunk
        else:
            chunk = buf[start:end]
        self._checked = end - head
        utf8 = self._utf8
        if utf8 is None:  # an unfragmented text frame, or a message's first fragment
            utf8 = self._utf8 = _Utf8Decoder()
        # ASCII bytes after a complete character are complete characters: nothing to decode.
        if not chunk.isascii() or utf8.getstate()[0]:
            _check_utf8(utf8, chunk, False)

    def _finish_partial(self, data: bytes | bytearray, start: int, end: int, checked: int) -> bytes:
        """The payload ``data[start:end]`` of a frame whose first ``checked`` bytes were
        unmasked in place by ``_check_partial`` (``data`` is then our buffer)."""
        if self._expect_mask:
            assert isinstance(data, bytearray)
            rest = start + checked
            data[rest:end] = mask(data[rest:end], _rotated(data[start - 4:start], checked))
        return bytes(data[start:end])

    def _fragment(self, opcode: int, fin: int, payload: bytes, events: list[Event],
                  checked: int) -> None:
        """A non-final data frame or a continuation frame.

        Fragments go into one bytearray rather than a list so that a peer sending
        thousands of 1-byte fragments costs ``max_message_bytes`` at most, not
        ~50 bytes of object overhead per fragment.
        """
        if opcode:
            self._msg_opcode = opcode
            self._msg_buf = bytearray(payload)
            if opcode == 1 and self._utf8 is None:  # else created by _check_partial
                self._utf8 = _Utf8Decoder()
        else:
            assert self._msg_buf is not None
            self._msg_buf += payload
        utf8 = self._utf8
        if utf8 is not None:  # the first ``checked`` bytes went through it as they arrived
            _check_utf8(utf8, payload[checked:] if checked else payload, bool(fin))
        if fin:
            whole = self._msg_buf
            assert whole is not None
            if self._msg_opcode == 1:
                events.append(TextMessage(whole.decode("utf-8")))
            else:
                events.append(BinaryMessage(bytes(whole)))
            self._msg_buf = self._utf8 = None
            self._msg_opcode = 0


# --------------------------------------------------------------------------- encoder

_PACK_16: Final = struct.Struct("!BBH").pack
_PACK_64: Final = struct.Struct("!BBQ").pack
_TEXT_HEADERS: Final = [bytes((0x81, n)) for n in range(126)]
_BINARY_HEADERS: Final = [bytes((0x82, n)) for n in range(126)]
_CONTROL_OPCODES: Final = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_ALL_OPCODES: Final = frozenset(Opcode)
_MAX_CLOSE_REASON: Final = 123


class FrameEncoder:
    """Builds frames to send. The server role sends unmasked frames; the client
    role masks each frame with a fresh key from ``os.urandom`` (RFC 6455 §5.3
    requires an unpredictable key).

    A small server text message is one list lookup and one concatenation.
    Misuse by the caller (bad opcode, oversized control payload, a close code
    that may not be sent) raises ``ValueError``.
    """

    __slots__ = ("_mask",)

    def __init__(self, role: Role = "server") -> None:
        self._mask = not _check_role(role)

    def encode_text(self, text: str) -> bytes:
        payload = text.encode("utf-8")
        if len(payload) < 126 and not self._mask:
            return _TEXT_HEADERS[len(payload)] + payload
        return self.encode_frame(Opcode.TEXT, payload)

    def encode_binary(self, data: bytes | bytearray) -> bytes:
        if len(data) < 126 and not self._mask:
            return _BINARY_HEADERS[len(data)] + data
        return self.encode_frame(Opcode.BINARY, data)

    def encode_ping(self, payload: bytes = b"") -> bytes:
        return self.encode_frame(Opcode.PING, payload)

    def encode_pong(self, payload: bytes = b"") -> bytes:
        return self.encode_frame(Opcode.PONG, payload)

    def encode_close(self, code: int | None = 1000, reason: str = "") -> bytes:
        """A close frame; ``code=None`` sends an empty one (the peer sees 1005).

        A reason longer than the 123 bytes a control frame leaves room for is cut
        at a character boundary rather than refused: closing must not fail
        because a diagnostic was long.
        """
        if code is None:
            if reason:
                raise ValueError("a close reason needs a close code")
            return self.encode_frame(Opcode.CLOSE, b"")
        if not _valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent")
        raw = reason.encode("utf-8")
        if len(raw) > _MAX_CLOSE_REASON:
            raw = raw[:_MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
        return self.encode_frame(Opcode.CLOSE, code.to_bytes(2, "big") + raw)

    def encode_frame(self, opcode: int, payload: bytes | bytearray, *, fin: bool = True) -> bytes:
        """One frame of any kind; ``fin=False`` and ``Opcode.CONTINUATION`` build fragmented messages."""
        if opcode not in _ALL_OPCODES:
            raise ValueError(f"unknown opcode {opcode:#x}")
        n = len(payload)
        if opcode in _CONTROL_OPCODES and (n > 125 or not fin):
            raise ValueError("control frames carry at most 125 bytes and cannot be fragmented")
        b0 = (opcode | 0x80) if fin else opcode
        bit = 0x80 if self._mask else 0
        if n < 126:
            header = bytes((b0, bit | n))
        elif n < 65536:
            header = _PACK_16(b0, bit | 126, n)
        else:
            header = _PACK_64(b0, bit | 127, n)
        if self._mask:
            key = os.urandom(4)
            return header + key + mask(payload, key)
        return header + payload


# --------------------------------------------------------------------------- handshake

_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(Exception):
    """The HTTP request is not an acceptable WebSocket opening handshake.

    ``status`` is the HTTP status to answer with and ``headers`` the extra
    response headers that status calls for:

    * 426 Upgrade Required: the request does not ask for ``Upgrade: websocket``
      (a plain GET to a WebSocket endpoint) or asks for a protocol version other
      than 13. The response names what the server speaks (``Upgrade: websocket``,
      or ``Sec-WebSocket-Version: 13`` per RFC 6455 §4.4).
    * 400 Bad Request: the request asks for a WebSocket but is malformed
      (``Connection`` lacks ``upgrade``, or ``Sec-WebSocket-Key`` is missing,
      repeated, or not 16 bytes of base64), RFC 6455 §4.2.1.
    """

    def __init__(self, status: int, message: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.headers = headers


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _tokens(values: list[str]) -> set[str]:
    return {token.strip().lower() for value in values for token in value.split(",")}


def validate_client_handshake(headers: Iterable[tuple[bytes | str, bytes | str]]) -> str:
    """Check the WebSocket headers of an opening request and return its ``Sec-WebSocket-Key``.

    ``headers`` are (name, value) pairs as h11 gives them (bytes) or as str; names
    are matched case-insensitively and repeated headers are combined. The method
    (GET) and HTTP version (1.1) are the transport's business, not checked here. Raises
    ``HandshakeError`` with the status to answer.
    """
    seen: dict[str, list[str]] = {}
    for name, value in headers:
        seen.setdefault(_text(name).strip().lower(), []).append(_text(value).strip())
    if "websocket" not in _tokens(seen.get("upgrade", [])):
        raise HandshakeError(426, "this endpoint only speaks WebSocket: send 'Upgrade: websocket'",
                             (("Upgrade", "websocket"), ("Connection", "Upgrade")))
    if "upgrade" not in _tokens(seen.get("connection", [])):
        raise HandshakeError(400, "the Connection header must contain 'upgrade'")
    versions = seen.get("sec-websocket-version", [])
    if versions != ["13"]:
        got = ", ".join(versions) or "none"
        raise HandshakeError(426, f"unsupported Sec-WebSocket-Version ({got}); only 13 is spoken",
                             (("Sec-WebSocket-Version", "13"),))
    keys = seen.get("sec-websocket-key", [])
    if len(keys) != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key header is required")
    key = keys[0]
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key must encode 16 bytes")
    return key


def accept_key(sec_websocket_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client key (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((sec_websocket_key + _GUID).encode("ascii"), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def accept_headers(sec_websocket_key: str) -> list[tuple[bytes, bytes]]:
    """The headers of the 101 Switching Protocols response, ready for ``h11.InformationalResponse``."""
    return [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", accept_key(sec_websocket_key).encode("ascii"))]
