"""Private notes in the core: the frames (agents may send one, visitors may not) and the
place of a note in the timeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from customer_service.core import frames
from customer_service.core.notes import Note, timeline_key
from customer_service.errors import BadRequest, Forbidden

WHEN = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def note(note_id: int, after_seq: int) -> Note:
    return Note(id=note_id, conversation_id=7, agent_id=1, agent_name="Ann", content="hm",
                after_seq=after_seq, created_at=WHEN)


def test_an_agent_note_frame_parses() -> None:
    parsed = frames.parse_agent_frame(
        '{"type":"note","id":"n1","conversation_id":7,"content":"call back"}')
    assert parsed == frames.AgentNote(id="n1", conversation_id=7, content="call back")


@pytest.mark.parametrize("raw, words", [
    ('{"type":"note","id":"n1","content":"x"}', "conversation_id"),
    ('{"type":"note","conversation_id":7,"content":"x"}', "field `id`"),
    ('{"type":"note","id":"n1","conversation_id":0,"content":"x"}', "conversation_id"),
])
def test_a_bad_note_frame_names_its_field(raw: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        frames.parse_agent_frame(raw)


def test_a_visitor_may_not_send_a_note() -> None:
    with pytest.raises(Forbidden, match="frame type 'note' is not allowed on this socket") as err:
        frames.parse_visitor_frame('{"type":"note","id":"x","conversation_id":7,"content":"x"}')
    assert err.value.client_id == "x"


def test_the_note_frame_and_the_ack() -> None:
    out = json.loads(frames.encode(frames.note_out(note(5, 3))))
    assert out == {"type": "note", "conversation_id": 7, "note_id": 5, "after_seq": 3,
                   "sender": {"role": "agent", "id": 1, "name": "Ann"}, "content": "hm",
                   "ts": "2030-01-02T03:04:05.678Z"}
    assert json.loads(frames.encode(frames.AckOut(id="n", note_id=5, ts="t"))) == {
        "type": "ack", "id": "n", "ts": "t", "note_id": 5}
    page = frames.HistoryOut(id="h", conversation_id=7, messages=[])
    assert "notes" not in json.loads(frames.encode(page))


def test_notes_sort_after_their_message_in_the_order_written() -> None:
    messages = [(seq, 0, 0) for seq in (1, 2, 3)]
    keys = sorted([*messages, timeline_key(note(9, 2)), timeline_key(note(4, 2)),
                   timeline_key(note(6, 0))])
    assert keys == [(0, 1, 6), (1, 0, 0), (2, 0, 0), (2, 1, 4), (2, 1, 9), (3, 0, 0)]
