"""The web pages and their assets, read once from the package (also inside the zipapp).

Pages get a restrictive Content-Security-Policy: scripts, styles and sockets only
from this server, nothing inline, no framing. ``/widget.js`` is meant to be loaded
by other sites, so it carries a cross-origin resource policy instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; media-src 'self' data:; font-src 'self'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


def content_security_policy(logo_url: str = "") -> str:
    """The pages' policy; a ``[web] logo_url`` on another origin (https://host[:port]/...)
    adds that origin, and only it, to ``img-src``. A logo path on this server needs nothing."""
    origin = logo_origin(logo_url)
    return CSP.replace("img-src 'self' data:", f"img-src 'self' data: {origin}") if origin else CSP


def logo_origin(logo_url: str) -> str:
    """``https://host[:port]`` of an absolute logo URL; "" for a path (or no logo)."""
    if not logo_url.startswith("https://"):
        return ""
    parts = urlsplit(logo_url)
    return f"https://{parts.netloc}" if parts.netloc and parts.netloc.isascii() else ""

CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
    "wav": "audio/wav",
    "json": "application/json",
}

PAGES = {"/": "index.html", "/agent": "agent.html", "/widget.js": "widget.js"}

STRINGS_PLACEHOLDER = b"/*@STRINGS@*/{}"
"""Where a script wants the string tables: replaced, as the assets are read, by
``{"en": {...}, "zh-CN": {...}}`` from the ``lang-<language>.json`` files (one table per
language), so the widget and the dashboard translate without a request of their own."""


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    headers: tuple[tuple[bytes, bytes], ...]


def _asset(name: str, body: bytes, csp: str = CSP) -> Asset:
    extension = name.rsplit(".", 1)[-1]
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-cache"), (b"etag", etag.encode())]
    if extension == "html":
        headers += [(b"content-security-policy", csp.encode()), (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY")]
    else:
        headers.append((b"cross-origin-resource-policy", b"cross-origin"))
    return Asset(body, CONTENT_TYPES.get(extension, "application/octet-stream"), etag, tuple(headers))


def load_assets(logo_url: str = "") -> dict[str, Asset]:
    """Every servable path → its asset: the pages above plus ``/static/<file>``; the pages'
    policy allows the ``[web] logo_url``'s origin (see :func:`content_security_policy`)."""
    csp = content_security_policy(logo_url)
    root = resources.files("customer_service.web")
    files = {entry.name: entry.read_bytes() for entry in root.iterdir()
             if entry.is_file() and not entry.name.startswith((".", "_"))}
    tables = string_tables(files)
    for name, body in files.items():
        if name.endswith(".js") and STRINGS_PLACEHOLDER in body:
            files[name] = body.replace(STRINGS_PLACEHOLDER, tables)
    assets = {f"/static/{name}": _asset(name, body, csp) for name, body in files.items()}
    for path, name in PAGES.items():
        if name in files:
            assets[path] = _asset(name, files[name], csp)
    return assets


def string_tables(files: dict[str, bytes]) -> bytes:
    """The ``lang-*.json`` tables as one JSON object keyed by language."""
    tables = {name.removeprefix("lang-").removesuffix(".json"): json.loads(body)
              for name, body in sorted(files.items())
              if name.startswith("lang-") and name.endswith(".json")}
    return json.dumps(tables, ensure_ascii=False, separators=(",", ":")).encode()
