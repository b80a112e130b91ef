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

    @property
    def unread(self) -> int:
        """Messages an agent has not marked read yet."""
        return max(0, self.last_seq - self.agent_read_seq)

    def with_last_seq(self, seq: int) -> Conversation:
        """A copy with a newer ``last_seq`` (``dataclasses.replace`` is slow on the hot path)."""
        return Conversation(self.id, self.visitor_id, self.status, self.assigned_to, seq,
                            self.agent_read_seq, self.visitor_read_seq, self.created_at,
                            self.updated_at, self.needs_agent)


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A conversation with what a listing shows of its visitor and last message."""

    conversation: Conversation
    visitor: Visitor
    last_message: StoredMessage | None


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


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What storing one ``NewMessage`` gave: the stored row, and whether it existed already."""

    message: StoredMessage
    duplicate: bool
    assigned_to: int | None = None
    """Who the conversation was assigned to when the message was committed (read under the
    row lock that orders the conversation's writes): what decides who receives it, on
    every instance, whatever their caches say."""


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
