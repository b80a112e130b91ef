"""Transport-level behaviour of the native transport, with a raw socket and the codec's client role.

The rest of the integration suite runs on both transports (see conftest); these
tests poke at framing details a WebSocket library client would hide.
"""

from __future__ import annotations

import base64
import json
import os
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import httpx
import pytest
import trio

from customer_service.config import Config
from customer_service.core.models import NewMessage, Role
from customer_service.server.run import Server, open_server
from customer_service.transport.wscodec import (
    Close,
    Event,
    FrameDecoder,
    FrameEncoder,
    Opcode,
    Pong,
    TextMessage,
    accept_key,
)
from tests.integration.helpers import http_url, visitor


@pytest.fixture
def transport() -> str:
    return "native"


class RawClient:
    def __init__(self, stream: trio.SocketStream, leftover: bytes) -> None:
        self.stream = stream
        self.encoder = FrameEncoder("client")
        self.decoder = FrameDecoder("client", max_message_bytes=1 << 20)
        self.events: deque[Event] = deque(self.decoder.feed(leftover) if leftover else [])
        self.eof = False
        self.head = b""

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def event(self, timeout: float = 5) -> Event | None:
        """The next event, or None at EOF."""
        with trio.fail_after(timeout):
            while not self.events:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.events.extend(self.decoder.feed(data))
        return self.events.popleft()

    async def close_code(self, timeout: float = 5) -> int | None:
        """Skip to the server's close frame and return its code (None: EOF without one)."""
        while True:
            event = await self.event(timeout)
            if event is None:
                return None
            if isinstance(event, Close):
                return event.code


def _handshake(path: str, key: str | None, *, version: str = "1.1",
               extra: tuple[str, ...] = ()) -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Version: 13", *extra]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@asynccontextmanager
async def raw_ws(server: Server, path: str = "/ws/visitor", first: bytes = b"",
                 extra: tuple[str, ...] = ()) -> AsyncIterator[RawClient]:
    """A handshaken raw socket; ``first`` is sent in the same write as the handshake,
    ``extra`` are more header lines. The 101's head is on ``RawClient.head``."""
    key = base64.b64encode(os.urandom(16)).decode()
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(_handshake(path, key, extra=extra) + first)
        buf = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                assert chunk, "EOF during the handshake"
                buf += chunk
        head, _, leftover = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        assert accept_key(key).encode() in head
        client = RawClient(stream, leftover)
        client.head = head
        yield client


def _hello(encoder: FrameEncoder) -> bytes:
    return encoder.encode_text(json.dumps({"type": "hello"}))


async def test_frames_sent_with_the_handshake_are_not_lost(server: Server) -> None:
    async with raw_ws(server, first=_hello(FrameEncoder("client"))) as ws:
        event = await ws.event()
        assert isinstance(event, TextMessage) and json.loads(event.text)["type"] == "welcome"


async def test_a_ping_is_answered_with_a_pong_by_the_transport(server: Server) -> None:
    async with raw_ws(server) as ws:
        await ws.send(ws.encoder.encode_ping(b"are you there"))
        event = await ws.event()
        assert event == Pong(b"are you there")


async def test_a_fragmented_text_message_is_reassembled(server: Server) -> None:
    async with raw_ws(server) as ws:
        raw = json.dumps({"type": "hello"}).encode()
        await ws.send(ws.encoder.encode_frame(Opcode.TEXT, raw[:3], fin=False))
        await ws.send(ws.encoder.encode_ping(b"between"))  # control frames may interleave
        await ws.send(ws.encoder.encode_frame(Opcode.CONTINUATION, raw[3:7], fin=False))
        await ws.send(ws.encoder.encode_frame(Opcode.CONTINUATION, raw[7:]))
        assert await ws.event() == Pong(b"between")
        event = await ws.event()
        assert isinstance(event, TextMessage) and json.loads(event.text)["type"] == "welcome"


async def test_an_unmasked_client_frame_closes_with_1002(server: Server) -> None:
    async with raw_ws(server) as ws:
        await ws.send(FrameEncoder("server").encode_text('{"type":"hello"}'))
        assert await ws.close_code() == 1002
        assert await ws.event() is None  # and the server hangs up


async def test_invalid_utf8_closes_with_1007(server: Server) -> None:
    async with raw_ws(server) as ws:
        await ws.send(_hello(ws.encoder))
        await ws.event()  # welcome
        await ws.send(ws.encoder.encode_frame(Opcode.TEXT, b'{"type":"\xff\xfe"}'))
        assert await ws.close_code() == 1007


async def test_invalid_utf8_closes_with_1007_before_the_rest_of_its_frame(server: Server) -> None:
    """Autobahn 6.4.3: the frame's first part holds an invalid sequence; the server fails
    the connection then, not when (if ever) the rest of the frame arrives."""
    async with raw_ws(server) as ws:
        await ws.send(_hello(ws.encoder))
        await ws.event()  # welcome
        payload = b'{"type":"text","id":"u1","content":"\xce\xba\xf4\x90\x80\x80' + b"x" * 2000
        frame = ws.encoder.encode_frame(Opcode.TEXT, payload + b'"}')
        await ws.send(frame[:60])  # header and the invalid sequence; the rest never comes
        assert await ws.close_code(timeout=3) == 1007


async def test_an_oversize_message_closes_with_1009_before_its_payload(server: Server) -> None:
    limit = server.config.server.max_frame_bytes
    async with raw_ws(server) as ws:
        frame = ws.encoder.encode_frame(Opcode.TEXT, b"x" * (limit + 1))
        await ws.send(frame[:16])  # only the header and a little payload
        assert await ws.close_code() == 1009


async def test_a_client_close_is_echoed_with_its_code(server: Server) -> None:
    async with raw_ws(server) as ws:
        await ws.send(_hello(ws.encoder))
        await ws.event()
        await ws.send(ws.encoder.encode_close(4000, "bye"))
        assert await ws.close_code() == 4000
        assert await ws.event() is None


async def test_the_server_close_is_a_close_frame_then_eof(server: Server) -> None:
    async with raw_ws(server) as ws:
        await ws.send(_hello(ws.encoder))
        await ws.event()
        server.shutdown()
        assert await ws.close_code() == 1001
        await ws.send(ws.encoder.encode_close(1001))
        assert await ws.event() is None


async def test_http_keep_alive_serves_two_requests_on_one_connection(server: Server) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        client = h11.Connection(h11.CLIENT)
        for _ in range(2):
            request = h11.Request(method="GET", target="/healthz",
                                  headers=[("Host", "127.0.0.1")])
            await stream.send_all(client.send(request) + client.send(h11.EndOfMessage()))
            body = b""
            status = 0
            with trio.fail_after(5):
                while True:
                    event = client.next_event()
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
            assert status == 200 and json.loads(body)["status"] == "ok"
            client.start_next_cycle()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as http:
        first = await http.get(http_url(server, "/healthz"))
        second = await http.post(http_url(server, "/api/v1/login"), content=b"{}")
        assert first.status_code == 200 and second.status_code == 400
        assert first.headers.get("connection") != "close"


async def test_a_handshake_without_a_key_gets_400_with_a_json_body(server: Server) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(_handshake("/ws/visitor", None))
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    payload = json.loads(body)
    assert payload["error"] == "bad_request" and "Sec-WebSocket-Key" in payload["message"]


async def test_a_plain_get_to_a_websocket_path_is_routed_as_http(server: Server) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(http_url(server, "/ws/visitor"))
    assert response.status_code == 404


async def test_garbage_instead_of_http_gets_400_and_eof(server: Server) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"\x00\x01 not http at all\r\n\r\n")
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 400")



async def test_pongs_and_data_frames_written_at_once_do_not_collide(server: Server) -> None:
    """The reader answers pings while the session's writer sends acks: both need the socket."""
    async with raw_ws(server) as ws:
        await ws.send(_hello(ws.encoder))
        await ws.event()  # welcome
        burst = b"".join(
            ws.encoder.encode_text(json.dumps({"type": "text", "id": f"t{n}", "content": "hi"}))
            + ws.encoder.encode_ping(str(n).encode())
            for n in range(30))
        await ws.send(burst)
        pongs, acks = 0, 0
        while pongs < 30 or acks < 30:
            event = await ws.event()
            assert event is not None and not isinstance(event, Close), event
            if isinstance(event, Pong):
                pongs += 1
            elif isinstance(event, TextMessage) and json.loads(event.text)["type"] == "ack":
                acks += 1


async def test_an_idle_keep_alive_connection_does_not_hold_up_shutdown(config: Config) -> None:
    async with httpx.AsyncClient() as http:
        async with open_server(config) as srv, trio.open_nursery() as nursery:
            await nursery.start(srv.serve)
            assert (await http.get(http_url(srv, "/healthz"))).status_code == 200
            srv.shutdown()
            started = trio.current_time()
        assert trio.current_time() - started < config.server.shutdown_timeout / 2


async def test_a_replay_larger_than_the_socket_buffer_arrives_whole_and_in_order(
        server: Server) -> None:
    """Writes go straight to the socket until the kernel takes only part of one; the rest
    must follow under the send lock before any other frame."""
    async with raw_ws(server, first=_hello(FrameEncoder("client"))) as client:
        welcome = await client.event()
        assert isinstance(welcome, TextMessage)
        cid = json.loads(welcome.text)["conversation_id"]
        token = json.loads(welcome.text)["visitor_token"]
    body = "x" * 3900
    await server.service.store.append_messages([
        NewMessage(cid, Role.AGENT, None, "Seeder", f"{n:04d} {body}") for n in range(400)])
    resume = json.dumps({"type": "hello", "visitor_token": token, "last_seq": 0})
    async with raw_ws(server, first=FrameEncoder("client").encode_text(resume)) as client:
        await trio.sleep(0.3)
        seen = []
        while len(seen) < 400:
            event = await client.event()
            assert isinstance(event, TextMessage)
            frame = json.loads(event.text)
            if frame["type"] == "message":
                seen.append(frame)
        assert [f["seq"] for f in seen] == list(range(1, 401))
        assert all(f["content"] == f"{n:04d} {body}" for n, f in enumerate(seen))
        await client.send(client.encoder.encode_ping(b"after"))
        while not isinstance(pong := await client.event(), Pong):
            assert pong is not None
        assert pong.payload == b"after"


async def test_busy_connections_never_see_each_others_bytes(server: Server) -> None:
    """Many sockets sending at once, with frames of many sizes: each frame stays on its own
    socket. (A receive buffer shared between connections once mixed them up.)"""
    visitors, texts = 20, 40
    problems: list[str] = []
    acked = 0

    async def talk(i: int) -> None:
        nonlocal acked
        async with visitor(server, name=f"v{i}") as (vis, welcome):
            contents = {f"{i}-{k}": f"visitor {i} says {k} " + "x" * (k * 37 % 900)
                        for k in range(texts)}
            for frame_id, content in contents.items():
                await vis.send(type="text", id=frame_id, content=content)
            got = 0
            while got < texts:
                frame = await vis.recv(timeout=20)
                if frame["type"] == "ack":
                    got += 1
                elif frame["type"] == "error" and frame["error"] == "busy":
                    # 800 texts at once pass admission control's first limit: resend.
                    await trio.sleep(frame["retry_after"])
                    await vis.send(type="text", id=frame["id"], content=contents[frame["id"]])
                elif frame["type"] == "message":
                    if frame["conversation_id"] != welcome["conversation_id"] or \
                            not frame["content"].startswith(f"visitor {i} says"):
                        problems.append(f"visitor {i} got {frame['content'][:30]!r}")
                else:
                    problems.append(f"visitor {i} got {frame}")
            acked += got

    async with trio.open_nursery() as nursery:
        for i in range(visitors):
            nursery.start_soon(talk, i)
    assert problems == []
    assert acked == visitors * texts


async def _exchange(server: Server, pieces: list[bytes], pause: float = 0.0) -> bytes:
    """Send ``pieces`` (one write each, ``pause`` apart) and return everything the server
    answers until it closes. Writes the server no longer reads are not an error."""
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    data = b""
    async with stream:
        try:
            for piece in pieces:
                await stream.send_all(piece)
                await trio.sleep(pause)
        except trio.BrokenResourceError:
            pass
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data


def _responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in ``data``, in order (every one has Content-Length)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                      if line.lower().startswith(b"content-length:"))
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def _get_with_head_of(size: int) -> bytes:
    """A GET /healthz whose head (request line, headers, blank line) is ``size`` bytes."""
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Padding: "
    end = b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize("size", [17_000, 64_000])
@pytest.mark.parametrize("how", ["one write", "in pieces"])
async def test_a_request_head_over_16_kib_is_refused_however_it_arrives(
        server: Server, size: int, how: str) -> None:
    request = _get_with_head_of(size)
    assert len(request) == size
    pieces = [request] if how == "one write" else [
        request[i:i + 4000] for i in range(0, len(request), 4000)]
    answers = _responses(await _exchange(server, pieces, pause=0.01))
    assert len(answers) == 1, answers
    status, body = answers[0]
    assert status == 431
    assert json.loads(body)["error"] == "too_large"


async def test_a_request_head_just_under_16_kib_is_served(server: Server) -> None:
    answers = _responses(await _exchange(server, [_get_with_head_of(16 * 1024)]))
    assert [status for status, _ in answers] == [200]


@pytest.mark.parametrize("order", ["length first", "encoding first"])
async def test_a_request_with_content_length_and_transfer_encoding_is_refused_and_closed(
        server: Server, order: str) -> None:
    """Request smuggling: behind a proxy that frames by Content-Length, a second request
    hidden in the chunked body would be served by us. It never is."""
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    framing = [b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked"]
    if order == "encoding first":
        framing.reverse()
    request = b"\r\n".join([b"POST /api/v1/login HTTP/1.1", b"Host: 127.0.0.1",
                            b"Content-Type: application/json", *framing, b"", body])
    answers = _responses(await _exchange(server, [request]))
    assert len(answers) == 1, answers  # the smuggled GET got no answer; the socket is closed
    status, payload = answers[0]
    assert status == 400
    message = json.loads(payload)["message"]
    assert "Content-Length" in message and "Transfer-Encoding" in message


async def test_an_http_1_0_websocket_upgrade_is_refused(server: Server) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    data = await _exchange(server, [_handshake("/ws/visitor", key, version="1.0")])
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    payload = json.loads(body)
    assert payload["error"] == "bad_request" and "HTTP/1.1" in payload["message"]


async def test_permessage_deflate_is_declined_and_the_socket_works_uncompressed(
        server: Server) -> None:
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    async with raw_ws(server, first=_hello(FrameEncoder("client")), extra=(offer,)) as ws:
        assert b"sec-websocket-extensions" not in ws.head.lower()
        welcome = await ws.event()  # our client decoder refuses RSV bits: not compressed
        assert isinstance(welcome, TextMessage) and json.loads(welcome.text)["type"] == "welcome"
