"""The SSE decoder: events come out the same however the bytes are cut."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.sse import SseDecoder
from customer_service.errors import AiBadResponse

STREAM = (b': keep-alive\n\ndata: {"a": 1}\n\nevent: message\nid: 7\ndata: {"b":\n'
          b'data: 2}\n\ndata:[DONE]\r\n\r\ndata: caf\xc3\xa9\r\rdata: last\n\n')
EXPECTED = ['{"a": 1}', '{"b":\n2}', "[DONE]", "café", "last"]


def decode(pieces: list[bytes], limit: int = 1 << 20) -> list[str]:
    decoder = SseDecoder(limit)
    return [event for piece in pieces for event in decoder.feed(piece)]


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


def test_byte_by_byte() -> None:
    assert decode([STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


def test_a_crlf_split_across_pieces_is_one_line_break() -> None:
    assert decode([b"data: a\r", b"\ndata: b\r\n\r\n"]) == ["a\nb"]


def test_an_unfinished_event_is_not_emitted() -> None:
    assert decode([b"data: partial"]) == []


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_cutting_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted({0, len(STREAM), *cuts})
    pieces = [STREAM[a:b] for a, b in pairwise(points)]
    assert decode(pieces) == EXPECTED


def test_an_oversized_event_is_refused_not_buffered() -> None:
    decoder = SseDecoder(max_event_bytes=100)
    with pytest.raises(AiBadResponse):
        for _ in range(20):
            decoder.feed(b"data: " + b"x" * 20 + b"\n")
    with pytest.raises(AiBadResponse):
        SseDecoder(max_event_bytes=100).feed(b"data: " + b"y" * 200)


def test_invalid_utf8_is_a_bad_response() -> None:
    with pytest.raises(AiBadResponse):
        SseDecoder().feed(b"data: \xff\n\n")
