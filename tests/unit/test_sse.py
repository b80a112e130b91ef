"""The SSE decoder: events come out the same however the bytes are cut."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core.sse import BOM, SseDecoder, is_event_stream
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


def test_a_leading_byte_order_mark_is_skipped() -> None:
    assert decode([BOM + STREAM]) == EXPECTED
    assert decode([BOM + b'data: {"first": 1}\n\n']) == ['{"first": 1}']


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_byte_order_mark_split_across_pieces_is_skipped(cut: int) -> None:
    whole = BOM + b"data: first\n\ndata: second\n\n"
    assert decode([whole[:cut], whole[cut:]]) == ["first", "second"]
    assert decode([whole[:1], whole[1:2], b"", whole[2:]]) == ["first", "second"]


@given(st.lists(st.integers(min_value=0, max_value=len(BOM + STREAM)), max_size=12))
def test_any_cutting_after_a_bom_gives_the_same_events(cuts: list[int]) -> None:
    stream = BOM + STREAM
    points = sorted({0, len(stream), *cuts})
    assert decode([stream[a:b] for a, b in pairwise(points)]) == EXPECTED


def test_only_one_leading_byte_order_mark_is_skipped() -> None:
    # A second mark, or one later in the stream, is part of the line: "\ufeffdata" is
    # not a field this decoder knows, so that line is ignored (as the standard says).
    assert decode([BOM + BOM + b"data: a\n\ndata: b\n\n"]) == ["b"]
    assert decode([b"data: a\n\n" + BOM + b"data: b\n\ndata: c\n\n"]) == ["a", "c"]


def test_a_stream_that_starts_like_a_bom_but_is_not_one_is_kept_whole() -> None:
    assert decode([b"\xef", b"\xbb", b"data: x\n\ndata: y\n\n"]) == ["y"]
    assert decode([b"d", b"ata: x\n\n"]) == ["x"]


@pytest.mark.parametrize(("value", "expected"), [
    ("text/event-stream", True),
    ("Text/Event-Stream", True),
    ("TEXT/EVENT-STREAM", True),
    ("text/event-stream; charset=utf-8", True),
    ("Text/Event-Stream;charset=UTF-8", True),
    ("  text/event-stream  ; charset=utf-8", True),
    ("application/json", False),
    ("text/event-streams", False),
    ("text/plain; x=text/event-stream", False),
    ("", False),
    (None, False),
])
def test_the_event_stream_media_type_is_matched_case_insensitively(
        value: str | None, expected: bool) -> None:
    assert is_event_stream(value) is expected
