"""A real webhook receiver on loopback for the tests: ``http.server`` in a thread.

Each request is recorded (headers, body, arrival time) and answered by the ``plan``: a
function of the request's number (1, 2, ...) and its body giving a status, headers and a
body, or ``HANG`` to hold the request until ``release()`` (bounded: ``HANG_LIMIT``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trio

from customer_service.core.webhooks import verify

HANG = "hang"
HANG_LIMIT = 30.0
Reply = tuple[int, dict[str, str], bytes]
Plan = Callable[[int, dict[str, Any]], "Reply | str"]


def ok(_number: int, _event: dict[str, Any]) -> Reply:
    return 200, {}, b"ok"


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    at: float
    status: int | None = None

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    port: int = 0
    plan: Plan = ok
    secret: str | None = None
    """When set, a request whose signature does not verify is answered 401 (and counted)."""
    requests: list[Request] = field(default_factory=list)
    bad_signatures: int = 0
    hanging: int = 0
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def release(self) -> None:
        self._release.set()

    def answered(self, status: int = 200) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.status == status]

    def events(self, status: int = 200) -> list[dict[str, Any]]:
        return [r.event for r in self.answered(status)]

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[Request, Reply | str]:
        request = Request(headers, body, time.monotonic())
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
        if self.secret is not None and not verify(
                self.secret, headers.get("x-webhook-signature", ""),
                headers.get("x-webhook-timestamp", ""), body, time.time()):
            with self._lock:
                self.bad_signatures += 1
            return request, (401, {}, b"bad signature")
        return request, self.plan(number, request.event)

    def hang(self) -> None:
        with self._lock:
            self.hanging += 1
        self._release.wait(HANG_LIMIT)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            request, reply = receiver.handle(headers, body)
            if reply == HANG:
                receiver.hang()
                reply = (200, {}, b"late")
            assert not isinstance(reply, str)
            status, extra, content = reply
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)
            except OSError:
                return  # the sender gave up (timeout): nobody reads this answer
            request.status = status

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    """Serve ``receiver`` on its port (0: a free one, written back) until the block ends."""
    httpd = ThreadingHTTPServer(("127.0.0.1", receiver.port), _handler(receiver))
    httpd.daemon_threads = True
    receiver.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check()`` until it returns something truthy, within ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while True:
            value = check()
            if value:
                return value
            await trio.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s (last: {check()!r})")
