"""The pure parts of the benchmark load generator (``bench/loadgen.py``): the hand-made
upgrade request, the 101 response check and the open-loop schedule. No event loop."""

from __future__ import annotations

import base64
import math
from itertools import pairwise

import h11
import pytest

from bench.loadgen import (
    HandshakeFailed,
    check_handshake_response,
    handshake_request,
    new_key,
    open_loop_schedule,
    split_head,
)
from customer_service.transport.wscodec import accept_key, validate_client_handshake

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def good_head(accept: str = RFC_ACCEPT) -> bytes:
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}").encode()


def test_new_key_is_16_random_bytes() -> None:
    a, b = new_key(), new_key()
    assert len(base64.b64decode(a, validate=True)) == 16
    assert a != b


def test_request_is_a_valid_websocket_upgrade_for_h11_and_the_server_codec() -> None:
    raw = handshake_request("127.0.0.1", 8080, "/ws/agent?token=abc&queue=off", RFC_KEY)
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert request.method == b"GET"
    assert request.target == b"/ws/agent?token=abc&queue=off"
    assert request.http_version == b"1.1"
    assert dict(request.headers)[b"host"] == b"127.0.0.1:8080"
    assert validate_client_handshake(request.headers) == RFC_KEY


@pytest.mark.parametrize("target", ["ws/visitor", "/a b", "/x\r\nEvil: 1"])
def test_request_refuses_a_bad_target(target: str) -> None:
    with pytest.raises(ValueError):
        handshake_request("127.0.0.1", 1, target, RFC_KEY)


def test_split_head_waits_for_the_blank_line_and_keeps_what_follows() -> None:
    assert split_head(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n") is None
    assert split_head(b"HTTP/1.1 101 OK\r\nA: b\r\n\r\n\x81\x02hi") == (
        b"HTTP/1.1 101 OK\r\nA: b", b"\x81\x02hi")
    assert split_head(bytearray(b"H\r\n\r\n")) == (b"H", b"")


def test_response_check_accepts_the_rfc_example_and_any_header_case() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT
    check_handshake_response(good_head(), RFC_KEY)
    check_handshake_response(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, Upgrade\r\n"
        b"sec-websocket-accept: " + RFC_ACCEPT.encode(), RFC_KEY)


@pytest.mark.parametrize(("head", "why"), [
    (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0", "401"),
    (b"HTTP/1.0 101 Switching Protocols", "HTTP/1.1"),
    (b"garbage", "HTTP/1.1"),
    (good_head("AAAAAAAAAAAAAAAAAAAAAAAAAAA="), "Accept"),
    (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
     + RFC_ACCEPT.encode(), "Upgrade"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: "
     + RFC_ACCEPT.encode(), "Connection"),
    (good_head() + b"\r\nno colon here", "malformed"),
])
def test_response_check_refuses(head: bytes, why: str) -> None:
    with pytest.raises(HandshakeFailed, match=why):
        check_handshake_response(head, RFC_KEY)


def test_response_check_refuses_the_accept_of_another_key() -> None:
    with pytest.raises(HandshakeFailed):
        check_handshake_response(good_head(accept_key(new_key())), RFC_KEY)


def test_schedule_is_even_in_time_and_round_robin_over_slots() -> None:
    rate, slots, start, stop = 3247.0, 1000, 100.0, 110.0
    events = list(open_loop_schedule(rate, slots, start, stop))
    assert len(events) == math.ceil((stop - start) * rate)
    times = [w for w, _, _ in events]
    assert times == sorted(times)
    assert times[0] == start
    assert all(start <= w < stop for w in times)
    gaps = {round(b - a, 9) for a, b in pairwise(times)}
    assert gaps == {round(1 / rate, 9)}
    # each slot sends every slots/rate seconds, counting its messages from 0
    slot7 = [(w, k) for w, s, k in events if s == 7]
    assert [k for _, k in slot7] == list(range(len(slot7)))
    assert all(math.isclose(b[0] - a[0], slots / rate) for a, b in pairwise(slot7))
    counts = [0] * slots
    for _, s, _ in events:
        counts[s] += 1
    assert max(counts) - min(counts) <= 1


def test_schedule_phase_shifts_and_is_bounded() -> None:
    events = list(open_loop_schedule(10.0, 3, 0.0, 1.0, phase=0.05))
    assert [round(w, 6) for w, _, _ in events] == [round(0.05 + i / 10, 6) for i in range(10)]
    assert [s for _, s, _ in events] == [0, 1, 2] * 3 + [0]
    assert list(open_loop_schedule(10.0, 3, 5.0, 5.0)) == []


@pytest.mark.parametrize(("rate", "slots"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_schedule_refuses_nonsense(rate: float, slots: int) -> None:
    with pytest.raises(ValueError):
        next(open_loop_schedule(rate, slots, 0.0, 1.0))
