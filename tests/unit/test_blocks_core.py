"""core.blocks: parsing networks and durations, matching visitors and addresses, expiry."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest

from customer_service.core.blocks import (
    Block,
    BlockList,
    address_key,
    applies_to,
    check_reason,
    parse_address,
    parse_duration,
    parse_network,
    refusal_message,
)
from customer_service.errors import BadRequest

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def block(block_id: int, *, visitor: int | None = None, network: str | None = None,
          expires: datetime | None = None) -> Block:
    return Block(block_id, visitor, network, "", "test", NOW, expires)


def addr(text: str):  # type: ignore[no-untyped-def]
    return parse_address(text)


@pytest.mark.parametrize(("text", "normal"), [
    ("203.0.113.7", "203.0.113.7/32"),
    (" 10.0.0.0/8 ", "10.0.0.0/8"),
    ("2001:db8::/32", "2001:db8::/32"),
    ("2001:DB8::1", "2001:db8::1/128"),
    ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
])
def test_networks_are_normalized(text: str, normal: str) -> None:
    assert str(parse_network(text)) == normal


@pytest.mark.parametrize(("text", "says"), [
    ("10.1.2.3/16", "did you mean 10.1.0.0/16"),
    ("300.1.1.1", "invalid IP address or CIDR network '300.1.1.1'"),
    ("10.0.0.0/33", "invalid IP address or CIDR network"),
    ("example.com", "invalid IP address or CIDR network 'example.com'"),
    ("", "invalid IP address or CIDR network ''"),
    ("0.0.0.0/0", "that is every address"),
    ("::/0", "that is every address"),
    # A zone (scope) is no part of a client's address: it never matched one, and a long one
    # overflowed the MySQL column ("Data too long for column 'network'").
    ("fe80::1%eth0", "zone"),
    ("fe80::1%" + "a" * 100, "zone"),
])
def test_bad_networks_are_refused_clearly(text: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says.replace(".", r"\.").replace("(", r"\(")):
        parse_network(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
    ("1d12h", 129600), (" 7D ", 604800),
])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7", "d", "7 days", "-1d", "0d", "1.5h", "7d junk",
                                  "99999w"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(BadRequest, match="invalid duration"):
        parse_duration(text)


def test_a_reason_is_bounded() -> None:
    assert check_reason("  spam  ") == "spam"
    with pytest.raises(BadRequest, match="at most 500"):
        check_reason("x" * 501)


def test_addresses_parse_and_mapped_ipv6_becomes_ipv4() -> None:
    assert str(addr("::ffff:203.0.113.7")) == "203.0.113.7"
    assert addr("?") is None and addr("unix:/tmp/s") is None


@pytest.mark.parametrize("text", ["203.0.113.7", "::ffff:203.0.113.7", "2001:db8::1", "::1",
                                  "0.0.0.0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"])
def test_address_keys_agree_with_ipaddress(text: str) -> None:
    parsed = parse_address(text)
    assert parsed is not None
    assert address_key(text) == (parsed.version, int(parsed))


@pytest.mark.parametrize("text", ["?", "", "1.2.3", "1.2.3.4.5", "::g", "1.2.3.4\x00",
                                  "unix:/tmp/s", " 1.2.3.4"])
def test_address_keys_of_what_is_not_an_address(text: str) -> None:
    assert address_key(text) is None


def test_matching_by_visitor_and_by_network() -> None:
    blocks = BlockList([block(1, visitor=7), block(2, network="203.0.113.0/24"),
                        block(3, network="2001:db8::/32"), block(4, network="198.51.100.9/32")])
    assert blocks.match(7, None, NOW) == block(1, visitor=7)
    assert blocks.match(8, addr("192.0.2.1"), NOW) is None
    assert blocks.match(8, addr("203.0.113.200"), NOW) == block(2, network="203.0.113.0/24")
    assert blocks.match(None, addr("203.0.114.1"), NOW) is None
    assert blocks.match(None, addr("2001:db8:1::5"), NOW) == block(3, network="2001:db8::/32")
    assert blocks.match(None, addr("2001:db9::5"), NOW) is None
    assert blocks.match(None, addr("198.51.100.9"), NOW) is not None
    assert blocks.match(None, addr("198.51.100.10"), NOW) is None
    # An IPv4 block never matches an IPv6 address with the same integer, and back.
    assert blocks.match(None, addr("::cb00:7101"), NOW) is None
    # The hello path's keys match the same way.
    assert blocks.match(None, address_key("203.0.113.200"), NOW) is not None
    assert blocks.match(None, address_key("::ffff:203.0.113.200"), NOW) is not None
    assert blocks.match(None, address_key("::cb00:7101"), NOW) is None


def test_expired_blocks_stop_applying_without_removal() -> None:
    soon = NOW + timedelta(minutes=5)
    blocks = BlockList([block(1, visitor=7, expires=soon),
                        block(2, network="10.0.0.0/8", expires=soon)])
    assert blocks.match(7, None, NOW) is not None
    assert blocks.match(None, addr("10.9.9.9"), NOW) is not None
    assert blocks.match(7, addr("10.9.9.9"), soon) is None
    assert blocks.match(7, None, soon - timedelta(milliseconds=1)) is not None
    assert [b.id for b in blocks.prune(soon)] == [1, 2] and len(blocks) == 0


def test_the_longest_lasting_block_is_reported() -> None:
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=1)
    blocks = BlockList([block(1, visitor=7, expires=soon),
                        block(2, network="10.0.0.0/8", expires=later),
                        block(3, network="10.1.0.0/16", expires=soon)])
    assert blocks.match(7, addr("10.1.2.3"), NOW) == block(2, network="10.0.0.0/8",
                                                            expires=later)
    blocks.add(block(4, network="10.1.2.0/24"))
    found = blocks.match(7, addr("10.1.2.3"), NOW)
    assert found is not None and found.id == 4
    assert "blocked until" not in refusal_message(found)
    assert "until 2026-12-01 12:00 UTC" in refusal_message(block(2, expires=later))


def test_removing_blocks_updates_the_index() -> None:
    blocks = BlockList([block(1, network="10.0.0.0/8"), block(2, network="10.0.0.0/8"),
                        block(3, visitor=5, network="192.0.2.1/32")])
    assert blocks.remove(1) is not None and blocks.remove(1) is None
    assert blocks.match(None, addr("10.0.0.1"), NOW) == block(2, network="10.0.0.0/8")
    blocks.remove(2)
    assert blocks.match(None, addr("10.0.0.1"), NOW) is None
    blocks.remove(3)
    assert blocks.match(5, addr("192.0.2.1"), NOW) is None and len(blocks) == 0
    assert 3 not in blocks


def test_applies_to_names_the_visitor_or_its_address() -> None:
    both = block(1, visitor=5, network="10.0.0.0/8")
    assert applies_to(both, 5, None) and applies_to(both, 6, addr("10.2.3.4"))
    assert not applies_to(both, 6, addr("11.0.0.1")) and not applies_to(both, None, None)
    assert not applies_to(block(2, network="2001:db8::/32"), 1, addr("32.1.13.184"))


def test_a_thousand_blocks_match_like_a_linear_scan() -> None:
    """The index agrees with checking every block, on random networks and addresses."""
    rng = random.Random(12)
    made = []
    for i in range(1000):
        if i % 4 == 0:
            length = rng.choice([32, 48, 64, 128])
            value = rng.getrandbits(128) | (0x2001 << 112)
            made.append(block(i + 1, network=str(ipaddress.ip_network(
                (value, length), strict=False))))
        else:
            length = rng.choice([8, 16, 20, 24, 28, 32])
            value = rng.getrandbits(32)
            made.append(block(i + 1, network=str(ipaddress.ip_network(
                (value, length), strict=False)), expires=NOW + timedelta(seconds=i - 100)))
    blocks = BlockList(made)
    hits = 0
    for _ in range(400):
        address = addr(_v6(rng.getrandbits(128) | (0x2001 << 112))) if rng.random() < 0.2 \
            else addr(".".join(str(rng.getrandbits(8)) for _ in range(4)))
        expected = [b for b in made if b.active(NOW) and applies_to(b, None, address)]
        found = blocks.match(None, address, NOW)
        assert (found is None) == (not expected)
        if found is not None:
            assert found in expected
            hits += 1
    assert hits > 50  # the /8 and /16 blocks cover a good share of random addresses


def _v6(value: int) -> str:
    return str(ipaddress.IPv6Address(value))
