"""The frame parser: every input gives a typed event or a ProtocolError, never anything else."""

from __future__ import annotations

import contextlib
import json

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


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(frames.VISITOR_TYPES | frames.AGENT_TYPES))},
    optional={"id": st.text(max_size=70) | st.integers(), "content": json_values,
              "conversation_id": json_values, "seq": json_values, "active": json_values,
              "to_agent": json_values, "last_seq": json_values, "limit": json_values},
)


@given(st.binary() | st.text())
def test_any_input_gives_an_event_or_a_protocol_error(raw: str | bytes) -> None:
    for parse in (frames.parse_visitor_frame, frames.parse_agent_frame):
        try:
            event = parse(raw)
        except ProtocolError:
            continue
        assert isinstance(event, msgspec.Struct)


@given(frame_like)
def test_any_frame_shaped_object_gives_an_event_or_a_protocol_error(obj: dict[str, object]) -> None:
    raw = json.dumps(obj)
    for parse in (frames.parse_visitor_frame, frames.parse_agent_frame):
        try:
            event = parse(raw)
        except ProtocolError as exc:
            assert exc.code in {"bad_request", "forbidden"}
            continue
        assert type(event).__struct_config__.tag == obj["type"]


@given(json_values)
def test_any_json_value_gives_an_event_or_a_protocol_error(value: object) -> None:
    raw = json.dumps(value)
    for parse in (frames.parse_visitor_frame, frames.parse_agent_frame):
        with contextlib.suppress(ProtocolError):
            parse(raw)
