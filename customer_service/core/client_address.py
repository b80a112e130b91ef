"""The client's address behind reverse proxies (``[server] trusted_proxies``).

A request's TCP peer is the client unless it is a trusted proxy; then the proxy's
``X-Forwarded-For`` is read from the right (each proxy appends the address it got
the request from), skipping further trusted proxies, and the first address that is
not one of them is the client. Entries left of that were written by the client
itself and are never believed. From an untrusted peer the header is ignored, so a
visitor cannot pick the address that login throttling and the logs see.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


MAX_HOPS = 32
"""Forwarded hops looked at, from the right: more than that is not a real proxy chain."""


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``[server] trusted_proxies`` as networks (the config loader already validated them).
    IPv4-mapped IPv6 entries (``::ffff:10.0.0.1``) become IPv4, as addresses do."""
    networks: list[Network] = []
    for entry in entries:
        network = ipaddress.ip_network(entry, strict=False)
        mapped = (network.network_address.ipv4_mapped
                  if isinstance(network, ipaddress.IPv6Network) else None)
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}", strict=False)
        networks.append(network)
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
             networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(peer: str, forwarded_for: str | None, networks: Sequence[Network]) -> str:
    """The address to throttle and log: ``peer`` itself unless it is a trusted proxy."""
    if not networks or not forwarded_for:
        return peer
    current = _address(peer)
    if current is None or not _trusted(current, networks):
        return peer
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()][-MAX_HOPS:]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            # A hop nobody could have written but the client: stop at the last proxy.
            return str(current)
        current = found
        if not _trusted(current, networks):
            return str(current)
    return str(current)
