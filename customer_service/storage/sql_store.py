"""The store methods both SQL backends share: each is one unit of work.

A backend supplies ``_run(work, write=...)``, which runs ``work`` (a function of a
``Tx``) as one transaction in its thread, and ``migrate``/``aclose``; the SQL itself
is written once for both dialects, in ``_sql_schema``, ``_sql_people``, ``_sql_chat``,
``_sql_contacts`` and ``_sql_campaigns`` (on the plumbing of ``_sql``). The contact and
campaign methods are inherited from ``sql_store_contacts``, the label methods from
``sql_store_labels``, the canned replies' from ``sql_store_canned``, auto-assignment's
from ``sql_store_routing``, search from ``sql_store_search``, reports and exports from
``sql_store_reports``, webhooks from ``sql_store_webhooks``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

import trio

from customer_service.core.db_health import WriteHealth
from customer_service.core.models import (
    Agent,
    AgentToken,
    AppendResult,
    Contact,
    Conversation,
    ConversationStatus,
    ConversationSummary,
    NewMessage,
    Role,
    Stats,
    StoredMessage,
    Visitor,
)
from customer_service.errors import StorageError
from customer_service.storage import _sql_chat as chat
from customer_service.storage import _sql_contacts as contacts_sql
from customer_service.storage import _sql_labels as labels_sql
from customer_service.storage import _sql_people as people
from customer_service.storage import _sql_schema as schema
from customer_service.storage._sql import Tx
from customer_service.storage.sql_store_api_tokens import ApiTokens
from customer_service.storage.sql_store_blocks import Blocks
from customer_service.storage.sql_store_canned import CannedReplies
from customer_service.storage.sql_store_contacts import ContactsAndCampaigns
from customer_service.storage.sql_store_context import VisitorContexts
from customer_service.storage.sql_store_labels import ConversationLabels
from customer_service.storage.sql_store_leave_message import LeaveMessage
from customer_service.storage.sql_store_notes import Notes
from customer_service.storage.sql_store_reports import Reports
from customer_service.storage.sql_store_routing import AgentRouting
from customer_service.storage.sql_store_search import Search
from customer_service.storage.sql_store_webhooks import Webhooks

T = TypeVar("T")


class Unit:
    """One unit of work handed to a worker thread. ``given_up`` is set, once, when its
    caller's deadline passed: from then on it must not start, retry or wait any more. A
    flag of its own, not "the last unit given up" on the store or connection: a later
    give-up must not clear an earlier one whose thread still runs."""

    __slots__ = ("given_up",)

    def __init__(self) -> None:
        self.given_up = False


def given_up_error() -> StorageError:
    return StorageError("given up: its caller's deadline passed")


async def run_interruptible(fn: Callable[[], T], *, run: Callable[[Callable[[], T]], Awaitable[T]],
                            interrupt: Callable[[], None], health: WriteHealth | None) -> T:
    """Run ``fn`` in a worker thread (``run`` hands it over and waits, abandoning it when
    cancelled); a caller whose deadline passes gets control back now.

    A database call cannot be cancelled from outside its thread, so a request whose
    deadline passed used to wait for the statement anyway (behind a table lock, for as
    long as the lock was held). Here the caller is released at once and ``interrupt``
    asks the database to end the statement, so the thread (and its connection) is free
    again soon; the transaction rolls back. ``run`` keeps the connection to that thread
    until it really ends, so nothing else uses it meanwhile.

    A write's outcome (done, failed, or given up at its deadline) goes to ``health``.
    """
    try:
        result = await run(fn)
    except trio.Cancelled:
        interrupt()
        if health is not None:
            health.failed(time.monotonic())
        raise
    except StorageError:
        if health is not None:
            health.failed(time.monotonic())
        raise
    if health is not None:
        health.succeeded(time.monotonic())
    return result


class SqlStore(ContactsAndCampaigns, ConversationLabels, Notes, CannedReplies, Blocks,
               AgentRouting, LeaveMessage, Search, VisitorContexts, ApiTokens,
               Reports, Webhooks, ABC):
    write_health: WriteHealth
    """How recent writes went (``/healthz``); each backend makes one."""

    @abstractmethod
    async def _run(self, work: Callable[[Tx], T], *, write: bool) -> T:
        """Run ``work`` as one transaction (read-only when ``write`` is False)."""

    async def schema_version(self) -> int:
        return await self._run(schema.schema_version, write=False)

    async def ping(self) -> None:
        def work(tx: Tx) -> None:
            tx.one("SELECT 1")

        await self._run(work, write=False)

    async def deployment_token(self) -> str:
        return await self._run(schema.deployment_token, write=False)

    async def probe_write(self) -> None:
        def work(tx: Tx) -> None:
            schema.probe_write(tx)

        await self._run(work, write=True)

    # --- agents -------------------------------------------------------------

    async def create_agent(self, username: str, name: str, password_hash: str) -> Agent:
        return await self._run(
            lambda tx: people.create_agent(tx, username, name, password_hash), write=True)

    async def get_agent(self, agent_id: int) -> Agent | None:
        return await self._run(lambda tx: people.get_agent(tx, agent_id), write=False)

    async def get_agent_by_username(self, username: str) -> Agent | None:
        return await self._run(lambda tx: people.get_agent_by_username(tx, username), write=False)

    async def list_agents(self) -> list[Agent]:
        return await self._run(people.list_agents, write=False)

    async def set_agent_disabled(self, username: str, disabled: bool) -> Agent:
        return await self._run(
            lambda tx: people.set_agent_disabled(tx, username, disabled), write=True)

    async def set_agent_password(self, username: str, password_hash: str) -> Agent:
        return await self._run(
            lambda tx: people.set_agent_password(tx, username, password_hash), write=True)

    async def replace_password_hash(self, agent_id: int, old_hash: str, new_hash: str) -> bool:
        return await self._run(
            lambda tx: people.replace_password_hash(tx, agent_id, old_hash, new_hash),
            write=True)

    async def add_agent_token(self, agent_id: int, token_hash: str, label: str,
                              expires_at: datetime | None) -> None:
        await self._run(
            lambda tx: people.add_agent_token(tx, agent_id, token_hash, label, expires_at),
            write=True)

    async def agent_for_token(self, token_hash: str, now: datetime) -> Agent | None:
        found = await self._run(lambda tx: people.agent_for_token(tx, token_hash, now),
                                write=False)
        if found is None:
            return None
        agent, stale = found
        if stale:  # a write at most once a minute per token, not one per request
            await self._run(lambda tx: people.touch_agent_token(tx, token_hash, now),
                            write=True)
        return agent

    async def revoke_agent_token(self, token_hash: str) -> bool:
        return await self._run(lambda tx: people.revoke_agent_token(tx, token_hash), write=True)

    async def list_agent_tokens(self, agent_id: int) -> list[AgentToken]:
        return await self._run(lambda tx: people.list_agent_tokens(tx, agent_id), write=False)

    async def revoke_agent_token_by_id(self, agent_id: int, token_id: str) -> str:
        return await self._run(
            lambda tx: people.revoke_agent_token_by_id(tx, agent_id, token_id), write=True)

    # --- visitors -----------------------------------------------------------

    async def create_visitor(self, token_hash: str, name: str, email: str,
                             page: str) -> Visitor:
        return await self._run(
            lambda tx: people.create_visitor(tx, token_hash, name, email, page), write=True)

    async def visitor_for_token(self, token_hash: str) -> Visitor | None:
        return await self._run(lambda tx: people.visitor_for_token(tx, token_hash), write=False)

    async def update_visitor(self, visitor_id: int, name: str | None, email: str | None,
                             page: str | None) -> Visitor:
        return await self._run(
            lambda tx: people.update_visitor(tx, visitor_id, name, email, page), write=True)

    async def get_visitor(self, visitor_id: int) -> Visitor | None:
        return await self._run(lambda tx: people.get_visitor(tx, visitor_id), write=False)

    # --- conversations ------------------------------------------------------

    async def current_conversation(self, visitor_id: int) -> Conversation:
        return await self._run(lambda tx: chat.current_conversation(tx, visitor_id), write=True)

    async def get_conversation(self, conversation_id: int) -> Conversation | None:
        return await self._run(lambda tx: chat.get_conversation(tx, conversation_id),
                               write=False)

    async def list_conversations(self, status: ConversationStatus | None = None,
                                 limit: int = 100, assigned_to: int | None = None,
                                 labels: Sequence[str] = ()) -> list[ConversationSummary]:
        wanted = list(labels)
        return await self._run(
            lambda tx: chat.list_conversations(tx, status, limit, assigned_to, wanted),
            write=False)

    async def conversations_updated_since(self, since: datetime,
                                          limit: int = 1000) -> list[Conversation]:
        return await self._run(
            lambda tx: chat.conversations_updated_since(tx, since, limit), write=False)

    async def set_conversation_state(self, conversation_id: int, status: ConversationStatus,
                                     assigned_to: int | None,
                                     expected: tuple[ConversationStatus, int | None] | None = None
                                     ) -> Conversation:
        return await self._run(
            lambda tx: chat.set_conversation_state(tx, conversation_id, status, assigned_to,
                                                   expected),
            write=True)

    async def find_message(self, sender_role: Role, sender_id: int | None,
                           client_id: str) -> StoredMessage | None:
        return await self._run(
            lambda tx: chat.find_message(tx, sender_role, sender_id, client_id), write=False)

    async def mark_read(self, conversation_id: int, by_visitor: bool, seq: int) -> Conversation:
        return await self._run(
            lambda tx: chat.mark_read(tx, conversation_id, by_visitor, seq), write=True)

    async def conversation_extras(self, conversation_id: int) -> tuple[Contact | None, list[str]]:
        def work(tx: Tx) -> tuple[Contact | None, list[str]]:
            return (contacts_sql.contact_for_conversation(tx, conversation_id),
                    labels_sql.conversation_labels(tx, conversation_id))

        return await self._run(work, write=False)

    async def set_needs_agent(self, conversation_id: int, needs_agent: bool) -> Conversation:
        return await self._run(
            lambda tx: chat.set_needs_agent(tx, conversation_id, needs_agent), write=True)

    # --- messages -----------------------------------------------------------

    async def append_messages(self, batch: Sequence[NewMessage]) -> list[AppendResult]:
        if not batch:
            return []
        items = list(batch)
        return await self._run(lambda tx: chat.append_messages(tx, items), write=True)

    async def messages_after(self, conversation_id: int, after_seq: int,
                             limit: int = 1000) -> list[StoredMessage]:
        return await self._run(
            lambda tx: chat.messages_after(tx, conversation_id, after_seq, limit), write=False)

    async def messages_before(self, conversation_id: int, before_seq: int | None,
                              limit: int = 50) -> list[StoredMessage]:
        return await self._run(
            lambda tx: chat.messages_before(tx, conversation_id, before_seq, limit),
            write=False)

    async def stats(self) -> Stats:
        return await self._run(chat.stats, write=False)

