"""The frame parser: every input gives a typed event or a ProtocolError, never anything else."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from customer_service.core import frames
from customer_service.errors import BadRequest, Forbidden, ProtocolError, TooLarge


def test_visitor_frames_decode_to_typed_events() -> None:
    hello = frames.parse_visitor_frame('{"type":"hello","visitor_token":"t","last_seq":4}')
    assert hello == frames.Hello(visitor_token="t", last_seq=4)
    text = frames.parse_visitor_frame('{"type":"text","id":"m1","content":"hi"}')
    assert text == frames.VisitorText(id="m1", content="hi")
    assert frames.parse_visitor_frame('{"type":"ping"}') == frames.Ping()
    assert frames.parse_visitor_frame('{"type":"typing","active":true}') == frames.VisitorTyping(
        active=True)


def test_agent_frames_decode_to_typed_events() -> None:
    accept = frames.parse_agent_frame('{"type":"accept","id":"a","conversation_id":3}')
    assert accept == frames.Accept(id="a", conversation_id=3)
    transfer = frames.parse_agent_frame(
        '{"type":"transfer","id":"t","conversation_id":3,"to_agent":"bob"}')
    assert transfer == frames.Transfer(id="t", conversation_id=3, to_agent="bob")
    history = frames.parse_agent_frame('{"type":"history","id":"h","conversation_id":3}')
    assert history == frames.History(id="h", conversation_id=3, before_seq=None, limit=50)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert frames.parse_visitor_frame('{"type":"ping","future":1}') == frames.Ping()


@pytest.mark.parametrize(("raw", "error", "fragment"), [
    (b'{"type":"ping"}', BadRequest, "binary"),
    ("{not json", BadRequest, "invalid JSON"),
    ("[1,2]", BadRequest, "JSON object"),
    ('"text"', BadRequest, "JSON object"),
    ('{"id":"x"}', BadRequest, "missing field 'type'"),
    ('{"type":5}', BadRequest, "must be a string"),
    ('{"type":"dance"}', BadRequest, "unknown frame type 'dance'"),
    ('{"type":"text","id":"m1"}', BadRequest, "content"),
    ('{"type":"text","id":"","content":"x"}', BadRequest, "invalid 'text' frame"),
    ('{"type":"text","id":"' + "x" * 65 + '","content":"x"}', BadRequest, "invalid"),
    ('{"type":"accept","id":"a","conversation_id":1}', Forbidden, "not allowed on this socket"),
    ('{"type":"read","seq":-1}', BadRequest, "invalid 'read' frame"),
])
def test_bad_visitor_frames(raw: str | bytes, error: type[ProtocolError], fragment: str) -> None:
    with pytest.raises(error) as caught:
        frames.parse_visitor_frame(raw)
    assert fragment in caught.value.message


def test_errors_echo_the_client_id_when_the_frame_had_one() -> None:
    with pytest.raises(BadRequest) as caught:
        frames.parse_visitor_frame('{"type":"text","id":"m7"}')
    assert caught.value.client_id == "m7"
    with pytest.raises(Forbidden) as forbidden:
        frames.parse_visitor_frame('{"type":"close","id":"c1","conversation_id":1}')
    assert forbidden.value.client_id == "c1"


def test_agent_socket_rejects_visitor_only_hello() -> None:
    with pytest.raises(Forbidden):
        frames.parse_agent_frame('{"type":"hello"}')


def test_check_content_limits() -> None:
    assert frames.check_content("hello", 10) == "hello"
    with pytest.raises(TooLarge):
        frames.check_content("x" * 11, 10)
    with pytest.raises(BadRequest):
        frames.check_content("  \n ", 10)


def test_server_frames_encode_without_absent_optionals() -> None:
    out = frames.encode(frames.AckOut(id="m1", seq=3, ts="2026-01-01T00:00:00.000Z"))
    assert json.loads(out) == {"type": "ack", "id": "m1", "seq": 3, "ts": "2026-01-01T00:00:00.000Z"}
    error = json.loads(frames.error_frame(TooLarge("big"), None))
    assert error == {"type": "error", "error": "too_large", "message": "big"}


INT_EDGES = [0, 1, -1, frames.MAX_INT, frames.MAX_INT + 1, 2**64, -(2**63), -(2**63) - 1,
             10**30]
integers = st.integers() | st.sampled_from(INT_EDGES)
json_values = st.recursive(
    st.none() | st.booleans() | integers | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(frames.VISITOR_TYPES | frames.AGENT_TYPES))},
    optional={"id": st.text(max_size=70) | st.integers(), "content": json_values,
              "conversation_id": json_values, "seq": json_values, "active": json_values,
              "to_agent": json_values, "last_seq": json_values, "limit": json_values,
              "before_seq": json_values, "extra": json_values},
)


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    """JSON (or almost JSON) nested up to 5,000 levels, alone or inside a frame."""
    depth = draw(st.integers(1, 5_000))
    opener = draw(st.sampled_from(["[", '{"a":', '{"type":"ping","x":']))
    inner = draw(st.sampled_from(["1", "[]", "{}", ""]))
    closer = "]" if opener == "[" else "}"
    body = opener * depth + inner + closer * draw(st.integers(0, depth))
    return draw(st.sampled_from([body, '{"type":"ping","id":"p","x":' + body + "}"]))


PARSERS = (frames.parse_visitor_frame, frames.parse_agent_frame)


def _event_or_client_error(raw: str | bytes) -> None:
    """The property: a typed event whose integers a database can hold, or a
    bad_request/forbidden ``ProtocolError``; nothing else ever escapes."""
    for parse in PARSERS:
        try:
            event = parse(raw)
        except ProtocolError as exc:
            assert exc.code in {"bad_request", "forbidden"}, exc
            assert exc.message
            continue
        assert isinstance(event, msgspec.Struct)
        for name in event.__struct_fields__:
            value = getattr(event, name)
            if isinstance(value, int) and not isinstance(value, bool):
                assert 0 <= value <= frames.MAX_INT, (name, value)
    client_id = frames.peek_client_id(raw)
    assert client_id is None or 0 < len(client_id) <= 64


@given(st.binary() | st.text())
def test_any_input_gives_an_event_or_a_protocol_error(raw: str | bytes) -> None:
    _event_or_client_error(raw)


@given(st.binary())
def test_any_bytes_as_text_give_an_event_or_a_protocol_error(raw: bytes) -> None:
    # surrogateescape: undecodable bytes become lone surrogates, which msgspec cannot read
    _event_or_client_error(raw.decode("utf-8", "surrogateescape"))


@given(frame_like)
def test_any_frame_shaped_object_gives_an_event_or_a_protocol_error(obj: dict[str, object]) -> None:
    raw = json.dumps(obj)
    _event_or_client_error(raw)
    for parse in PARSERS:
        with contextlib.suppress(ProtocolError):
            assert type(parse(raw)).__struct_config__.tag == obj["type"]


@given(json_values)
def test_any_json_value_gives_an_event_or_a_protocol_error(value: object) -> None:
    _event_or_client_error(json.dumps(value))


@given(deeply_nested())
def test_any_nesting_depth_gives_an_event_or_a_protocol_error(raw: str) -> None:
    _event_or_client_error(raw)


# ---- ids and seqs a database can hold ------------------------------------------------

ID_FRAMES = [
    ('{"type":"accept","id":"a","conversation_id":%s}', "conversation_id"),
    ('{"type":"text","id":"a","conversation_id":%s,"content":"x"}', "conversation_id"),
    ('{"type":"close","id":"a","conversation_id":%s}', "conversation_id"),
    ('{"type":"transfer","id":"a","conversation_id":%s,"to_agent":2}', "conversation_id"),
    ('{"type":"transfer","id":"a","conversation_id":2,"to_agent":%s}', "to_agent"),
    ('{"type":"history","id":"a","conversation_id":%s}', "conversation_id"),
    ('{"type":"history","id":"a","conversation_id":2,"before_seq":%s}', "before_seq"),
    ('{"type":"typing","conversation_id":%s,"active":true}', "conversation_id"),
    ('{"type":"read","id":"a","conversation_id":%s,"seq":1}', "conversation_id"),
    ('{"type":"read","id":"a","conversation_id":2,"seq":%s}', "seq"),
]


@pytest.mark.parametrize("value", [2**63, 2**64, 10**30, -1, -(2**63), -(2**64)])
@pytest.mark.parametrize(("template", "field"), ID_FRAMES)
def test_agent_ids_out_of_range_are_a_bad_request_naming_the_field(
        template: str, field: str, value: int) -> None:
    with pytest.raises(BadRequest) as caught:
        frames.parse_agent_frame(template % value)
    assert f"field '{field}'" in caught.value.message
    expected_id = None if '"id"' not in template else "a"
    assert caught.value.client_id == expected_id


@pytest.mark.parametrize(("template", "field"), ID_FRAMES)
def test_the_largest_id_a_database_holds_is_accepted(template: str, field: str) -> None:
    event = frames.parse_agent_frame(template % frames.MAX_INT)
    assert getattr(event, field) == frames.MAX_INT


@pytest.mark.parametrize(("raw", "field"), [
    ('{"type":"hello","last_seq":%s}', "last_seq"),
    ('{"type":"read","id":"r","seq":%s}', "seq"),
])
def test_visitor_seqs_out_of_range_are_a_bad_request(raw: str, field: str) -> None:
    for value in (2**63, -1):
        with pytest.raises(BadRequest, match=f"field '{field}'"):
            frames.parse_visitor_frame(raw % value)
    assert getattr(frames.parse_visitor_frame(raw % frames.MAX_INT), field) == frames.MAX_INT


# ---- JSON nested too deeply ----------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "[" * 1000 + "]" * 1000,
    '{"a":' * 1000 + "1" + "}" * 1000,
    '{"type":"ping","id":"p","x":' + "[" * 1000 + "]" * 1000 + "}",
    '{"type":"text","id":"t","content":"x","x":' + '{"a":' * 30_000 + "1" + "}" * 30_000 + "}",
], ids=["arrays", "objects", "arrays in a ping", "objects in a text"])
def test_json_nested_too_deeply_is_a_bad_request(raw: str) -> None:
    for parse in PARSERS:
        with pytest.raises(BadRequest, match=frames.TOO_DEEP):
            parse(raw)
    assert frames.peek_client_id(raw) is None


def test_decode_json_turns_every_decoding_failure_into_bad_request() -> None:
    decoder = msgspec.json.Decoder(dict[str, Any])
    assert frames.decode_json(decoder, '{"a":[1]}') == {"a": [1]}
    lone_surrogate = '{"a":"' + chr(0xDC80) + '"}'
    for raw, message in [("{oops", "invalid JSON"), ('{"a":' + "[" * 2000, frames.TOO_DEEP),
                         (lone_surrogate, "UTF-8")]:
        with pytest.raises(BadRequest, match=message):
            frames.decode_json(decoder, raw)
    with pytest.raises(msgspec.ValidationError):  # the shape is the caller's to explain
        frames.decode_json(decoder, "[1]")


def test_explain_puts_the_field_first() -> None:
    decoder = msgspec.json.Decoder(frames.Accept)
    with pytest.raises(msgspec.ValidationError) as caught:
        decoder.decode('{"type":"accept","id":"a","conversation_id":0}')
    assert frames.explain(caught.value) == "field 'conversation_id': expected `int` >= 1"
    with pytest.raises(msgspec.ValidationError) as missing:
        decoder.decode('{"type":"accept"}')
    assert frames.explain(missing.value) == str(missing.value)


@pytest.mark.parametrize("content", ["\u200b\u00a0", " \u2060 ", "\ufeff"])
def test_content_that_shows_nothing_is_refused(content: str) -> None:
    with pytest.raises(BadRequest, match="empty"):
        frames.check_content(content, 100)
