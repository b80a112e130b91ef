"""``customer_service.transport.client``: the pure parts (URL, upgrade request, response
check), then the client against small in-process servers on loopback (plain, TLS with a
throw-away certificate, and servers that misbehave)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import h11
import pytest
import trio

from customer_service.transport.client import (
    ConnectionClosed,
    HandshakeFailed,
    WebSocketTimeout,
    WsTarget,
    check_handshake_response,
    handshake_request,
    open_websocket,
    parse_ws_url,
    split_head,
)
from customer_service.transport.wscodec import (
    Close,
    FrameDecoder,
    FrameEncoder,
    TextMessage,
    accept_headers,
    validate_client_handshake,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# ---- pure parts ---------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "target"), [
    ("ws://example.com/ws/visitor", WsTarget(False, "example.com", 80, "/ws/visitor")),
    ("wss://example.com/ws/agent?token=a%20b", WsTarget(True, "example.com", 443,
                                                        "/ws/agent?token=a%20b")),
    ("ws://127.0.0.1:8080", WsTarget(False, "127.0.0.1", 8080, "/")),
    ("wss://[::1]:8443/x", WsTarget(True, "::1", 8443, "/x")),
])
def test_parse_ws_url(url: str, target: WsTarget) -> None:
    assert parse_ws_url(url) == target


@pytest.mark.parametrize("url", ["http://example.com/", "example.com", "ws:///path",
                                 "ws://host:99999/"])
def test_parse_ws_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        parse_ws_url(url)


def test_default_port_is_left_out_of_host_and_ipv6_is_bracketed() -> None:
    assert parse_ws_url("wss://example.com/").default_port
    assert not parse_ws_url("wss://example.com:8443/").default_port
    raw = handshake_request("example.com", None, "/ws/visitor", RFC_KEY,
                            headers=[("User-Agent", "doctor")])
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    headers = dict(request.headers)
    assert headers[b"host"] == b"example.com"
    assert headers[b"user-agent"] == b"doctor"
    assert validate_client_handshake(request.headers) == RFC_KEY
    assert b"Host: [::1]:8080\r\n" in handshake_request("::1", 8080, "/", RFC_KEY)


@pytest.mark.parametrize("header", [("X-Evil", "a\r\nInjected: 1"), ("Bad Name", "v"),
                                    ("", "v")])
def test_request_refuses_header_injection(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        handshake_request("h", 80, "/", RFC_KEY, headers=[header])


def test_split_head() -> None:
    assert split_head(b"HTTP/1.1 101 OK\r\n") is None
    assert split_head(b"HTTP/1.1 101 OK\r\n\r\n\x81\x00") == (b"HTTP/1.1 101 OK", b"\x81\x00")


def test_a_refused_upgrade_carries_its_status_and_headers() -> None:
    """A proxy that answered the upgrade as a plain request: HTTP/1.0 is fine for that."""
    with pytest.raises(HandshakeFailed) as caught:
        check_handshake_response(b"HTTP/1.0 200 OK\r\nServer: nginx\r\nno colon", RFC_KEY)
    assert caught.value.status == 200
    assert caught.value.headers == {"server": "nginx"}
    with pytest.raises(HandshakeFailed) as caught:
        check_handshake_response(b"HTTP/1.1 426 Upgrade Required", RFC_KEY)
    assert caught.value.status == 426
    with pytest.raises(HandshakeFailed) as caught:
        check_handshake_response(b"SSH-2.0-OpenSSH_9.2", RFC_KEY)
    assert caught.value.status is None


def test_a_good_101_passes() -> None:
    check_handshake_response(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode(), RFC_KEY)


# ---- against servers on loopback ----------------------------------------------------------

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


async def _read_head(stream: trio.abc.Stream) -> tuple[list[tuple[str, str]], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(4096)
        if not data:
            raise trio.BrokenResourceError("EOF")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")[1:]
    return [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines)], rest


async def echo_server(stream: trio.abc.Stream, *, ping_first: bool = False) -> None:
    """Accept the upgrade, echo text messages (after a ping, if asked), answer the close."""
    headers, rest = await _read_head(stream)
    key = validate_client_handshake(headers)
    answer = "".join(f"{n.decode()}: {v.decode()}\r\n" for n, v in accept_headers(key))
    encoder, decoder = FrameEncoder("server"), FrameDecoder("server")
    await stream.send_all(f"HTTP/1.1 101 Switching Protocols\r\n{answer}\r\n".encode()
                          + (encoder.encode_ping(b"hi") if ping_first else b""))
    data = rest
    while True:
        for event in decoder.feed(data):
            if isinstance(event, TextMessage):
                await stream.send_all(encoder.encode_text("echo:" + event.text))
            elif isinstance(event, Close):
                await stream.send_all(encoder.encode_close(event.code))
                await stream.aclose()
                return
        data = bytes(await stream.receive_some(4096))
        if not data:
            return


async def plain_200(stream: trio.abc.Stream) -> None:
    await _read_head(stream)
    await stream.send_all(b"HTTP/1.1 200 OK\r\nServer: test-proxy\r\nContent-Length: 2\r\n\r\nok")
    await stream.aclose()


async def close_after_upgrade(stream: trio.abc.Stream) -> None:
    headers, _ = await _read_head(stream)
    key = validate_client_handshake(headers)
    answer = "".join(f"{n.decode()}: {v.decode()}\r\n" for n, v in accept_headers(key))
    await stream.send_all(f"HTTP/1.1 101 Switching Protocols\r\n{answer}\r\n".encode()
                          + FrameEncoder("server").encode_close(1001, "bye"))
    await trio.sleep(0.5)
    await stream.aclose()


async def silent(stream: trio.abc.Stream) -> None:
    await trio.sleep_forever()


async def serve(nursery: trio.Nursery, handler: Handler,
                tls: ssl.SSLContext | None = None) -> int:
    async def wrapped(stream: trio.SocketStream) -> None:
        inner: trio.abc.Stream = stream
        if tls is not None:
            inner = trio.SSLStream(stream, tls, server_side=True)
        try:
            await handler(inner)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(inner)

    listeners = await nursery.start(partial(trio.serve_tcp, wrapped, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def test_round_trip_answers_pings_and_closes_cleanly() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, partial(echo_server, ping_first=True))
        async with open_websocket(f"ws://127.0.0.1:{port}/ws/visitor", timeout=5) as ws:
            await ws.send_text("héllo")
            with trio.fail_after(5):
                assert await ws.receive_text() == "echo:héllo"
            await ws.send_text("x" * 70000)  # a 64-bit length, masked
            with trio.fail_after(5):
                assert await ws.receive_text() == "echo:" + "x" * 70000
        assert ws.closed is not None
        assert ws.closed.close_code == 1000
        nursery.cancel_scope.cancel()


async def test_a_plain_http_answer_fails_the_handshake_with_its_status() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, plain_200)
        with pytest.raises(HandshakeFailed) as caught:
            async with open_websocket(f"ws://127.0.0.1:{port}/ws/visitor", timeout=5):
                pass
        assert caught.value.status == 200
        assert caught.value.headers["server"] == "test-proxy"
        nursery.cancel_scope.cancel()


async def test_a_server_close_is_reported_with_its_code() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, close_after_upgrade)
        async with open_websocket(f"ws://127.0.0.1:{port}/", timeout=5) as ws:
            with pytest.raises(ConnectionClosed) as caught, trio.fail_after(5):
                await ws.receive_text()
            assert (caught.value.close_code, caught.value.reason) == (1001, "bye")
            with pytest.raises(ConnectionClosed):
                await ws.send_text("too late")
        nursery.cancel_scope.cancel()


async def test_a_silent_server_times_out_the_handshake() -> None:
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, silent)
        with pytest.raises(WebSocketTimeout, match="upgrade response"):
            async with open_websocket(f"ws://127.0.0.1:{port}/", timeout=0.3):
                pass
        nursery.cancel_scope.cancel()


async def test_a_closed_port_is_an_os_error() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(OSError):
        async with open_websocket(f"ws://127.0.0.1:{port}/", timeout=5):
            pass


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (openssl's command line)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def test_wss_verifies_the_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, echo_server, tls=server_tls)
        trusting = ssl.create_default_context(cafile=str(cert))
        async with open_websocket(f"wss://localhost:{port}/ws", timeout=5,
                                  ssl_context=trusting) as ws:
            await ws.send_text("over tls")
            with trio.fail_after(5):
                assert await ws.receive_text() == "echo:over tls"
        # certifi's CAs do not know the throw-away certificate
        with pytest.raises(Exception, match="TLS handshake") as caught:
            async with open_websocket(f"wss://localhost:{port}/ws", timeout=5):
                pass
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
        nursery.cancel_scope.cancel()

