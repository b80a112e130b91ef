"""Which web pages may open the WebSocket endpoints (``[server] allowed_origins``).

A browser sends the ``Origin`` of the page that opens a WebSocket (RFC 6455 §4.1,
item 8) and, unlike for ``fetch``, enforces no same-origin rule on the answer: any
page on the web can open a socket to the server. The allow-list closes that.

Origins compare as RFC 6454 §6.2 serializes them: ``scheme://host[:port]``, scheme
and host lowercased, the scheme's default port left out, no path. So
``HTTPS://Shop.Example.com:443`` in the config matches the ``https://shop.example.com``
a browser sends. An entry ``https://*.example.com`` matches any subdomain of
example.com (one label or more) on that scheme and port, never example.com itself.

Pure: the config loader validates entries with ``parse_origin``; the server compiles
them once (``AllowedOrigins``) and asks ``allows`` for each upgrade.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["AllowedOrigins", "Origin", "parse_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    """Lowercased; an IPv6 address in brackets; ``*.example.com`` for a wildcard entry."""
    port: int | None
    """None for the scheme's default port."""

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port is not None else "")


def _check_host(host: str, *, wildcard: bool) -> str:
    """The host as serialized (IPv6 in brackets), or ValueError."""
    if not host:
        raise ValueError("has no host")
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            raise ValueError(f"has an invalid IPv6 address {host!r}") from None
    if not host.isascii():
        raise ValueError("has a non-ASCII host: write it as the browser sends it "
                         "(punycode, xn--...)")
    labels = host.split(".")
    if labels[0] == "*":
        if not wildcard:
            raise ValueError("has a wildcard host")
        if len(labels) < 3:
            raise ValueError("has a wildcard over a whole top-level domain; write "
                             "\"https://*.example.com\"")
        labels = labels[1:]
        if labels[-1].isdigit():
            raise ValueError("has a wildcard over an IP address")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"has an invalid host {host!r}")
    return host


def parse_origin(text: str, *, wildcard: bool = True) -> Origin:
    """A configured entry (or, with ``wildcard=False``, an ``Origin`` header) as an ``Origin``.

    Raises ``ValueError`` whose message completes "'<text>' ...": a scheme other than
    http/https, a path (even "/"), a query, a fragment, user info, a bad host or port.
    """
    if text != text.strip() or not text:
        raise ValueError("is not an origin: no spaces, and not empty")
    if "://" not in text:
        raise ValueError("has no scheme: write \"https://shop.example.com\"")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not an origin ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"has the scheme {scheme!r}: pages are served over http or https")
    if parts.path or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("has a path, query or fragment: an origin is only "
                         "scheme://host[:port], without even a trailing \"/\"")
    if "@" in parts.netloc:
        raise ValueError("has user info (user@): an origin is only scheme://host[:port]")
    host = parts.hostname or ""
    if "[" in parts.netloc and ":" not in host:
        raise ValueError(f"has an invalid IPv6 address {host!r}")
    host = _check_host(host, wildcard=wildcard)
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    return Origin(scheme, host, port)


class AllowedOrigins:
    """The compiled ``[server] allowed_origins``: exact origins and wildcard suffixes."""

    __slots__ = ("_exact", "_suffixes")

    def __init__(self, entries: list[str]) -> None:
        """``entries`` as the config loader validated them (``parse_origin``)."""
        exact: set[str] = set()
        suffixes: set[tuple[str, str, int | None]] = set()
        for entry in entries:
            origin = parse_origin(entry)
            if origin.host.startswith("*."):
                suffixes.add((origin.scheme, origin.host[1:], origin.port))  # ".example.com"
            else:
                exact.add(str(origin))
        self._exact = frozenset(exact)
        self._suffixes = frozenset(suffixes)

    @property
    def any(self) -> bool:
        """No list configured: every origin is allowed."""
        return not self._exact and not self._suffixes

    def allows(self, header: str | None) -> bool:
        """Whether a request with this ``Origin`` header (None: no header) may open a socket.

        No header: a non-browser client (a browser always sends one on a WebSocket
        handshake), allowed, since the header only protects browsers' users. A header
        that is not one origin (``null`` from a sandboxed page or a file, a list,
        garbage) is refused whenever a list is configured.
        """
        if header is None or self.any:
            return True
        try:
            origin = parse_origin(header, wildcard=False)
        except ValueError:
            return False
        if str(origin) in self._exact:
            return True
        if origin.host.startswith("["):
            return False
        return any(origin.scheme == scheme and origin.port == port and origin.host.endswith(suffix)
                   for scheme, suffix, port in self._suffixes)
