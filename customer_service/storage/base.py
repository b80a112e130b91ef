"""The one storage interface; SQLite and MySQL implement it.

Every method is one unit of work: one thread hop and, where it writes, one
transaction. Backends raise ``StorageError`` when the database fails and the
``errors`` tree (``NotFound``, ``Conflict``) for what the caller got wrong;
driver exceptions never leave a backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from customer_service.core.api_tokens import ApiToken
from customer_service.core.assignment import AgentLoad, AgentStatus
from customer_service.core.blocks import Block
from customer_service.core.canned import CannedReply
from customer_service.core.db_health import WriteHealth
from customer_service.core.export import ExportRow
from customer_service.core.models import (
    Agent,
    AgentToken,
    AppendResult,
    Campaign,
    CampaignDelivery,
    CampaignSpec,
    CampaignStatus,
    Contact,
    ContactInput,
    Conversation,
    ConversationStatus,
    ConversationSummary,
    NewMessage,
    Recipient,
    RecipientState,
    Role,
    Stats,
    StoredMessage,
    UpsertCounts,
    Visitor,
)
from customer_service.core.notes import NOTES_LIMIT, AddedNote, Note
from customer_service.core.reports import GroupBy, RawReport
from customer_service.core.search import SearchCursor, SearchHit, SearchQuery
from customer_service.core.visitor_context import ContextUpdate, ConversationContext
from customer_service.core.webhooks import AttemptResult, Webhook, WebhookDelivery, WebhookEvent


class Store(Protocol):
    write_health: WriteHealth
    """How recent writes went: ``/healthz`` reports ``degraded`` while they fail."""

    # --- schema -------------------------------------------------------------
    async def migrate(self) -> list[int]:
        """Apply pending migrations in order; return the versions applied now."""

    async def schema_version(self) -> int:
        """The newest applied migration (0 for an empty database)."""

    async def ping(self) -> None:
        """Raise ``StorageError`` when the database cannot answer."""

    async def deployment_token(self) -> str:
        """The random token naming this database (made by a migration): instances on one
        bus with different tokens belong to different deployments."""

    async def probe_write(self) -> None:
        """Run a write transaction that changes nothing: raise ``StorageError`` when the
        database cannot be written (read-only file, missing privilege, a lock nobody
        releases). Used by ``doctor``."""

    # --- agents -------------------------------------------------------------
    async def create_agent(self, username: str, name: str, password_hash: str) -> Agent:
        """Raise ``Conflict`` when the username is taken."""

    async def get_agent(self, agent_id: int) -> Agent | None: ...

    async def get_agent_by_username(self, username: str) -> Agent | None: ...

    async def list_agents(self) -> list[Agent]:
        """All agents, by id."""

    async def set_agent_disabled(self, username: str, disabled: bool) -> Agent:
        """Raise ``NotFound`` for an unknown username. Disabling also revokes its tokens."""

    async def set_agent_password(self, username: str, password_hash: str) -> Agent:
        """Raise ``NotFound`` for an unknown username. Also revokes the agent's tokens."""

    async def replace_password_hash(self, agent_id: int, old_hash: str, new_hash: str) -> bool:
        """Store a re-made hash of the same password (tokens kept), only while the stored
        hash is still ``old_hash``; False when it changed meanwhile or the agent is gone."""

    async def add_agent_token(self, agent_id: int, token_hash: str, label: str,
                              expires_at: datetime | None) -> None: ...

    async def agent_for_token(self, token_hash: str, now: datetime) -> Agent | None:
        """The enabled agent owning an unexpired token with this hash, or None. Notes the
        token's ``last_used_at`` (at most once per ``TOKEN_TOUCH_SECONDS``)."""

    async def revoke_agent_token(self, token_hash: str) -> bool:
        """Delete a token (logout); False when no such token existed."""

    async def list_agent_tokens(self, agent_id: int) -> list[AgentToken]:
        """The agent's tokens, oldest first (expired ones too, until they are revoked)."""

    async def revoke_agent_token_by_id(self, agent_id: int, token_id: str) -> str:
        """Delete the agent's one token whose ``AgentToken.id`` is ``token_id`` (or starts
        with it); return its hash. Raise ``NotFound`` when none matches, ``Conflict`` when
        several do."""

    # --- visitors -----------------------------------------------------------
    async def create_visitor(self, token_hash: str, name: str, email: str,
                             page: str) -> Visitor: ...

    async def visitor_for_token(self, token_hash: str) -> Visitor | None: ...

    async def update_visitor(self, visitor_id: int, name: str | None, email: str | None,
                             page: str | None) -> Visitor:
        """Change the given (not None) fields; raise ``NotFound`` for an unknown id."""

    async def get_visitor(self, visitor_id: int) -> Visitor | None: ...

    # --- conversations ------------------------------------------------------
    async def current_conversation(self, visitor_id: int) -> Conversation:
        """The visitor's newest conversation, created (status open) when there is none."""

    async def get_conversation(self, conversation_id: int) -> Conversation | None: ...

    async def list_conversations(self, status: ConversationStatus | None = None,
                                 limit: int = 100, assigned_to: int | None = None,
                                 labels: Sequence[str] = ()) -> list[ConversationSummary]:
        """Newest activity first, with visitor, last message and labels; filtered by status,
        by assigned agent and by labels (every one of them: AND) when those are given."""

    async def conversations_updated_since(self, since: datetime,
                                          limit: int = 1000) -> list[Conversation]:
        """Conversations whose ``updated_at`` (a new message or a change of state) is at or
        after ``since``, newest first, at most ``limit``: what a bus resynchronisation
        compares against what it delivered."""

    async def set_conversation_state(self, conversation_id: int, status: ConversationStatus,
                                     assigned_to: int | None,
                                     expected: tuple[ConversationStatus, int | None] | None = None
                                     ) -> Conversation:
        """Raise ``NotFound`` for an unknown id; ``Conflict`` when ``expected`` (status,
        assigned_to) is given and the stored state differs (another instance changed it)."""

    async def mark_read(self, conversation_id: int, by_visitor: bool, seq: int) -> Conversation:
        """Raise the read mark (never lower it, never past ``last_seq``)."""

    async def conversation_extras(self, conversation_id: int) -> tuple[Contact | None, list[str]]:
        """What agents see of a conversation beyond its row, read in one unit of work: its
        contact (if any) and its labels (every conversation event carries both)."""

    async def set_needs_agent(self, conversation_id: int, needs_agent: bool) -> Conversation:
        """Flag (or unflag) a conversation for agents' attention. Assigning it clears the flag,
        and an assigned conversation is not flagged (it has its agent)."""

    # --- messages -----------------------------------------------------------
    async def append_messages(self, batch: Sequence[NewMessage]) -> list[AppendResult]:
        """Store a batch in ONE transaction, in order; results line up with the batch.

        Each message gets the next ``seq`` of its conversation. A message whose
        (sender_role, sender_id, client_id) was stored before is not stored again:
        its result is the original row with ``duplicate=True``. Each result also says
        who the conversation was assigned to at commit (``assigned_to``). A message for an
        unknown conversation raises ``NotFound`` and nothing of the batch is stored.
        """

    async def find_message(self, sender_role: Role, sender_id: int | None,
                           client_id: str) -> StoredMessage | None:
        """The message a sender stored with this client id, if any (idempotent resends)."""

    async def messages_after(self, conversation_id: int, after_seq: int,
                             limit: int = 1000) -> list[StoredMessage]:
        """Messages with seq > after_seq, oldest first."""

    async def messages_before(self, conversation_id: int, before_seq: int | None,
                              limit: int = 50) -> list[StoredMessage]:
        """The newest ``limit`` messages with seq < before_seq (all when None), oldest first."""

    async def stats(self) -> Stats: ...

    # --- contacts -----------------------------------------------------------
    async def upsert_contacts(self, items: Sequence[ContactInput]) -> UpsertCounts:
        """Create or update each contact by ``external_id``, all in ONE transaction (an
        import batch). ``external_id`` values in one batch are unique (the caller checks)."""

    async def get_contact(self, contact_id: int) -> Contact | None: ...

    async def get_contact_by_external_id(self, external_id: str) -> Contact | None: ...

    async def contacts_by_external_ids(self, external_ids: Sequence[str]) -> list[Contact]:
        """The contacts among ``external_ids`` (at most a few thousand; unknown ids left
        out), in no particular order: one query per few hundred ids, not one per id."""

    async def list_contacts(self, *, after_id: int = 0, limit: int = 100,
                            tags: Sequence[str] = (), unsubscribed: bool | None = None
                            ) -> list[Contact]:
        """Contacts with id > ``after_id`` by id (a page), having every tag in ``tags``,
        and (when given) with this ``unsubscribed`` value."""

    async def count_contacts(self, *, tags: Sequence[str] = ()) -> int:
        """How many contacts have every tag in ``tags``."""

    async def tag_contacts(self, external_ids: Sequence[str], tags: Sequence[str],
                           add: bool) -> int:
        """Add (or remove) the tags on these contacts; return how many contacts exist among
        ``external_ids``. Raise ``NotFound`` naming the first unknown id when none exists."""

    async def set_contact_unsubscribed(self, external_id: str, unsubscribed: bool) -> Contact:
        """Raise ``NotFound`` for an unknown id."""

    async def delete_contact(self, external_id: str) -> None:
        """Delete the contact, its tags and its campaign recipients; its visitors are
        unlinked (their conversations stay). Raise ``NotFound`` for an unknown id."""

    async def link_visitor(self, visitor_id: int, external_id: str, name: str | None,
                           email: str | None) -> tuple[Contact, Conversation]:
        """Link a verified visitor to the contact ``external_id`` (created if new; a
        given name/email fills the contact's when it has none) and return the contact and
        the conversation this visitor continues: the contact's newest conversation
        (whichever device began it), or the visitor's own newest one (then adopted by the
        contact), or a new one. Raise ``NotFound`` for an unknown visitor."""

    async def contact_for_visitor(self, visitor_id: int) -> Contact | None:
        """The contact a visitor is linked to, if any (the agent's profile panel)."""

    async def contact_for_conversation(self, conversation_id: int) -> Contact | None:
        """The contact a conversation belongs to, if any."""

    # --- campaigns ----------------------------------------------------------
    async def create_campaign(self, spec: CampaignSpec, status: CampaignStatus) -> Campaign: ...

    async def get_campaign(self, campaign_id: int) -> Campaign | None: ...

    async def list_campaigns(self) -> list[Campaign]:
        """All campaigns, newest first."""

    async def add_recipients(self, campaign_id: int, contact_ids: Sequence[int]) -> int:
        """Add pending recipients (ignoring ones already there); return how many were new."""

    async def set_campaign_status(self, campaign_id: int, status: CampaignStatus,
                                  expected: Sequence[CampaignStatus] | None = None,
                                  stop_reason: str | None = None) -> Campaign:
        """Change the status (and stamp started_at/finished_at). Raise ``NotFound`` for an
        unknown id, ``Conflict`` when ``expected`` is given and the status is not in it."""

    async def claim_campaign(self, campaign_id: int, owner: str, lease_seconds: float,
                             now: datetime, *, force: bool = False) -> Campaign | None:
        """Take (or renew) the right to run the campaign: succeeds when nobody holds an
        unexpired lease, the lease is already ``owner``'s, or ``force``. Returns the
        campaign with the new lease, or None when another owner holds it."""

    async def release_campaign(self, campaign_id: int, owner: str) -> None:
        """Drop ``owner``'s lease (no-op when it is not theirs)."""

    async def due_campaigns(self, now: datetime) -> list[Campaign]:
        """Scheduled campaigns whose time has come, and running ones whose lease expired
        (their runner died): what the server's scheduler should run."""

    async def recipients_to_send(self, campaign_id: int, after_contact_id: int,
                                 limit: int) -> list[tuple[Recipient, Contact]]:
        """A page of recipients in state pending or generating (an interrupted run), by
        contact id, with their contacts."""

    async def recipients_page(self, campaign_id: int, after_contact_id: int,
                              limit: int) -> list[Recipient]:
        """Every recipient by contact id, a page at a time (the report)."""

    async def recipients_done_since(self, campaign_id: int, since: datetime) -> int:
        """How many recipients became sent, failed or skipped at or after ``since`` (the
        campaign's recent pace, for ``campaigns status`` in another shell)."""

    async def recipient_counts(self, campaign_id: int) -> dict[RecipientState, int]:
        """How many recipients are in each state (all states present, zero included)."""

    async def start_generating(self, campaign_id: int, contact_id: int) -> int:
        """Mark the recipient generating and count an attempt; return the attempts so far."""

    async def store_generated(self, campaign_id: int, contact_id: int, text: str,
                              tokens: int) -> int:
        """Keep the AI's text for the recipient (before delivery) and add ``tokens`` to the
        campaign's ``tokens_used``; return the new ``tokens_used``."""

    async def finish_recipient(self, campaign_id: int, contact_id: int,
                               state: RecipientState, error: str) -> None:
        """Mark a recipient failed or skipped, with why (never one already sent)."""

    async def deliver_campaign_message(self, campaign_id: int, contact_id: int, content: str,
                                       min_gap_seconds: float, now: datetime
                                       ) -> CampaignDelivery:
        """Deliver one recipient's message in ONE transaction: nothing when it was sent
        already (``skipped`` = "already sent"); skip it when the contact unsubscribed or got
        a campaign message less than ``min_gap_seconds`` ago; else append the message
        (campaign's sender, ``campaign_id``, an idempotent ``client_id``) to the contact's
        newest conversation (created, with a visitor of its own, when it has none), mark
        the recipient sent with the message's conversation and seq, and stamp the contact's
        ``last_campaign_at``."""

    # --- labels -------------------------------------------------------------
    async def conversation_labels(self, conversation_id: int) -> list[str]:
        """The conversation's labels, sorted (none for an unknown id)."""

    async def add_conversation_labels(self, conversation_id: int,
                                      labels: Sequence[str]) -> list[str]:
        """Add normalized labels (``core/labels.py``; ones it has are no change) and return
        all of them, sorted. Raise ``NotFound`` for an unknown conversation, ``Conflict``
        when it would carry more than ``MAX_LABELS``."""

    async def remove_conversation_labels(self, conversation_id: int,
                                         labels: Sequence[str]) -> list[str]:
        """Remove labels (ones it lacks are no change) and return those left, sorted.
        Raise ``NotFound`` for an unknown conversation."""

    async def aclose(self) -> None:
        """Close connections and the worker thread; idempotent."""

    # --- notes --------------------------------------------------------------
    async def add_note(self, conversation_id: int, agent_id: int, agent_name: str,
                       content: str, client_id: str | None = None) -> AddedNote:
        """Store an agent's private note (``core/notes.py``), with the conversation's
        ``last_seq`` as its ``after_seq``. A note whose (agent, ``client_id``) was stored
        before is not stored again: the original comes back with ``duplicate=True``.
        Raise ``NotFound`` for an unknown conversation."""

    async def list_notes(self, conversation_id: int, limit: int = NOTES_LIMIT) -> list[Note]:
        """The newest ``limit`` notes of a conversation, oldest first (none for an
        unknown conversation)."""

    # --- canned replies -----------------------------------------------------
    async def add_canned_reply(self, shortcut: str, text: str) -> CannedReply:
        """Store a canned reply (shortcut and text checked by ``core.canned``); raise
        ``Conflict`` when the shortcut is taken."""

    async def list_canned_replies(self) -> list[CannedReply]:
        """Every canned reply, by shortcut."""

    async def delete_canned_reply(self, shortcut: str) -> None:
        """Raise ``NotFound`` for an unknown shortcut."""

    # --- leave-a-message (business hours and auto-replies) ------------------
    async def set_left_email(self, conversation_id: int, email: str) -> Conversation:
        """Store the address a visitor left on a conversation to be written back to (checked
        by ``core/leave_message.py``; a later one replaces it) and return the conversation.
        The conversation's ``updated_at`` moves, so listings show it near the top. Raise
        ``NotFound`` for an unknown conversation."""

    # --- search (full-text: core/search.py, storage/_sql_search.py) -----------
    async def search(self, query: SearchQuery, limit: int,
                     before: SearchCursor | None = None) -> list[SearchHit]:
        """Messages (any role; never private notes) whose content, and visitors whose name
        or email, contain every term of ``query``, newest first (a message by its
        ``created_at``, a visitor by its newest conversation's last activity), at most
        ``limit`` (1 to ``core.search.MAX_LIMIT``, else ``BadRequest``); with ``before``,
        the page after that cursor (``SearchHit.cursor``). Each hit carries a snippet."""

    async def backfill_search_index(self) -> int:
        """Index rows stored before the search index existed (MySQL; a batch per
        transaction; ``migrate`` calls it); return how many were indexed now."""

    # --- blocks ---------------------------------------------------------------
    async def add_block(self, *, visitor_id: int | None, network: str | None, reason: str,
                        created_by: str, expires_at: datetime | None) -> Block:
        """Block a visitor, a network (normalized CIDR text), or both, until ``expires_at``
        (None: until removed). Raise ``NotFound`` for an unknown visitor."""

    async def get_block(self, block_id: int) -> Block | None: ...

    async def list_blocks(self, now: datetime | None) -> list[Block]:
        """The blocks active at ``now`` (not expired), by id; every block for None."""

    async def remove_block(self, block_id: int) -> Block:
        """Delete a block and return it. Raise ``NotFound`` for an unknown id."""

    # --- auto-assignment and agent status (core/assignment.py) ---------------
    async def agent_loads(self) -> list[AgentLoad]:
        """Every agent with its status, capacity (None: the default), open (assigned)
        conversations and last auto-assignment, by id."""

    async def agent_load(self, agent_id: int) -> AgentLoad | None:
        """One agent's ``AgentLoad``; None for an unknown id."""

    async def set_agent_capacity(self, username: str, capacity: int | None) -> AgentLoad:
        """Set (None: clear back to the default) how many open conversations
        auto-assignment may give the agent. Raise ``NotFound`` for an unknown username."""

    async def set_agent_status(self, agent_id: int, status: AgentStatus) -> AgentLoad:
        """Store the status the agent chose (kept across sign-ins). Raise ``NotFound`` for
        an unknown id."""

    async def waiting_conversations(self, limit: int = 100) -> list[Conversation]:
        """Conversations waiting for an agent (open, nobody assigned, the visitor has
        written), oldest first, at most ``limit``."""

    async def assign_waiting(self, conversation_id: int, agent_id: int,
                             capacity: int) -> Conversation | None:
        """Assign the conversation to the agent (status assigned, the needs-agent flag
        cleared, the agent's turn noted) only while it still waits (open, nobody assigned),
        the agent's status is online, it is enabled and it holds fewer than ``capacity``
        open conversations; None (nothing changed) otherwise. Compare-and-set: of two
        instances assigning at once, one wins; an agent is never filled past ``capacity``
        by auto-assignment."""

    # --- visitor context (docs/agents.md#visitor-context) ---------------------
    async def record_visitor_context(self, updates: Sequence[ContextUpdate]) -> None:
        """Write a batch of coalesced context changes in ONE transaction: per conversation,
        the newest visit's facts and current page (``core/visitor_context.py`` decides
        when a visit starts) and the pages seen, keeping the last ``MAX_PAGES``. A page equal
        to the conversation's latest one is not stored twice. Updates for unknown
        conversations are skipped."""

    async def conversation_context(self, conversation_id: int) -> ConversationContext | None:
        """What the context panel shows, in one unit of work: the visitor, the contact
        (the conversation's, else its visitor's), the stored visit, its pages (oldest first)
        and the other conversations of the visitor and the contact (newest first, at most
        ``EARLIER_LIMIT``, with their total). None for an unknown conversation."""

    # --- API tokens (docs/api.md) ---------------------------------------------
    async def create_api_token(self, name: str, scope: str, token_hash: str) -> ApiToken:
        """Store a token (its SHA-256 only) of scope ``read`` or ``write`` with its bot
        agent, an ``agents`` row flagged ``bot`` named ``name`` that never logs in and is
        never auto-assigned; one unit of work. Raise ``Conflict`` when a token (revoked ones
        too) or an agent has that name."""

    async def list_api_tokens(self) -> list[ApiToken]:
        """Every API token, revoked ones too, oldest first."""

    async def revoke_api_token(self, name: str) -> ApiToken:
        """Revoke the token named ``name`` (its row stays, with ``revoked_at``; revoking it
        again changes nothing). Raise ``NotFound`` for an unknown name."""

    async def api_token_for(self, token_hash: str, now: datetime
                            ) -> tuple[ApiToken, Agent] | None:
        """The unrevoked token with this hash and its bot agent (enabled), or None. Notes the
        token's ``last_used_at`` (at most once per ``TOKEN_TOUCH_SECONDS``)."""
    # --- reports and exports (core/reports.py, core/export.py, docs/reports.md) ------
    async def report(self, since: datetime, until: datetime, by: GroupBy | None
                     ) -> tuple[RawReport, RawReport | None]:
        """The figures of [since, until) aggregated in the database, in one unit of work:
        the whole range's (with the campaigns active in it) and, with ``by``, the same
        grouped by agent (the conversation's assignee), label (each of the conversation's)
        or 15-minute slot (``day``; the core folds slots into local days). Durations come
        one per conversation (``core/reports.py`` takes the percentiles)."""

    async def export_bounds(self, since: datetime, until: datetime) -> tuple[int, int] | None:
        """The lowest and highest id of the conversations created in [since, until); None
        when there is none."""

    async def export_page(self, since: datetime, until: datetime, *, last_id: int,
                          after: tuple[int, int], limit: int) -> list[ExportRow]:
        """Up to ``limit`` messages of the conversations created in [since, until) with an
        id up to ``last_id``, after the (conversation id, seq) ``after``, in that order,
        each with its conversation's fields (keyset pagination: pass the last row's)."""
    # --- webhooks (docs/webhooks.md; core/webhooks.py, storage/_sql_webhooks.py) ---
    # The outbox rows of the chat's changes are written by the methods making them
    # (append_messages, current_conversation, set_conversation_state, assign_waiting,
    # set_campaign_status, campaign delivery), in their own transaction.
    async def add_webhook(self, url: str, events: Sequence[str], secret: str) -> Webhook:
        """Store a subscription (URL, events and secret checked by ``core.webhooks``)."""

    async def list_webhooks(self) -> list[Webhook]:
        """Every webhook, by id."""

    async def get_webhook(self, webhook_id: int) -> Webhook | None: ...

    async def remove_webhook(self, webhook_id: int) -> Webhook:
        """Delete a webhook with its outbox rows and attempts; return it. Raise ``NotFound``
        for an unknown id."""

    async def enqueue_webhook_events(self, events: Sequence[WebhookEvent]) -> int:
        """Queue events that belong to no other write (one transaction); return the outbox
        rows written (one per event and subscribed, enabled webhook)."""

    async def webhook_work_due(self, now: datetime) -> bool:
        """Whether any outbox row may be sent at ``now`` (a read; the sender's idle poll)."""

    async def claim_webhook_deliveries(self, owner: str, now: datetime, lease_seconds: float,
                                       limit: int, *, share: int | None = None,
                                       busy: Mapping[int, int] | None = None
                                       ) -> list[WebhookDelivery]:
        """Claim for ``owner``, until ``now + lease_seconds``, up to ``limit`` rows that may be
        sent now (pending, due, not claimed or the claim lapsed, and per webhook the oldest
        pending row of their conversation), with their webhook's URL and secret. Of several
        stores claiming at once, each row goes to exactly one. With ``share``, while more
        than one webhook is enabled, one webhook gets no more than ``share`` rows counting
        ``busy`` (its rows ``owner`` is still sending, by webhook id)."""

    async def record_webhook_attempts(self, owner: str,
                                      results: Sequence[tuple[int, AttemptResult]]
                                      ) -> list[bool]:
        """Write a batch of attempts (delivery id, outcome) in one transaction: each is
        logged (the last ``ATTEMPTS_KEPT`` per row are kept) and, while ``owner`` still holds
        the row's claim, its outcome written and the claim released (True). False when the
        claim was lost (only the log changes) or the row is gone."""

    async def list_webhook_deliveries(self, *, failed: bool = False,
                                      webhook_id: int | None = None,
                                      limit: int = 50) -> list[WebhookDelivery]:
        """Outbox rows newest first with their attempts; ``failed``: dead letters and pending
        rows that failed at least once."""

    async def replay_webhook_deliveries(self, event_id: str | None,
                                        webhook_id: int | None = None) -> int:
        """Put dead letters (of one event, or all; of one webhook when given) back in the
        queue, due now, with a new retry period; return how many. Raise ``NotFound`` for an
        event id or a webhook id that has no row at all."""

    async def prune_webhook_deliveries(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to ``limit`` rows delivered before ``before``; return how many."""
