"""Raw Redis commands for tests (RESP over a socket): what an operator or an intruder with
redis-cli could do."""

from __future__ import annotations

import socket


def redis_command(port: int, words: list[str | bytes]) -> bytes:
    """Send one command to the Redis on 127.0.0.1:``port``; return the raw reply."""
    parts = [word.encode() if isinstance(word, str) else word for word in words]
    request = b"*%d\r\n" % len(parts) + b"".join(
        b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(request)
        return sock.recv(65536)
