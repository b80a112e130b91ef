"""The RFC 6455 codec: interoperates with wsproto, rejects every protocol violation
with the right close code, decodes the same however the byte stream is cut, and
holds no memory while idle.

Frames are built three independent ways: by wsproto (the peer we replace), by
``raw_frame`` below (a deliberately naive reference encoder, so no frame
under test comes only from the code under test) and by our own encoder.
"""

from __future__ import annotations

import base64
import gc
import os
import struct
import tracemalloc
from collections.abc import Callable, Iterable, Sequence

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.events import TextMessage as WsText
from wsproto.frame_protocol import CloseReason, Frame, FrameProtocol
from wsproto.frame_protocol import Opcode as WsOpcode

from customer_service.transport.wscodec import (
    BinaryMessage,
    Close,
    Event,
    FrameDecoder,
    FrameEncoder,
    HandshakeError,
    Opcode,
    Ping,
    Pong,
    ProtocolFailure,
    TextMessage,
    accept_headers,
    accept_key,
    mask,
    validate_client_handshake,
)

KEY = b"\x37\xfa\x21\x3d"


def naive_mask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def raw_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
              key: bytes | None = KEY, length: int | None = None, width: int | None = None) -> bytes:
    """A frame built by hand. ``length``/``width`` forge the length field (width 1, 2 or 8 bytes)."""
    n = len(payload) if length is None else length
    if width is None:
        width = 1 if n < 126 else 2 if n < 65536 else 8
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if key is not None else 0
    if width == 1:
        head += bytes([bit | n])
    elif width == 2:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if key is None:
        return head + payload
    return head + key + naive_mask(payload, key)


def decode_all(data: bytes | bytearray, chunks: Iterable[int] = (), *, role: str = "server",
               max_message_bytes: int = 1 << 20) -> tuple[list[Event], int | None]:
    """Feed ``data`` cut at ``chunks``; return the events and the failure code (None if none)."""
    decoder = FrameDecoder(role, max_message_bytes=max_message_bytes)  # type: ignore[arg-type]
    events: list[Event] = []
    cuts = sorted({c for c in chunks if 0 < c < len(data)})
    try:
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            events += decoder.feed(data[start:end])
    except ProtocolFailure as exc:
        return events + exc.events, exc.code
    return events, None


def failure_code(data: bytes, **kwargs: int) -> int:
    with pytest.raises(ProtocolFailure) as info:
        FrameDecoder("server", **kwargs).feed(data)
    return info.value.code


def ws_client() -> FrameProtocol:
    return FrameProtocol(client=True, extensions=[])


def ws_messages(frames: Iterable[Frame]) -> list[tuple[WsOpcode, object]]:
    """wsproto frames, data-frame fragments joined into messages; a close's payload is (code, reason)."""
    out: list[tuple[WsOpcode, object]] = []
    partial: list[str | bytes] = []
    first: WsOpcode | None = None
    for frame in frames:
        if frame.opcode in (WsOpcode.TEXT, WsOpcode.BINARY, WsOpcode.CONTINUATION):
            first = frame.opcode if first is None else first
            partial.append(frame.payload)  # type: ignore[arg-type]
            if frame.message_finished:
                empty: str | bytes = "" if first is WsOpcode.TEXT else b""
                out.append((first, empty.join(partial)))  # type: ignore[arg-type]
                partial, first = [], None
        else:
            out.append((frame.opcode, frame.payload))
    return out


# --------------------------------------------------------------------------- wsproto as the peer


def test_wsproto_client_frames_decode_to_events() -> None:
    ws = ws_client()
    data = (ws.send_data("hello", True) + ws.send_data("", True) + ws.send_data("ça va? 👋", True)
            + ws.send_data(b"\x00\xffbin", True) + ws.send_data("x" * 126, True)
            + ws.send_data(b"y" * 65535, True) + ws.send_data("z" * 65536, True)
            + ws.ping(b"p1") + ws.pong(b"p2") + ws.close(CloseReason.GOING_AWAY, "bye 👋"))
    assert FrameDecoder("server").feed(data) == [
        TextMessage("hello"), TextMessage(""), TextMessage("ça va? 👋"), BinaryMessage(b"\x00\xffbin"),
        TextMessage("x" * 126), BinaryMessage(b"y" * 65535), TextMessage("z" * 65536),
        Ping(b"p1"), Pong(b"p2"), Close(1001, "bye 👋"),
    ]


def test_wsproto_fragmented_messages_with_interleaved_control_frames() -> None:
    ws = ws_client()
    data = (ws.send_data("frag", False) + ws.ping(b"mid") + ws.send_data("ment", False)
            + ws.pong(b"") + ws.send_data("ed ✓", True)
            + ws.send_data(b"\x01", False) + ws.send_data(b"", False) + ws.send_data(b"\x02", True)
            + ws.close())
    expected = [Ping(b"mid"), Pong(b""), TextMessage("fragmented ✓"), BinaryMessage(b"\x01\x02"),
                Close(1005, "")]
    assert decode_all(data) == (expected, None)
    assert decode_all(data, range(len(data))) == (expected, None)  # byte by byte


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_server_encoder_matches_wsproto_byte_for_byte(size: int) -> None:
    text = "é" * (size // 2) + "a" * (size % 2)
    ours = FrameEncoder("server")
    theirs = FrameProtocol(client=False, extensions=[])
    assert ours.encode_text(text) == theirs.send_data(text, True)
    assert ours.encode_binary(os.urandom(0) + b"b" * size) == theirs.send_data(b"b" * size, True)


def test_server_encoder_decoded_by_wsproto_client() -> None:
    enc = FrameEncoder("server")
    data = (enc.encode_text("hi ✓") + enc.encode_binary(b"\x00" * 300)
            + enc.encode_frame(Opcode.TEXT, "ab€".encode()[:3], fin=False) + enc.encode_ping(b"?")
            + enc.encode_frame(Opcode.CONTINUATION, "ab€".encode()[3:]) + enc.encode_pong(b"!")
            + enc.encode_close(1000, "done"))
    ws = ws_client()
    ws.receive_bytes(data)
    assert ws_messages(ws.received_frames()) == [
        (WsOpcode.TEXT, "hi ✓"), (WsOpcode.BINARY, b"\x00" * 300), (WsOpcode.PING, b"?"),
        (WsOpcode.TEXT, "ab€"), (WsOpcode.PONG, b"!"), (WsOpcode.CLOSE, (1000, "done")),
    ]


def test_client_encoder_decoded_by_wsproto_server() -> None:
    enc = FrameEncoder("client")
    big = os.urandom(70000)
    data = (enc.encode_text("héllo") + enc.encode_binary(big) + enc.encode_ping(b"x")
            + enc.encode_frame(Opcode.BINARY, b"ab", fin=False) + enc.encode_frame(Opcode.CONTINUATION, b"cd")
            + enc.encode_close(4000, "app"))
    ws = FrameProtocol(client=False, extensions=[])  # raises if a frame is not masked
    ws.receive_bytes(data)
    assert ws_messages(ws.received_frames()) == [
        (WsOpcode.TEXT, "héllo"), (WsOpcode.BINARY, big), (WsOpcode.PING, b"x"),
        (WsOpcode.BINARY, b"abcd"), (WsOpcode.CLOSE, (4000, "app")),
    ]


def test_client_role_masks_each_frame_with_a_fresh_key() -> None:
    enc = FrameEncoder("client")
    a, b = enc.encode_text("same"), enc.encode_text("same")
    assert a[1] & 0x80 and a != b
    assert FrameDecoder("server").feed(a + b) == [TextMessage("same")] * 2


def test_client_role_decodes_unmasked_server_frames() -> None:
    ws = FrameProtocol(client=False, extensions=[])
    data = ws.send_data("from server", True) + ws.ping(b"") + ws.close(CloseReason.NORMAL_CLOSURE)
    assert FrameDecoder("client").feed(data) == [TextMessage("from server"), Ping(b""), Close(1000, "")]


def test_handshake_and_messages_with_wsproto_client_over_h11() -> None:
    """The whole opening: wsproto's request parsed by h11, our 101, wsproto accepts it."""
    client = WSConnection(ConnectionType.CLIENT)
    server = h11.Connection(h11.SERVER)
    server.receive_data(client.send(Request(host="example.com", target="/ws/visitor")))
    request = server.next_event()
    assert isinstance(request, h11.Request)
    key = validate_client_handshake(request.headers)
    client.receive_data(server.send(h11.InformationalResponse(status_code=101, headers=accept_headers(key))))
    assert isinstance(next(client.events()), AcceptConnection)

    decoder, encoder = FrameDecoder("server"), FrameEncoder("server")
    assert decoder.feed(client.send(WsText(data="bonjour"))) == [TextMessage("bonjour")]
    client.receive_data(encoder.encode_text("salut"))
    assert [(type(e), e.data) for e in client.events()] == [(WsText, "salut")]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- rejections

M = 0x80  # the mask bit in byte 1

REJECTIONS: list[tuple[str, bytes, int]] = [
    ("rsv1", raw_frame(Opcode.TEXT, b"x", rsv=4), 1002),
    ("rsv2", raw_frame(Opcode.TEXT, b"x", rsv=2), 1002),
    ("rsv3 on a ping", raw_frame(Opcode.PING, b"", rsv=1), 1002),
    *[(f"opcode {op:#x}", raw_frame(op, b"x"), 1002) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)],
    ("ping of 126 bytes", raw_frame(Opcode.PING, b"p" * 126), 1002),
    ("close of 126 bytes", raw_frame(Opcode.CLOSE, b"\x03\xe8" + b"r" * 124), 1002),
    ("fragmented ping", raw_frame(Opcode.PING, b"", fin=False), 1002),
    ("fragmented close", raw_frame(Opcode.CLOSE, b"\x03\xe8", fin=False), 1002),
    ("continuation first", raw_frame(Opcode.CONTINUATION, b"x"), 1002),
    ("continuation after a whole message",
     raw_frame(Opcode.TEXT, b"a") + raw_frame(Opcode.CONTINUATION, b"b"), 1002),
    ("text inside a fragmented text", raw_frame(Opcode.TEXT, b"a", fin=False) + raw_frame(Opcode.TEXT, b"b"),
     1002),
    ("binary inside a fragmented text",
     raw_frame(Opcode.TEXT, b"a", fin=False) + raw_frame(Opcode.BINARY, b"b"), 1002),
    ("unmasked client frame", raw_frame(Opcode.TEXT, b"x", key=None), 1002),
    ("64-bit length, top bit set", raw_frame(Opcode.BINARY, length=1 << 63, width=8), 1002),
    ("16-bit length below 126", raw_frame(Opcode.BINARY, b"x" * 5, width=2), 1002),
    ("64-bit length below 65536", raw_frame(Opcode.BINARY, b"x" * 200, width=8), 1002),
    ("invalid UTF-8 text", raw_frame(Opcode.TEXT, b"ok \xff"), 1007),
    ("overlong UTF-8", raw_frame(Opcode.TEXT, b"\xc0\xaf"), 1007),
    ("UTF-16 surrogate", raw_frame(Opcode.TEXT, b"\xed\xa0\x80"), 1007),
    ("text ending mid-character", raw_frame(Opcode.TEXT, b"\xe2\x82"), 1007),
    ("close payload of 1 byte", raw_frame(Opcode.CLOSE, b"\x03"), 1002),
    *[(f"close code {code}", raw_frame(Opcode.CLOSE, struct.pack("!H", code)), 1002)
      for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)],
    ("close reason not UTF-8", raw_frame(Opcode.CLOSE, b"\x03\xe8\xff"), 1007),
    ("message over the limit", raw_frame(Opcode.TEXT, b"x" * 101), 1009),
    ("64-bit length over the limit", raw_frame(Opcode.BINARY, length=1 << 40, width=8), 1009),
    ("fragments over the limit", raw_frame(Opcode.BINARY, b"x" * 60, fin=False)
     + raw_frame(Opcode.CONTINUATION, b"x" * 40, fin=False) + raw_frame(Opcode.CONTINUATION, b"x"), 1009),
]


@pytest.mark.parametrize(("data", "code"), [(d, c) for _, d, c in REJECTIONS],
                         ids=[n for n, _, _ in REJECTIONS])
def test_rejection_close_codes(data: bytes, code: int) -> None:
    events, failure = decode_all(data, max_message_bytes=100)
    assert failure == code
    assert all(isinstance(event, TextMessage) for event in events)  # only a complete message before it
    assert decode_all(data, range(len(data)), max_message_bytes=100) == (events, code)  # byte by byte


def test_client_role_rejects_masked_frames() -> None:
    assert decode_all(raw_frame(Opcode.TEXT, b"x"), role="client") == ([], 1002)
    assert decode_all(raw_frame(Opcode.TEXT, b"x", key=None), role="client") == ([TextMessage("x")], None)


@pytest.mark.parametrize("data", [
    raw_frame(Opcode.TEXT, b"x", rsv=4), raw_frame(0x3, b"x"), raw_frame(Opcode.PING, b"", fin=False),
    raw_frame(Opcode.TEXT, b"x", key=None), raw_frame(Opcode.CONTINUATION, b"x"),
    raw_frame(Opcode.PING, b"p" * 126),
], ids=["rsv", "opcode", "fragmented-control", "unmasked", "continuation", "long-control"])
def test_header_violations_fail_on_the_first_two_bytes(data: bytes) -> None:
    with pytest.raises(ProtocolFailure):
        FrameDecoder("server").feed(data[:2])


def test_oversized_message_fails_at_its_header_without_buffering_it() -> None:
    header = raw_frame(Opcode.BINARY, length=10 * 1024 * 1024)[:14]
    decoder = FrameDecoder("server", max_message_bytes=65536)
    with pytest.raises(ProtocolFailure) as info:
        decoder.feed(header)
    assert info.value.code == 1009
    assert decoder.buffered == 0


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                                  3000, 3999, 4000, 4999])
def test_valid_close_codes_are_accepted(code: int) -> None:
    frame = raw_frame(Opcode.CLOSE, struct.pack("!H", code) + "fin ✓".encode())
    assert decode_all(frame) == ([Close(code, "fin ✓")], None)


def test_events_before_a_failure_ride_on_the_exception() -> None:
    data = raw_frame(Opcode.TEXT, b"good") + raw_frame(Opcode.PING, b"") + raw_frame(Opcode.TEXT, b"\xff")
    with pytest.raises(ProtocolFailure) as info:
        FrameDecoder("server").feed(data)
    assert (info.value.code, info.value.events) == (1007, [TextMessage("good"), Ping(b"")])


def test_decoder_stays_failed() -> None:
    decoder = FrameDecoder("server")
    with pytest.raises(ProtocolFailure):
        decoder.feed(raw_frame(Opcode.TEXT, b"a", fin=False) + raw_frame(Opcode.TEXT, b"b"))
    assert decoder.buffered == 0
    with pytest.raises(ProtocolFailure) as info:
        decoder.feed(raw_frame(Opcode.TEXT, b"fine"))
    assert info.value.code == 1002
    bad_close = FrameDecoder("server")
    with pytest.raises(ProtocolFailure):
        bad_close.feed(raw_frame(Opcode.CLOSE, b"\x03\xed"))  # 1005 may not be sent
    assert not bad_close.closed


def test_everything_after_a_close_frame_is_ignored() -> None:
    decoder = FrameDecoder("server")
    data = raw_frame(Opcode.TEXT, b"a", fin=False) + raw_frame(Opcode.CLOSE, b"\x03\xe8") + b"\xff garbage"
    assert decoder.feed(data) == [Close(1000, "")]
    assert decoder.closed and decoder.buffered == 0
    assert decoder.feed(raw_frame(Opcode.TEXT, b"late") + b"\x00\x00\x00") == []


# --------------------------------------------------------------------------- UTF-8 across fragments


def fragments(*parts: bytes) -> list[bytes]:
    """One frame per part: a text frame, then continuations; the last has FIN."""
    last = len(parts) - 1
    return [raw_frame(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, part, fin=i == last)
            for i, part in enumerate(parts)]


@pytest.mark.parametrize("parts", [
    (b"\xe2\x82", b"\xac"), (b"\xe2", b"\x82", b"\xac"), (b"a\xf0\x9f", b"", b"\x91\x8b", b"b"),
], ids=["2+1", "1+1+1", "4-byte char over an empty fragment"])
def test_character_split_between_fragments_is_valid(parts: tuple[bytes, ...]) -> None:
    decoder = FrameDecoder("server")
    events = [event for frame in fragments(*parts) for event in decoder.feed(frame)]
    assert events == [TextMessage(b"".join(parts).decode())]


@pytest.mark.parametrize(("parts", "failing"), [
    ((b"ok\xff", b"never sent"), 0),  # invalid byte: fails before the next fragment exists
    ((b"ok\xf4\x90", b"\x80\x80"), 0),  # above U+10FFFF, detectable from two bytes
    ((b"ok\xed\xa0", b"\x80"), 0),  # surrogate, detectable from two bytes
    ((b"ok", b"\xc0\xaf", b"more"), 1),  # overlong, in the middle fragment
    ((b"ok\xe2", b"A"), 1),  # a character cut short by the next fragment
    ((b"ok", b"\xe2\x82"), 1),  # message ends mid-character
], ids=["invalid-byte", "too-high", "surrogate", "overlong", "interrupted", "truncated-at-fin"])
def test_invalid_utf8_fails_at_the_fragment_containing_it(parts: tuple[bytes, ...], failing: int) -> None:
    decoder = FrameDecoder("server")
    frames = fragments(*parts)
    for frame in frames[:failing]:
        assert decoder.feed(frame) == []
    with pytest.raises(ProtocolFailure) as info:
        decoder.feed(frames[failing])
    assert info.value.code == 1007


# --------------------------------------------------------------------------- UTF-8 inside a frame in pieces


def _valid_utf8_prefix(data: bytes) -> bool:
    """Whether ``data`` can still become valid UTF-8 (reference: one-shot ``decode``)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.reason == "unexpected end of data"
    return True


def _first_bad_byte(payload: bytes) -> int | None:
    """Index of the byte from which ``payload`` can no longer become valid UTF-8."""
    for end in range(1, len(payload) + 1):
        if not _valid_utf8_prefix(payload[:end]):
            return end - 1
    return None


def _feed_pieces(decoder: FrameDecoder, stream: bytes, cuts: Sequence[int]
                 ) -> tuple[list[Event], int | None]:
    """Feed ``stream`` cut at ``cuts``: the events, and the stream offset just past the
    piece whose ``feed`` failed (None: no failure)."""
    events: list[Event] = []
    bounds = sorted({c for c in cuts if 0 < c < len(stream)})
    for start, end in zip([0, *bounds], [*bounds, len(stream)], strict=True):
        try:
            events += decoder.feed(stream[start:end])
        except ProtocolFailure as exc:
            assert exc.code == 1007, exc
            return events + exc.events, end
    return events, None


# Autobahn 6.4.3/6.4.4: a valid start, then 0xF4 0x90 0x80 0x80 (above U+10FFFF), then more.
AUTOBAHN_6_4 = (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90\x80\x80",
                b"\x65\x64\x69\x74\x65\x64")


@pytest.mark.parametrize("role", ["server", "client"])
def test_invalid_utf8_in_a_frame_arriving_byte_by_byte_fails_at_the_bad_byte(role: str) -> None:
    payload = b"".join(AUTOBAHN_6_4)
    frame = raw_frame(Opcode.TEXT, payload, key=KEY if role == "server" else None)
    head = len(frame) - len(payload)
    bad = len(AUTOBAHN_6_4[0]) + 1  # 0xF4 may still start a character; 0xF4 0x90 cannot
    assert _first_bad_byte(payload) == bad
    events, failed_at = _feed_pieces(FrameDecoder(role), frame,  # type: ignore[arg-type]
                                     range(1, len(frame)))
    assert events == [] and failed_at == head + bad + 1


def test_autobahn_6_4_3_fails_on_the_chunk_with_the_invalid_sequence() -> None:
    """6.4.3 sends the frame in three chunks: valid, the invalid sequence, the rest."""
    frame = raw_frame(Opcode.TEXT, b"".join(AUTOBAHN_6_4))
    first = len(frame) - len(b"".join(AUTOBAHN_6_4)) + len(AUTOBAHN_6_4[0])
    decoder = FrameDecoder("server")
    assert decoder.feed(frame[:first]) == []
    with pytest.raises(ProtocolFailure) as info:
        decoder.feed(frame[first:first + 4])
    assert info.value.code == 1007


def test_invalid_utf8_in_a_continuation_frame_arriving_in_pieces_fails_at_the_bad_byte() -> None:
    first = raw_frame(Opcode.TEXT, "héllo ".encode(), fin=False)
    payload = b"w\xc3\xb6rld " + b"\xed\xa0\x80" + b" never seen"  # a UTF-16 surrogate
    second = raw_frame(Opcode.CONTINUATION, payload)
    stream = first + second
    bad = _first_bad_byte(payload)
    assert bad == len(b"w\xc3\xb6rld ") + 1  # ED A0 can never become valid
    events, failed_at = _feed_pieces(FrameDecoder("server"), stream,
                                     range(len(first) + 1, len(stream)))
    assert events == []
    assert failed_at == len(first) + (len(second) - len(payload)) + bad + 1


def test_a_character_split_across_fragments_that_arrive_byte_by_byte_is_valid() -> None:
    text = "a\U0001F44Bb\u00e9" * 50
    raw = text.encode()
    cut = raw.index(b"\xf0") + 2  # inside the 4-byte character
    stream = (raw_frame(Opcode.TEXT, raw[:cut], fin=False) + raw_frame(Opcode.PING, b"p")
              + raw_frame(Opcode.CONTINUATION, raw[cut:]))
    events, failed_at = _feed_pieces(FrameDecoder("server"), stream, range(1, len(stream)))
    assert failed_at is None
    assert events == [Ping(b"p"), TextMessage(text)]


@given(st.text(min_size=100, max_size=1500), st.integers(0, 2), st.sampled_from(["server", "client"]),
       st.lists(st.integers(0, 7000), max_size=40))
def test_text_checked_while_it_arrives_decodes_unchanged_whatever_the_cutting(
        text: str, fragments_more: int, role: str, cuts: list[int]) -> None:
    """Pieces of a text frame are UTF-8-checked (and, for the server, unmasked in place)
    as they arrive; the message is the same however the stream is cut, past the sizes
    where masking switches strategy too, with binary frames and pings in between."""
    raw = text.encode()
    key = KEY if role == "server" else None
    bounds = sorted({len(raw) * k // (fragments_more + 1) for k in range(1, fragments_more + 1)})
    parts = [raw[a:b] for a, b in zip([0, *bounds], [*bounds, len(raw)], strict=True)]
    stream = raw_frame(Opcode.BINARY, raw, key=key)
    for i, part in enumerate(parts):
        stream += raw_frame(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, part,
                            fin=i == len(parts) - 1, key=key)
        stream += raw_frame(Opcode.PING, b"%d" % i, key=key) if i < len(parts) - 1 else b""
    stream += raw_frame(Opcode.TEXT, raw, key=key) + raw_frame(Opcode.BINARY, raw, key=key)
    decoder = FrameDecoder(role)  # type: ignore[arg-type]
    events, failed_at = _feed_pieces(decoder, stream, cuts)
    assert failed_at is None
    pings = [Ping(b"%d" % i) for i in range(len(parts) - 1)]
    assert events == [BinaryMessage(raw), *pings, TextMessage(text), TextMessage(text),
                      BinaryMessage(raw)]
    assert decoder.buffered == 0


@given(st.text(max_size=60), st.text(max_size=60),
       st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                        b"\xe2\x82A", b"\x80", b"\xf8\x88\x80\x80\x80"]),
       st.integers(0, 3), st.lists(st.integers(0, 400), max_size=30))
def test_invalid_utf8_fails_with_the_piece_that_brings_it_whatever_the_cutting(
        before: str, after: str, bad: bytes, fragments_before: int, cuts: list[int]) -> None:
    """A text message cut into fragments and the byte stream cut anywhere: the ``feed``
    that fails is the one that delivers the first byte that cannot become valid UTF-8."""
    payload = before.encode() + bad + after.encode()
    first_bad = _first_bad_byte(payload)
    assert first_bad is not None
    # Fragment boundaries at fixed fractions of the payload (some may be empty fragments).
    bounds = sorted({len(payload) * k // (fragments_before + 1) for k in range(1, fragments_before + 1)})
    parts = [payload[a:b] for a, b in zip([0, *bounds], [*bounds, len(payload)], strict=True)]
    stream = b""
    position_of_bad = -1
    for i, part in enumerate(parts):
        frame = raw_frame(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, part,
                          fin=i == len(parts) - 1)
        offset = sum(len(p) for p in parts[:i])
        if offset <= first_bad < offset + len(part):
            position_of_bad = len(stream) + len(frame) - len(part) + first_bad - offset
        stream += frame
    assert position_of_bad >= 0
    events, failed_at = _feed_pieces(FrameDecoder("server"), stream, cuts)
    assert events == []
    assert failed_at is not None
    bounds_after = sorted({c for c in cuts if 0 < c < len(stream)} | {len(stream)})
    assert failed_at == next(c for c in bounds_after if c > position_of_bad)


# --------------------------------------------------------------------------- encoder details


def test_encoder_length_encodings() -> None:
    enc = FrameEncoder("server")
    assert enc.encode_binary(b"x" * 125)[:2] == b"\x82\x7d"
    assert enc.encode_binary(b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert enc.encode_binary(b"x" * 65535)[:4] == b"\x82\x7e\xff\xff"
    assert enc.encode_binary(b"x" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert enc.encode_frame(Opcode.TEXT, b"ab", fin=False) == b"\x01\x02ab"
    assert enc.encode_close(None) == b"\x88\x00"
    assert enc.encode_close() == b"\x88\x02\x03\xe8"


def test_encoder_refuses_misuse() -> None:
    enc = FrameEncoder("server")
    misuses: list[Callable[[], bytes]] = [
        lambda: enc.encode_ping(b"p" * 126), lambda: enc.encode_frame(Opcode.PING, b"", fin=False),
        lambda: enc.encode_frame(3, b""), lambda: enc.encode_close(1005), lambda: enc.encode_close(1006),
        lambda: enc.encode_close(999), lambda: enc.encode_close(None, "why"),
    ]
    for bad in misuses:
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        FrameEncoder("peer")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FrameDecoder("server", max_message_bytes=0)


def test_long_close_reason_is_cut_at_a_character_boundary() -> None:
    frame = FrameEncoder("server").encode_close(1011, "é" * 100)
    assert len(frame) == 2 + 2 + 122
    assert FrameDecoder("client").feed(frame) == [Close(1011, "é" * 61)]


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_mask_matches_the_naive_xor(payload: bytes, key: bytes) -> None:
    assert mask(payload, key) == naive_mask(payload, key)
    assert mask(mask(payload, key), key) == payload


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 399, 400, 401, 1023, 65536])
def test_mask_around_the_strategy_switch(size: int) -> None:
    payload = os.urandom(size)
    assert mask(payload, KEY) == naive_mask(payload, KEY)
    assert mask(bytearray(payload), bytearray(KEY)) == naive_mask(payload, KEY)


# --------------------------------------------------------------------------- properties

messages = st.one_of(st.text(max_size=300).map(TextMessage), st.binary(max_size=300).map(BinaryMessage))


@st.composite
def framed_stream(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    """Random messages, each cut into random fragments (text cut at arbitrary
    bytes, so characters get split), with pings/pongs between fragments at random."""
    frames: list[bytes] = []
    expected: list[Event] = []
    for message in draw(st.lists(messages, max_size=8)):
        raw = message.text.encode() if isinstance(message, TextMessage) else message.data
        opcode = Opcode.TEXT if isinstance(message, TextMessage) else Opcode.BINARY
        cuts = sorted(draw(st.sets(st.integers(0, len(raw)), max_size=4)))
        parts = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        last = len(parts) - 1
        for i, part in enumerate(parts):
            frames.append(raw_frame(opcode if i == 0 else Opcode.CONTINUATION, part, fin=i == last,
                                    key=draw(st.binary(min_size=4, max_size=4))))
            if i < last and draw(st.booleans()):
                control = draw(st.sampled_from([Opcode.PING, Opcode.PONG]))
                payload = draw(st.binary(max_size=125))
                frames.append(raw_frame(control, payload))
                expected.append(Ping(payload) if control == Opcode.PING else Pong(payload))
        expected.append(message)
    return b"".join(frames), expected


@given(framed_stream(), st.lists(st.integers(0, 20000), max_size=30))
def test_random_fragmentation_and_chunking_decode_the_same_messages(
        stream: tuple[bytes, list[Event]], cuts: list[int]) -> None:
    data, expected = stream
    assert decode_all(data, cuts) == (expected, None)


@given(st.lists(st.sampled_from(["text", "binary", "ping", "close"]), max_size=6), st.data())
def test_our_client_frames_decode_like_wsproto_decodes_them(kinds: list[str], data: st.DataObject) -> None:
    enc = FrameEncoder("client")
    chunks: list[bytes] = []
    for kind in kinds:
        if kind == "text":
            chunks.append(enc.encode_text(data.draw(st.text(max_size=200))))
        elif kind == "binary":
            chunks.append(enc.encode_binary(data.draw(st.binary(max_size=200))))
        elif kind == "ping":
            chunks.append(enc.encode_ping(data.draw(st.binary(max_size=125))))
        else:
            chunks.append(enc.encode_close(data.draw(st.sampled_from([1000, 1001, 4000])),
                                           data.draw(st.text(max_size=30))))
    stream = b"".join(chunks)
    ours, failure = decode_all(stream)
    assert failure is None
    theirs = FrameProtocol(client=False, extensions=[])
    theirs.receive_bytes(stream)
    converted: list[Event] = []
    for opcode, payload in ws_messages(theirs.received_frames()):
        if opcode is WsOpcode.TEXT:
            converted.append(TextMessage(payload))  # type: ignore[arg-type]
        elif opcode is WsOpcode.BINARY:
            converted.append(BinaryMessage(payload))  # type: ignore[arg-type]
        elif opcode is WsOpcode.PING:
            converted.append(Ping(payload))  # type: ignore[arg-type]
        else:
            assert isinstance(payload, tuple)
            code, reason = payload
            converted.append(Close(code, reason))
            break  # we stop at the close; wsproto would refuse later frames anyway
    assert ours == converted


@st.composite
def frame_soup(draw: st.DrawFn) -> bytes:
    """Frames with random header fields (any opcode, reserved bits, mask bit, length
    width, close payloads), then a random tail: mostly-plausible garbage that
    reaches deep into the decoder, unlike pure random bytes."""
    out = b""
    for _ in range(draw(st.integers(0, 5))):
        opcode = draw(st.integers(0, 15))
        payload = draw(st.one_of(st.binary(max_size=140), st.text(max_size=40).map(str.encode),
                                 st.tuples(st.integers(0, 5000), st.binary(max_size=10)).map(
                                     lambda t: struct.pack("!H", t[0]) + t[1])))
        key = draw(st.one_of(st.none(), st.binary(min_size=4, max_size=4)))
        rsv = draw(st.sampled_from([0, 0, 0, 1, 2, 4]))
        out += raw_frame(opcode, payload, fin=draw(st.booleans()), rsv=rsv, key=key,
                         width=draw(st.sampled_from([None, None, 1, 2, 8])) if len(payload) < 126 else None)
    return out + draw(st.binary(max_size=40))


def assert_only_protocol_failures(data: bytes, cuts: Sequence[int]) -> None:
    for role in ("server", "client"):
        whole = decode_all(data, role=role, max_message_bytes=200)  # anything else propagates and fails
        assert decode_all(data, cuts, role=role, max_message_bytes=200) == whole
        if whole[1] is not None:
            assert whole[1] in (1002, 1007, 1009)


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=20))
def test_random_bytes_only_ever_raise_protocol_failure(data: bytes, cuts: list[int]) -> None:
    assert_only_protocol_failures(data, cuts)


@given(frame_soup(), st.lists(st.integers(0, 800), max_size=20))
def test_random_frames_only_ever_raise_protocol_failure_whatever_the_chunking(
        data: bytes, cuts: list[int]) -> None:
    assert_only_protocol_failures(data, cuts)


# --------------------------------------------------------------------------- memory


def test_decoder_holds_a_buffer_only_while_a_frame_or_message_is_incomplete() -> None:
    decoder = FrameDecoder("server")
    frame = raw_frame(Opcode.TEXT, b"x" * 5000)
    assert decoder.feed(frame[:3000]) == []
    assert decoder.buffered == 3000
    assert decoder.feed(frame[3000:]) == [TextMessage("x" * 5000)]
    assert decoder.buffered == 0
    assert decoder.feed(raw_frame(Opcode.BINARY, b"ab", fin=False)) == []
    assert decoder.buffered == 2
    assert decoder.feed(raw_frame(Opcode.CONTINUATION, b"cd")) == [BinaryMessage(b"abcd")]
    assert decoder.buffered == 0
    assert decoder.feed(frame + frame[:1]) == [TextMessage("x" * 5000)]
    assert decoder.buffered == 1


def test_idle_decoders_and_encoders_are_small() -> None:
    """18,000 idle sockets must cost little: measure what 2,000 used-then-idle codecs retain.

    A decoder is ~100 bytes of slots and an encoder ~40; the budget per socket is 10 KB.
    """
    frame = raw_frame(Opcode.TEXT, b"x" * 8000)
    count = 2000
    decoders: list[FrameDecoder] = []
    encoders: list[FrameEncoder] = []
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(count):
            decoder = FrameDecoder("server")
            decoder.feed(frame[:4000])  # a partial frame forces the temporary buffer...
            decoder.feed(frame[4000:])  # ...which must be gone once the frame completes
            decoder.feed(raw_frame(Opcode.TEXT, b"a" * 10, fin=False))
            decoder.feed(raw_frame(Opcode.CONTINUATION, b"b" * 10))
            decoders.append(decoder)
            encoders.append(FrameEncoder("server"))
        gc.collect()
        per_connection = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert per_connection < 250, f"{per_connection:.0f} bytes per idle connection"
    assert all(decoder.buffered == 0 for decoder in decoders)


# --------------------------------------------------------------------------- handshake

GOOD = [(b"host", b"example.com"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
        (b"sec-websocket-version", b"13"), (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]


def without(name: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in GOOD if n != name] + list(extra)


def test_accept_key_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
    assert dict(accept_headers("dGhlIHNhbXBsZSBub25jZQ=="))[b"Sec-WebSocket-Accept"] == (
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")


def test_valid_handshakes() -> None:
    assert validate_client_handshake(GOOD) == "dGhlIHNhbXBsZSBub25jZQ=="
    mixed = [("Host", "x"), ("UPGRADE", "WebSocket"), ("Connection", "keep-alive, Upgrade"),
             ("Sec-WebSocket-Version", " 13 "), ("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")]
    assert validate_client_handshake(mixed) == "AAAAAAAAAAAAAAAAAAAAAA=="
    split = [*without(b"connection"), (b"connection", b"keep-alive"), (b"connection", b"upgrade")]
    assert validate_client_handshake(split) == "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.mark.parametrize(("headers", "status", "response_header"), [
    (without(b"upgrade"), 426, "Upgrade"),
    (without(b"upgrade", (b"upgrade", b"h2c")), 426, "Upgrade"),
    (without(b"connection"), 400, None),
    (without(b"connection", (b"connection", b"keep-alive")), 400, None),
    (without(b"sec-websocket-version"), 426, "Sec-WebSocket-Version"),
    (without(b"sec-websocket-version", (b"sec-websocket-version", b"8")), 426, "Sec-WebSocket-Version"),
    ([*GOOD, (b"sec-websocket-version", b"8")], 426, "Sec-WebSocket-Version"),
    (without(b"sec-websocket-key"), 400, None),
    ([*GOOD, (b"sec-websocket-key", b"AAAAAAAAAAAAAAAAAAAAAA==")], 400, None),
    (without(b"sec-websocket-key", (b"sec-websocket-key", b"not base64!")), 400, None),
    (without(b"sec-websocket-key", (b"sec-websocket-key", base64.b64encode(b"x" * 15))), 400, None),
    (without(b"sec-websocket-key", (b"sec-websocket-key", base64.b64encode(b"x" * 17))), 400, None),
], ids=["no-upgrade", "other-upgrade", "no-connection", "connection-without-upgrade", "no-version",
        "version-8", "two-versions", "no-key", "two-keys", "key-not-base64", "key-15-bytes", "key-17-bytes"])
def test_invalid_handshakes(headers: list[tuple[bytes, bytes]], status: int,
                            response_header: str | None) -> None:
    with pytest.raises(HandshakeError) as info:
        validate_client_handshake(headers)
    assert info.value.status == status
    assert info.value.message
    if response_header is not None:
        assert response_header in dict(info.value.headers)
