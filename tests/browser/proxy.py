"""A cuttable TCP proxy on loopback, to simulate a visitor's network dropping.

    with TcpProxy(("127.0.0.1", server_port)) as proxy:
        page.goto(f"http://127.0.0.1:{proxy.port}/")   # the page and its WebSocket go through it
        proxy.cut()       # every open connection is reset; new ones are reset as soon as accepted
        proxy.restore()   # new connections are forwarded again

One accept thread, and two pump threads (one per direction) per forwarded connection, all
with blocking sockets. Every wait is bounded: the accept loop polls with a short timeout, and
``cut()`` / ``close()`` wake the pumps by shutting their sockets down, then join them with a
timeout.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

__all__ = ["TcpProxy"]

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_POLL = 0.05
_JOIN_TIMEOUT = 5.0


def _reset(sock: socket.socket) -> None:
    """Make the next close() send RST, and wake any thread blocked on the socket."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Link:
    """One forwarded connection: the client's socket, the upstream socket and two pumps."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._running = 2
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True,
                             name="proxy-pump-up"),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True,
                             name="proxy-pump-down"),
        ]
        self.done = threading.Event()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        # The other direction may still be sending (a half-close); pass the EOF on.
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self.client.close()
            self.upstream.close()
            self.done.set()

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.upstream)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` until cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._cut = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept")
        self._started = False
        self.accepted = 0
        """Connections accepted so far (forwarded or reset)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    def start(self) -> TcpProxy:
        self._thread.start()
        self._started = True
        return self

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def cut(self) -> None:
        """Reset every open connection, and every new one from now until ``restore()``."""
        with self._lock:
            self._cut = True
            links = list(self._links)
            self._links.clear()
        for link in links:
            link.reset()
        for link in links:
            link.join(_JOIN_TIMEOUT)

    def restore(self) -> None:
        """Forward new connections again."""
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._stopping.set()
        if self._started:
            self._thread.join(_JOIN_TIMEOUT)
        self.cut()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.accepted += 1
            with self._lock:
                refused = self._cut or self._stopping.is_set()
            if refused:
                _reset(client)
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                _reset(client)
                client.close()
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                if self._cut:
                    link.reset()
                self._links.add(link)
                self._links = {each for each in self._links if not each.done.is_set()}
            link.start()
