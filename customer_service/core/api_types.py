"""The REST API's types: every request body, query and response of ``server/rest_api.py``'s
route table, as msgspec Structs. The OpenAPI document (``core/openapi.py``) is generated
from them, and the handlers' answers are these shapes (field order is the JSON's order, so
a Struct encodes to the same bytes as the dict it stands for).

Query Structs describe the query string (each field one parameter; a ``list`` one is
repeatable); path Structs the ``{name}`` segments of a path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from customer_service.core.frames import MAX_INT, ConversationInfo, MessageOut, NoteOut

Id = Annotated[int, Meta(ge=1, le=MAX_INT, description="an id: 1 to 2^63-1")]
Timestamp = Annotated[str, Meta(description="RFC 3339, UTC, milliseconds")]


class ErrorOut(msgspec.Struct):
    """Every error: a code (``bad_request``, ``unauthorized``, ``forbidden``, ``not_found``,
    ``conflict``, …) and a sentence for people."""

    error: str
    message: str


# --- paths -----------------------------------------------------------------------------
class ConversationPath(msgspec.Struct):
    conversation_id: Id


class ContactPath(msgspec.Struct):
    contact_id: Id


class BlockPath(msgspec.Struct):
    block_id: Id


class CannedPath(msgspec.Struct):
    shortcut: Annotated[str, Meta(description="a canned reply's shortcut")]


class LabelPath(msgspec.Struct):
    conversation_id: Id
    label: Annotated[str, Meta(description="a label, percent-encoded (%2F is a character, "
                                           "and refused)")]


# --- agents, login, health, widget ----------------------------------------------------
class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class AgentOut(msgspec.Struct):
    id: int
    username: str
    name: str
    disabled: bool


class LoginOut(msgspec.Struct):
    token: Annotated[str, Meta(description="the agent's login token: Authorization: Bearer")]
    agent: AgentOut


class OkOut(msgspec.Struct):
    ok: bool


class StatusBody(msgspec.Struct, forbid_unknown_fields=False):
    status: Annotated[str, Meta(description="online, away or offline")]


class StatusOut(msgspec.Struct):
    id: int
    status: Literal["online", "away", "offline"]


class AgentListItem(msgspec.Struct):
    id: int
    username: str
    name: str
    disabled: bool
    online: bool
    status: Literal["online", "away", "offline"]


class AgentsOut(msgspec.Struct):
    agents: list[AgentListItem]


class HealthOut(msgspec.Struct):
    status: Literal["ok", "degraded", "error"]
    version: str
    db: Literal["ok", "degraded", "error", "timeout"]
    ai: str
    bus: str
    instance: str
    connections: int


class WidgetOut(msgspec.Struct):
    title: str
    logo_url: str
    accent_color: str
    show_embed_help: bool
    default_language: str
    languages: list[str]
    prechat_fields: list[Literal["name", "email", "question"]]
    expected_reply: dict[str, str]
    welcome: dict[str, str]
    status: Literal["online", "away", "closed"]
    back_at: str | None
    timezone: str | None


# --- conversations and messages ---------------------------------------------------------
class ConversationsQuery(msgspec.Struct):
    status: Literal["open", "assigned", "closed"] | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100
    label: list[str] = msgspec.field(default_factory=list)
    """Conversations with every label given (repeatable)."""


class ConversationsOut(msgspec.Struct):
    conversations: list[ConversationInfo]


class ConversationOne(msgspec.Struct):
    conversation: ConversationInfo


class MessagesQuery(msgspec.Struct):
    before_seq: Annotated[int, Meta(ge=0, le=MAX_INT)] | None = None
    limit: Annotated[int, Meta(ge=1, le=500)] = 50


class MessagesOut(msgspec.Struct):
    conversation_id: int
    messages: list[MessageOut]


class SendBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, description="the message (at most [chat] "
                                                        "max_message_chars)")]
    client_id: Annotated[str, Meta(min_length=1, max_length=64, description=(
        "makes the request idempotent: sent again with the same client_id, the stored "
        "message is answered (200) and nothing is sent twice"))] | None = None


class NotesOut(msgspec.Struct):
    conversation_id: int
    notes: list[NoteOut]


class LabelsOut(msgspec.Struct):
    conversation_id: int
    labels: list[str]


class PageOut(msgspec.Struct):
    url: str
    title: str
    at: Timestamp


class EarlierOut(msgspec.Struct):
    id: int
    created_at: Timestamp
    status: str
    last_message_at: Timestamp | None


class ContextContact(msgspec.Struct):
    id: int
    external_id: str
    name: str
    email: str
    attributes: dict[str, Any]
    tags: list[str]


class NamedOut(msgspec.Struct):
    name: str
    version: str


class ContextOut(msgspec.Struct):
    conversation_id: int
    name: str
    email: str
    page: str
    title: str
    pages: list[PageOut]
    referrer: str
    user_agent: str
    timezone: str
    ip: str
    visit_started_at: Timestamp | None
    updated_at: Timestamp | None
    earlier: list[EarlierOut]
    earlier_total: int
    contact: ContextContact | None
    browser: NamedOut
    os: NamedOut
    device: str


# --- contacts, search --------------------------------------------------------------------
class ContactsQuery(msgspec.Struct):
    tag: list[str] = msgspec.field(default_factory=list)
    """Contacts with every tag given (repeatable)."""
    after: Annotated[int, Meta(ge=0, le=MAX_INT)] = 0
    limit: Annotated[int, Meta(ge=1, le=500)] = 100


class ContactOut(msgspec.Struct):
    id: int
    external_id: str
    name: str
    email: str
    phone: str
    tags: list[str]
    attributes: dict[str, Any]
    unsubscribed: bool
    last_campaign_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class ContactsOut(msgspec.Struct):
    contacts: list[ContactOut]
    next_after: int | None


class SearchQuery(msgspec.Struct):
    q: Annotated[str, Meta(min_length=1, max_length=200, description="the words to find")]
    limit: Annotated[int, Meta(ge=1, le=100)] = 20
    before: str | None = None
    """The ``next`` of the previous page."""


class SearchHitOut(msgspec.Struct):
    kind: Literal["message", "visitor"]
    conversation_id: int
    seq: int
    role: str
    sender_name: str
    visitor_name: str
    created_at: Timestamp
    snippet: str
    highlights: list[list[int]]
    cursor: str | None


class SearchOut(msgspec.Struct):
    query: str
    hits: list[SearchHitOut]
    next: str | None


# --- canned replies, blocks -----------------------------------------------------------------
class CannedBody(msgspec.Struct, forbid_unknown_fields=True):
    shortcut: str
    text: str


class CannedOut(msgspec.Struct):
    id: int
    shortcut: str
    text: str
    created_at: Timestamp


class CannedListOut(msgspec.Struct):
    canned: list[CannedOut]


class CannedDeleted(msgspec.Struct):
    deleted: str


class BlocksQuery(msgspec.Struct):
    all: Annotated[str, Meta(description="1, true, on or yes: expired blocks too")] = "0"
    conversation_id: Id | None = None


class BlockBody(msgspec.Struct, forbid_unknown_fields=True):
    visitor_id: int | None = None
    conversation_id: int | None = None
    ip: str | None = None
    block_address: bool = False
    duration: str | None = None
    reason: str = ""


class BlockOut(msgspec.Struct):
    id: int
    visitor_id: int | None
    network: str | None
    reason: str
    created_by: str
    created_at: Timestamp
    expires_at: Timestamp | None
    active: bool


class BlocksOut(msgspec.Struct):
    blocks: list[BlockOut]


class BlockOne(msgspec.Struct):
    block: BlockOut

