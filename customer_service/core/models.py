"""Plain records shared by the core, the storage backends and the server.

They hold no behaviour beyond small derived values; the storage backends build
them from rows and the core reasons about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache


class Role(StrEnum):
    VISITOR = "visitor"
    AGENT = "agent"
    AI = "ai"
    SYSTEM = "system"


class ConversationStatus(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Agent:
    id: int
    username: str
    name: str
    password_hash: str
    disabled: bool
    created_at: datetime
    bot: bool = False
    """A bot agent: an API token's sender (``docs/api.md``); it never logs in and is never
    auto-assigned."""


@dataclass(frozen=True, slots=True)
class AgentToken:
    """One of an agent's tokens as listed to an operator: never the secret. ``id`` is
    the start of the stored hash, enough to name it (``agents revoke-token``)."""

    id: str
    label: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


TOKEN_ID_LENGTH = 12
"""Hex digits of a token's stored hash that name it in lists."""

TOKEN_TOUCH_SECONDS = 60
"""A token's ``last_used_at`` is written at most once per this many seconds."""


@dataclass(frozen=True, slots=True)
class Visitor:
    id: int
    name: str
    email: str
    page: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    visitor_id: int
    status: ConversationStatus
    assigned_to: int | None
    last_seq: int
    agent_read_seq: int
    visitor_read_seq: int
    created_at: datetime
    updated_at: datetime
    needs_agent: bool = False
    """Flagged for agents: the AI could not answer (cleared when an agent accepts)."""
    left_email: str = ""
    """The address the visitor left to be written back to (leave-a-message); "" if none."""

    @property
    def unread(self) -> int:
        """Messages an agent has not marked read yet."""
        return max(0, self.last_seq - self.agent_read_seq)

    def with_last_seq(self, seq: int) -> Conversation:
        """A copy with a newer ``last_seq`` (``dataclasses.replace`` is slow on the hot path)."""
        return Conversation(self.id, self.visitor_id, self.status, self.assigned_to, seq,
                            self.agent_read_seq, self.visitor_read_seq, self.created_at,
                            self.updated_at, self.needs_agent, self.left_email)


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A conversation with what a listing shows of its visitor and last message."""

    conversation: Conversation
    visitor: Visitor
    last_message: StoredMessage | None
    labels: tuple[str, ...] = ()
    """The conversation's labels, sorted."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store. ``client_id`` makes a resend idempotent per sender."""

    conversation_id: int
    sender_role: Role
    sender_id: int | None
    sender_name: str
    content: str
    client_id: str | None = None
    stream_id: str | None = None
    campaign_id: int | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    conversation_id: int
    seq: int
    sender_role: Role
    sender_id: int | None
    sender_name: str
    content: str
    created_at: datetime
    client_id: str | None = None
    stream_id: str | None = None
    campaign_id: int | None = None
    """The campaign that sent this message (agents see where it came from)."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What storing one ``NewMessage`` gave: the stored row, and whether it existed already."""

    message: StoredMessage
    duplicate: bool
    assigned_to: int | None = None
    """Who the conversation was assigned to when the message was committed (read under the
    row lock that orders the conversation's writes): what decides who receives it, on
    every instance, whatever their caches say."""


# --- contacts and campaigns ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Contact:
    """A known customer, named by the site's own user id (``external_id``)."""

    id: int
    external_id: str
    name: str
    email: str
    phone: str
    tags: tuple[str, ...]
    """Sorted, unique."""
    attributes: dict[str, object]
    """Free-form JSON object (values: JSON scalars, lists, objects)."""
    unsubscribed: bool
    last_campaign_at: datetime | None
    """When a campaign message was last delivered to it (the frequency cap)."""
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ContactInput:
    """One contact to create or update (by ``external_id``). ``None``: keep what is stored
    (or the empty default for a new contact); a given value replaces the stored one
    (``tags`` and ``attributes`` replace the whole set / object)."""

    external_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    tags: tuple[str, ...] | None = None
    attributes: dict[str, object] | None = None
    unsubscribed: bool | None = None


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    created: int
    updated: int


class CampaignStatus(StrEnum):
    READY = "ready"
    """Created, waiting for ``campaigns run`` (no ``--at``)."""
    SCHEDULED = "scheduled"
    """Waiting for its ``scheduled_at``; the server runs it then."""
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class CampaignKind(StrEnum):
    TEMPLATE = "template"
    PROMPT = "prompt"


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What ``campaigns create`` asks for."""

    name: str
    kind: CampaignKind
    body: str
    """The message template (``template``) or the AI prompt template (``prompt``)."""
    sender_role: Role
    """``Role.AGENT`` (an agent's name) or ``Role.AI`` (the assistant's)."""
    sender_id: int | None
    sender_name: str
    audience: dict[str, object]
    """How it was chosen, for ``show``: ``{"tags": [...], "attrs": {...}, "file": ...}``."""
    concurrency: int
    rate: float
    """AI requests per second (at most)."""
    scheduled_at: datetime | None
    fallback: str | None
    max_tokens_total: int | None


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    spec: CampaignSpec
    status: CampaignStatus
    tokens_used: int
    stop_reason: str
    """Why it stopped before its end ('' when it did not): the token budget, a cancel."""
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RecipientState(StrEnum):
    PENDING = "pending"
    GENERATING = "generating"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Recipient:
    campaign_id: int
    contact_id: int
    external_id: str
    state: RecipientState
    attempts: int
    error: str
    """Why it failed or was skipped ('' otherwise)."""
    text: str | None
    """The message generated for it, stored before delivery (so a resumed run does not
    pay the AI for it again); None until generated."""
    tokens: int
    conversation_id: int | None
    message_seq: int | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CampaignDelivery:
    """What ``deliver_campaign_message`` did: ``result`` is the stored message (fan it out
    like any other), or ``skipped`` says why nothing was stored."""

    result: AppendResult | None
    skipped: str = ""


@dataclass(frozen=True, slots=True)
class Stats:
    agents: int
    agents_disabled: int
    visitors: int
    conversations_by_status: dict[str, int]
    messages: int


def utc_now() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=256)
def format_ts(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as the protocol's ``ts``.

    Cached: a group commit stamps all its messages with one time, and each is
    formatted for its ack and for every message frame.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
