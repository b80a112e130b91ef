"""Bus batches, lost-batch detection, presence of other instances and the client address
behind proxies: pure parts, no event loop."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.bus_events import (
    AiEvent,
    Arrival,
    Batch,
    ConversationEvent,
    FrameEvent,
    MessageEvent,
    PresenceEvent,
    RevokeEvent,
    Streams,
    WatchEvent,
    decode_batch,
    encode_batch,
)
from customer_service.core.client_address import client_address, trusted_networks
from customer_service.core.presence import PresenceView

EVENTS = [
    MessageEvent(1, 2, None, True, '{"type":"message"}'),
    MessageEvent(1, 3, 7, False, "é \u2028 ✓"),
    FrameEvent(1, 7, True, '{"type":"typing"}', True, False, 7),
    ConversationEvent(1, 7, None, True, True, '{"type":"conversation"}'),
    PresenceEvent("agent", 7, True),
    PresenceEvent("visitor", 1, False),
    RevokeEvent(7, "ab" * 32),
    RevokeEvent(7, None),
    WatchEvent(7, 1),
    AiEvent(1, "ai-1-abc", "live"),
]


def test_a_batch_survives_encoding_with_every_kind_of_event() -> None:
    batch = Batch("0123abcd" * 4, "host-1-abc", 42, EVENTS)
    assert decode_batch(encode_batch(batch)) == batch


@pytest.mark.parametrize("payload", [b"", b"\x00\x01", b"hello", msgspec.msgpack.encode(
    ["origin", 1, [["x", 1]]]), msgspec.msgpack.encode({"origin": "o"}),
    msgspec.msgpack.encode(["o", "not a number", []])])
def test_anything_else_on_the_channel_is_refused_with_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a bus batch"):
        decode_batch(payload)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_value_error(payload: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_batch(payload)


def test_streams_tell_new_next_lost_and_stale_batches() -> None:
    streams = Streams()
    assert streams.note("a", 5, 100.0) == (Arrival.NEW, 100.0)
    assert streams.note("a", 6, 101.0) == (Arrival.NEXT, 100.0)
    assert streams.note("a", 9, 102.0) == (Arrival.LOST, 101.0)
    assert streams.note("a", 9, 103.0)[0] is Arrival.STALE
    assert streams.note("a", 2, 103.0)[0] is Arrival.STALE
    assert streams.note("b", 1, 103.0)[0] is Arrival.NEW
    assert "a" in streams and len(streams) == 2


def test_silent_origins_are_forgotten_with_when_they_were_last_heard() -> None:
    streams = Streams()
    streams.note("a", 1, 100.0)
    streams.note("b", 1, 104.0)
    assert streams.silent(105.0, timeout=3.0) == [("a", 100.0)]
    assert "a" not in streams and "b" in streams
    # It was cut off, not dead: what it sent meanwhile is missing.
    assert streams.note("a", 9, 106.0) == (Arrival.LOST, 100.0)
    assert streams.note("c", 1, 106.0)[0] is Arrival.NEW


def test_nobody_is_silent_while_this_instance_could_not_hear() -> None:
    streams = Streams()
    streams.note("a", 1, 100.0)
    # our own bus was down until 108: counting starts there
    assert streams.silent(110.0, timeout=3.0, heard_since=108.0) == []
    assert streams.silent(111.0, timeout=3.0, heard_since=108.0) == [("a", 100.0)]


def test_presence_counts_each_instance_once_and_drops_a_gone_one() -> None:
    view = PresenceView()
    view.apply("a", PresenceEvent("agent", 7, True))
    view.apply("a", PresenceEvent("agent", 7, True))  # repeated: still one instance
    view.apply("b", PresenceEvent("agent", 7, True))
    view.apply("b", PresenceEvent("visitor", 3, True))
    assert view.agent_online(7) and view.visitor_online(3)
    view.apply("a", PresenceEvent("agent", 7, False))
    assert view.agent_online(7)  # still on b
    view.drop("b")
    assert not view.agent_online(7) and not view.visitor_online(3)
    assert view.agents() == set()


def test_a_snapshot_replaces_what_events_said() -> None:
    view = PresenceView()
    view.apply("a", PresenceEvent("agent", 1, True))
    view.apply("a", PresenceEvent("visitor", 9, True))
    view.replace("a", agents=[2], visitors=[10])
    assert view.agents() == {2}
    assert not view.visitor_online(9) and view.visitor_online(10)
    assert view.origins() == ["a"]


PROXIES = trusted_networks(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(("peer", "header", "expected"), [
    ("203.0.113.5", None, "203.0.113.5"),
    ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # an untrusted peer cannot pick its address
    ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("127.0.0.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client wrote 6.6.6.6
    ("127.0.0.1", "198.51.100.7, 10.1.2.3", "198.51.100.7"),  # two proxies
    ("127.0.0.1", "10.1.2.3, 10.0.0.9", "10.1.2.3"),  # every hop trusted: the first
    ("127.0.0.1", "garbage, 10.0.0.9", "10.0.0.9"),  # unreadable: stop at the last proxy
    ("127.0.0.1", "198.51.100.7:4711", "198.51.100.7"),
    ("127.0.0.1", "[2001:db8::1]:443", "2001:db8::1"),
    ("::1", "2001:db8::2", "2001:db8::2"),
    ("::ffff:127.0.0.1", "198.51.100.8", "198.51.100.8"),
    ("127.0.0.1", "", "127.0.0.1"),
])
def test_the_client_address_comes_from_trusted_proxies_only(peer: str, header: str | None,
                                                            expected: str) -> None:
    assert client_address(peer, header, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address("127.0.0.1", "198.51.100.7", ()) == "127.0.0.1"


def test_an_ipv4_mapped_proxy_entry_matches_its_ipv4_peer() -> None:
    mapped = trusted_networks(["::ffff:127.0.0.1"])
    assert client_address("127.0.0.1", "198.51.100.9", mapped) == "198.51.100.9"


def test_a_long_forwarded_chain_is_read_from_the_right_only_so_far() -> None:
    chain = ", ".join(["10.0.0.1"] * 5000)
    assert client_address("127.0.0.1", f"6.6.6.6, {chain}", PROXIES) == "10.0.0.1"
