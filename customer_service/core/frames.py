"""Wire frames of protocol v1: typed client events in, encoded server frames out.

Parsing is one msgspec call per frame against a tagged union on ``"type"``; only
when it fails does a slower second look classify the failure, so that every
input gives either a typed event or a ``ProtocolError`` with the right code and
the client's ``id`` (when it had one). No I/O here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from customer_service.core.models import StoredMessage, format_ts
from customer_service.core.notes import Note
from customer_service.core.text import visible
from customer_service.core.visitor_context import MAX_TIMEZONE, MAX_TITLE, MAX_URL
from customer_service.errors import BadRequest, Busy, Forbidden, ProtocolError, TooLarge

T = TypeVar("T")

MAX_INT: Final = 2**63 - 1
"""The largest id or ``seq`` a client may send: the databases store them as signed 64-bit
integers (SQLite's INTEGER, MySQL's BIGINT), so a larger one could never name a row and
would not even fit a query parameter."""

ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
EntityId = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
ShortText = Annotated[str, msgspec.Meta(max_length=512)]


class _In(msgspec.Struct, tag_field="type", forbid_unknown_fields=False):
    """Base of client frames. Unknown fields are ignored, for forward compatibility."""


# ---- visitor → server -------------------------------------------------------

class Hello(_In, tag="hello"):
    visitor_token: str | None = None
    last_seq: Seq | None = None
    name: ShortText | None = None
    email: ShortText | None = None
    page: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    conversation_id: EntityId | None = None
    """The conversation ``last_seq`` counts in; when the server serves another one (the
    visitor was identified as someone else), ``last_seq`` is ignored and all of it replays."""
    user_id: str | None = None
    """The site's id of the signed-in user (identified visitors; checked in
    ``core/identity.py``, not here, so that a bad one gets ``identity_invalid``)."""
    user_hash: str | None = None
    lang: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    """The language the widget shows (``en``, ``zh-CN``): auto-replies are stored in it.
    Unknown or absent: ``[web] default_language``."""
    referrer: Annotated[str, msgspec.Meta(max_length=MAX_URL)] | None = None
    """``document.referrer`` (stored as scheme, host and path: ``core/visitor_context.py``)."""
    timezone: Annotated[str, msgspec.Meta(max_length=MAX_TIMEZONE)] | None = None
    """The browser's IANA time zone (``Europe/Paris``); one that is not a zone is dropped."""
    title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE)] | None = None
    """The page's ``document.title``."""


class VisitorPage(_In, tag="page"):
    """The visitor's page changed (a single-page app navigated): visitor context."""

    url: Annotated[str, msgspec.Meta(max_length=MAX_URL)]
    title: Annotated[str, msgspec.Meta(max_length=MAX_TITLE)] = ""
    id: ClientId | None = None


class VisitorText(_In, tag="text"):
    id: ClientId
    content: str


class VisitorTyping(_In, tag="typing"):
    active: bool


class VisitorRead(_In, tag="read"):
    seq: Seq
    id: ClientId | None = None


class Ping(_In, tag="ping"):
    id: ClientId | None = None


class LeaveMessage(_In, tag="leave_message"):
    """Leave-a-message: the address agents write back to when nobody could answer."""

    id: ClientId
    email: Annotated[str, msgspec.Meta(max_length=1024)]


# ---- agent → server ---------------------------------------------------------

class Accept(_In, tag="accept"):
    id: ClientId
    conversation_id: EntityId


class AgentText(_In, tag="text"):
    id: ClientId
    conversation_id: EntityId
    content: str


class Transfer(_In, tag="transfer"):
    id: ClientId
    conversation_id: EntityId
    to_agent: EntityId | Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Close(_In, tag="close"):
    id: ClientId
    conversation_id: EntityId


class History(_In, tag="history"):
    id: ClientId
    conversation_id: EntityId
    before_seq: Seq | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


class AgentTyping(_In, tag="typing"):
    conversation_id: EntityId
    active: bool


class AgentRead(_In, tag="read"):
    conversation_id: EntityId
    seq: Seq
    id: ClientId | None = None


class AgentNote(_In, tag="note"):
    """A private note (``core/notes.py``): agents only, never the visitor."""

    id: ClientId
    conversation_id: EntityId
    content: str


class SetStatus(_In, tag="status"):
    """The agent's own status (``core/assignment.py``): away and offline agents get no new
    conversations from auto-assignment."""

    id: ClientId
    status: Literal["online", "away", "offline"]


VisitorFrame = Hello | VisitorText | VisitorTyping | VisitorRead | Ping | LeaveMessage | VisitorPage
AgentFrame = (Accept | AgentText | Transfer | Close | History | AgentTyping | AgentRead | Ping
              | AgentNote | SetStatus)

VISITOR_TYPES: Final = frozenset({"hello", "text", "typing", "read", "ping", "leave_message",
                                  "page"})
AGENT_TYPES: Final = frozenset(
    {"accept", "text", "transfer", "close", "history", "typing", "read", "ping", "note",
     "status"})

_visitor_decoder = msgspec.json.Decoder(VisitorFrame)
_agent_decoder = msgspec.json.Decoder(AgentFrame)
_any_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()

TOO_DEEP: Final = "JSON nested too deeply"


def decode_json(decoder: msgspec.json.Decoder[T], raw: str | bytes) -> T:
    """Decode client JSON: the one place where msgspec's failures on client input become
    ``BadRequest`` (frames here, request bodies in ``server/app.py``).

    ``msgspec.ValidationError`` (the JSON is fine, the shape is not) is passed on for the
    caller to explain; every other failure is a ``BadRequest``. msgspec has no depth
    limit of its own: it raises ``RecursionError`` once nesting reaches the interpreter's
    recursion limit (about 1,000 levels, less the caller's stack), and a ``str`` holding a
    lone surrogate cannot even be read as UTF-8.
    """
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError:
        raise BadRequest("invalid JSON") from None
    except RecursionError:
        raise BadRequest(TOO_DEEP) from None
    except UnicodeEncodeError:
        raise BadRequest("invalid JSON: text that is not UTF-8") from None


_AT_FIELD = re.compile(r"(?P<problem>.*) - at `\$\.(?P<field>[A-Za-z_]+)`")


def explain(error: msgspec.ValidationError) -> str:
    """msgspec's message with the field first: "field 'conversation_id': expected …"."""
    text = str(error)
    found = _AT_FIELD.fullmatch(text)
    if found is None:
        return text
    problem = found["problem"]
    return f"field '{found['field']}': {problem[:1].lower()}{problem[1:]}"


def _client_id(obj: Any) -> str | None:
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and 0 < len(value) <= 64:
            return value
    return None


def _classify(raw: str | bytes, own: frozenset[str], other: frozenset[str],
              error: msgspec.ValidationError) -> ProtocolError:
    """Turn a failed decode into the error a client author would expect."""
    try:
        obj = decode_json(_any_decoder, raw)
    except msgspec.ValidationError:
        return BadRequest("invalid JSON: a number out of range")
    except BadRequest as exc:
        return exc
    if not isinstance(obj, dict):
        return BadRequest("a frame must be a JSON object")
    kind = obj.get("type")
    failure: ProtocolError
    if "type" not in obj:
        failure = BadRequest("missing field 'type'")
    elif not isinstance(kind, str):
        failure = BadRequest("field 'type' must be a string")
    elif kind not in own and kind in other:
        failure = Forbidden(f"frame type '{kind}' is not allowed on this socket")
    elif kind not in own:
        failure = BadRequest(f"unknown frame type '{kind}'")
    else:
        failure = BadRequest(f"invalid '{kind}' frame: {explain(error)}")
    failure.client_id = _client_id(obj)
    return failure


def peek_client_id(raw: str | bytes) -> str | None:
    """The ``id`` of a frame that will not be parsed (rate-limited), when it has one."""
    try:
        return _client_id(decode_json(_any_decoder, raw))
    except (msgspec.ValidationError, BadRequest):
        return None


def _parse(decoder: msgspec.json.Decoder[T], raw: str | bytes, own: frozenset[str],
           other: frozenset[str]) -> T:
    if isinstance(raw, bytes):
        raise BadRequest("binary frames are not supported; send JSON in a text frame")
    try:
        return decode_json(decoder, raw)
    except msgspec.ValidationError as exc:
        raise _classify(raw, own, other, exc) from None


def parse_visitor_frame(raw: str | bytes) -> VisitorFrame:
    """Decode one visitor frame or raise a ``ProtocolError`` carrying ``client_id``."""
    return _parse(_visitor_decoder, raw, VISITOR_TYPES, AGENT_TYPES - VISITOR_TYPES)


def parse_agent_frame(raw: str | bytes) -> AgentFrame:
    """Decode one agent frame or raise a ``ProtocolError`` carrying ``client_id``."""
    return _parse(_agent_decoder, raw, AGENT_TYPES, VISITOR_TYPES - AGENT_TYPES)


def check_content(content: str, max_chars: int) -> str:
    """Validate chat content: not blank, not longer than ``max_chars``."""
    if len(content) > max_chars:
        raise TooLarge(f"content is {len(content)} characters; the limit is {max_chars}")
    if not visible(content):
        raise BadRequest("content is empty (or shows nothing)")
    return content


# ---- server → client --------------------------------------------------------

class _Out(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class Sender(msgspec.Struct, omit_defaults=True):
    role: str
    id: int | None = None
    name: str = ""


class MessageOut(_Out, tag="message"):
    conversation_id: int
    seq: int
    sender: Sender
    content: str
    ts: str
    stream_id: str | None = None
    campaign_id: int | None = None
    """Set on a message a campaign sent (omitted otherwise)."""


class AckOut(_Out, tag="ack"):
    id: str
    seq: int | None = None
    ts: str | None = None
    note_id: int | None = None
    """The stored note's id (the ack of a ``note`` frame)."""


class ErrorOut(_Out, tag="error"):
    error: str
    message: str
    id: str | None = None
    retry_after: float | None = None
    """Seconds to wait before resending (``busy``)."""


class VisitorWelcomeOut(_Out, tag="welcome"):
    visitor_id: int
    visitor_token: str
    conversation_id: int
    last_seq: int
    status: str
    visitor_read_seq: int
    """How far the visitor (on any device) has read: the widget's unread count."""
    availability: str
    """The team now: ``online``, ``away`` or ``closed`` (later changes: ``availability``)."""
    user_id: str | None = None
    """The verified user id, for an identified visitor (omitted otherwise)."""
    back_at: str | None = None
    """When ``closed``: the next opening (ISO 8601 with its offset), if known."""


class AgentInfo(msgspec.Struct):
    id: int
    username: str
    name: str
    status: str = "online"
    """The status the agent set (online, away, offline), kept across sign-ins."""


class VisitorInfo(msgspec.Struct):
    id: int
    name: str = ""
    email: str = ""
    page: str = ""
    online: bool = False


class ContactInfo(msgspec.Struct):
    """The profile of the contact a conversation belongs to (identified visitors, campaign
    recipients), as agents see it."""

    id: int
    external_id: str
    name: str
    email: str
    phone: str
    tags: list[str]
    attributes: dict[str, Any]
    unsubscribed: bool


class ConversationInfo(msgspec.Struct, omit_defaults=False):
    conversation_id: int
    status: str
    assigned_to: int | None
    visitor: VisitorInfo
    last_seq: int
    unread: int
    updated_at: str
    needs_agent: bool = False
    ai_streaming: bool = False
    last_message: MessageOut | None = None
    contact: ContactInfo | msgspec.UnsetType | None = msgspec.UNSET
    """The conversation's contact (null: none). Left out where it was not looked up (the
    agent's welcome and the REST listing, which would need a query per conversation)."""
    labels: list[str] = msgspec.field(default_factory=list)
    """The conversation's labels (``billing``, ``vip``), sorted; always present."""
    left_email: str = ""
    """The address the visitor left to be written back to (leave-a-message); "" if none."""


class AgentWelcomeOut(_Out, tag="welcome"):
    agent: AgentInfo
    conversations: list[ConversationInfo]


class AgentStatusOut(_Out, tag="agent_status"):
    """An agent's status changed (or was first heard of here): for every dashboard."""

    agent_id: int
    status: str


class ConversationOut(_Out, tag="conversation"):
    conversation: ConversationInfo


class NoteOut(_Out, tag="note"):
    """A private note, for agents only: never on a visitor's socket (``core/notes.py``)."""

    conversation_id: int
    note_id: int
    after_seq: int
    sender: Sender
    content: str
    ts: str


class HistoryOut(_Out, tag="history"):
    id: str
    conversation_id: int
    messages: list[MessageOut]
    notes: list[NoteOut] | msgspec.UnsetType = msgspec.UNSET
    """The conversation's private notes (the newest ``NOTES_LIMIT``), on the newest page
    only (no ``before_seq``): a note's ``after_seq`` places it among the messages."""


class TypingOut(_Out, tag="typing"):
    active: bool
    conversation_id: int | None = None
    sender: Sender | None = None


class ReadOut(_Out, tag="read"):
    seq: int
    conversation_id: int | None = None
    by: str | None = None


class AvailabilityOut(_Out, tag="availability"):
    """The team's availability, to visitors, when it changes (``welcome`` carries it first)."""

    status: str
    """``online``, ``away`` or ``closed``."""
    back_at: str | None = None
    """When ``closed``: the next opening (ISO 8601 with its offset), if known."""


class PageOut(_Out, tag="page"):
    """A visitor's new page, to the agents who see its conversation (visitor context)."""

    conversation_id: int
    url: str
    title: str
    at: str


class PongOut(_Out, tag="pong"):
    id: str | None = None


class AiDeltaOut(_Out, tag="ai_delta"):
    conversation_id: int
    stream_id: str
    delta: str


_encoder = msgspec.json.Encoder()


def encode(frame: _Out) -> str:
    """Encode a server frame to the JSON text sent in one WebSocket text frame."""
    return _encoder.encode(frame).decode()


def error_frame(error: ProtocolError | Exception, client_id: str | None = None) -> str:
    code = getattr(error, "code", "internal")
    message = getattr(error, "message", None) or "internal error"
    retry_after = error.retry_after if isinstance(error, Busy) else None
    return encode(ErrorOut(error=code, message=message, id=client_id, retry_after=retry_after))


def note_out(note: Note) -> NoteOut:
    """The ``note`` frame of a stored note: live, in history and over REST alike."""
    return NoteOut(conversation_id=note.conversation_id, note_id=note.id,
                   after_seq=note.after_seq,
                   sender=Sender(role="agent", id=note.agent_id, name=note.agent_name),
                   content=note.content, ts=format_ts(note.created_at))


def message_out(message: StoredMessage) -> MessageOut:
    """The ``message`` frame of a stored message: one shape wherever it is sent from (a
    server's fan-out, replay, history, ``campaigns run`` publishing on the bus)."""
    return MessageOut(
        conversation_id=message.conversation_id,
        seq=message.seq,
        sender=Sender(role=str(message.sender_role), id=message.sender_id,
                      name=message.sender_name),
        content=message.content,
        ts=format_ts(message.created_at),
        stream_id=message.stream_id,
        campaign_id=message.campaign_id,
    )
