"""Micro-benchmark of the WebSocket codec against wsproto, plus the masking candidates.

    .venv/bin/python bench/codec.py [--seconds 0.5]

Server-side work only, since that is what the chat server does per message:
decoding one masked client frame per ``feed`` (as a socket read delivers it)
and encoding one unmasked text frame. wsproto is measured both as
``WSConnection`` (the full stack hypercorn drives today) and as the bare
``FrameProtocol``. Every figure is the best of five runs; frames/s counts
frames, MB/s payload bytes. Pure CPU, no sockets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.events import TextMessage as WsText
from wsproto.frame_protocol import FrameProtocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from customer_service.transport import wscodec  # noqa: E402

_XOR = [bytes(a ^ b for a in range(256)) for b in range(256)]


def mask_int(data: bytes, key: bytes) -> bytes:
    n = len(data)
    return (int.from_bytes(data, "little")
            ^ int.from_bytes((key * ((n >> 2) + 1))[:n], "little")).to_bytes(n, "little")


def mask_translate(data: bytes, key: bytes) -> bytes:
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR[key[i]])
    return bytes(out)


def mask_genexpr(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``: best of five runs of about ``seconds`` / 5 each."""
    n = 1
    while True:  # calibrate
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took > seconds / 25:
            break
        n *= 2
    per_run = max(1, int(n * (seconds / 5) / took))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = min(best, time.perf_counter() - start)
    return per_run / best


def ws_pair() -> tuple[WSConnection, WSConnection]:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="localhost", target="/ws")))
    assert isinstance(next(server.events()), Request)
    client.receive_data(server.send(AcceptConnection()))
    assert isinstance(next(client.events()), AcceptConnection)
    return client, server


def bench_masking(seconds: float) -> None:
    print("masking (unmask one payload)")
    key = os.urandom(4)
    for size in (100, 65536):
        data = os.urandom(size)
        expected = mask_genexpr(data, key)
        for name, fn in (("int.from_bytes XOR", mask_int), ("4x bytes.translate", mask_translate),
                         ("bytes(genexpr)", mask_genexpr), ("wscodec.mask (hybrid)", wscodec.mask)):
            assert fn(data, key) == expected
            per_s = rate(lambda fn=fn, data=data: fn(data, key),  # type: ignore[misc]
                         seconds / (20 if fn is mask_genexpr else 1))
            print(f"  {size:6d} B  {name:22s} {1e6 / per_s:9.2f} us  {per_s * size / 1e6:8.0f} MB/s")


def bench_decode(seconds: float, size: int) -> None:
    text = "é" + "a" * (size - 2)  # exactly `size` bytes, not pure ASCII
    client, _ = ws_pair()
    frame = client.send(WsText(data=text))
    print(f"decode: server receives one masked {len(text.encode())}-byte text frame per feed")

    ours = wscodec.FrameDecoder("server", max_message_bytes=1 << 24)
    assert ours.feed(frame) == [wscodec.TextMessage(text)]
    r_ours = rate(lambda: ours.feed(frame), seconds)

    _, server = ws_pair()

    def wsconn() -> None:
        server.receive_data(frame)
        for _ in server.events():
            pass

    fp = FrameProtocol(client=False, extensions=[])

    def frameproto() -> None:
        fp.receive_bytes(frame)
        for _ in fp.received_frames():
            pass

    report(r_ours, rate(wsconn, seconds), rate(frameproto, seconds))


def bench_decode_pieces(seconds: float, size: int, piece: int = 1460) -> None:
    """A text frame arriving in TCP-segment-sized pieces: each piece's UTF-8 is checked
    (and unmasked) as it arrives, so that invalid text fails at the first bad byte."""
    text = "é" + "a" * (size - 2)
    client, _ = ws_pair()
    frame = client.send(WsText(data=text))
    pieces = [frame[i:i + piece] for i in range(0, len(frame), piece)]
    print(f"decode: a masked {size}-byte text frame in {len(pieces)} pieces of {piece} bytes")
    ours = wscodec.FrameDecoder("server", max_message_bytes=1 << 24)

    def feed_ours() -> None:
        for chunk in pieces:
            ours.feed(chunk)

    fp = FrameProtocol(client=False, extensions=[])

    def frameproto() -> None:
        for chunk in pieces:
            fp.receive_bytes(chunk)
            for _ in fp.received_frames():
                pass

    r_ours, r_fp = rate(feed_ours, seconds), rate(frameproto, seconds)
    print(f"  wscodec                {r_ours:12,.0f} frames/s")
    print(f"  wsproto FrameProtocol  {r_fp:12,.0f} frames/s   wscodec is {r_ours / r_fp:4.1f}x")


def bench_encode(seconds: float, size: int) -> None:
    text = "é" + "a" * (size - 2)  # exactly `size` bytes, not pure ASCII
    print(f"encode: server sends one unmasked {len(text.encode())}-byte text frame")
    enc = wscodec.FrameEncoder("server")
    r_ours = rate(lambda: enc.encode_text(text), seconds)
    _, server = ws_pair()
    message = WsText(data=text)
    fp = FrameProtocol(client=False, extensions=[])
    assert enc.encode_text(text) == server.send(message) == fp.send_data(text, True)
    report(r_ours, rate(lambda: server.send(message), seconds),
           rate(lambda: fp.send_data(text, True), seconds))


def report(ours: float, wsconn: float, frameproto: float) -> None:
    print(f"  wscodec                {ours:12,.0f} frames/s")
    print(f"  wsproto WSConnection   {wsconn:12,.0f} frames/s   wscodec is {ours / wsconn:4.1f}x")
    print(f"  wsproto FrameProtocol  {frameproto:12,.0f} frames/s   wscodec is {ours / frameproto:4.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}")
    bench_masking(args.seconds)
    for size in (100, 65536):
        bench_decode(args.seconds, size)
        bench_encode(args.seconds, size)
    for size in (4000, 65536):
        bench_decode_pieces(args.seconds, size)


if __name__ == "__main__":
    main()
