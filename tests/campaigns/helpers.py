"""What the campaign tests share: a config, contacts, a campaign, the database's own view."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from customer_service.campaigns.create import Audience, create_campaign
from customer_service.config import Config, load_config
from customer_service.core.campaign_template import parse_template
from customer_service.core.models import (
    Campaign,
    CampaignKind,
    CampaignSpec,
    ContactInput,
    RecipientState,
    Role,
)
from customer_service.storage.base import Store


def write_config(folder: Path, base_url: str = "http://127.0.0.1:9/v1", *,
                 ai: bool = True) -> Path:
    path = folder / "test.toml"
    path.write_text(
        '[storage]\nsqlite_path = "test.db"\n\n[server]\nport = 0\n\n'
        '[auth]\nscrypt_n = 16384\n\n[log]\nlevel = "warning"\n\n'
        f'[ai]\nenabled = {"true" if ai else "false"}\nbase_url = "{base_url}"\n'
        'api_key = "k"\nmodel = "fake-model"\nname = "Sunny"\n'
        'retry_base_delay = 0.01\nretry_max_delay = 0.05\nmax_reply_tokens = 64\n')
    return path


def config_at(path: Path) -> Config:
    return load_config(path, environ={})


async def add_contacts(store: Store, count: int, *, tags: Sequence[str] = ("spring",),
                       start: int = 0) -> None:
    for first in range(start, start + count, 1000):
        await store.upsert_contacts([
            ContactInput(external_id=f"u{n:06d}", name=f"Person {n}", email=f"p{n}@example.com",
                         tags=tuple(tags), attributes={"plan": "pro" if n % 2 else "free"})
            for n in range(first, min(first + 1000, start + count))])


async def new_campaign(store: Store, body: str, *, kind: CampaignKind = CampaignKind.PROMPT,
                       tags: tuple[str, ...] = ("spring",), concurrency: int = 16,
                       rate: float = 1000.0, fallback: str | None = None,
                       max_tokens_total: int | None = None) -> tuple[Campaign, int]:
    spec = CampaignSpec(name="test", kind=kind, body=body, sender_role=Role.AI, sender_id=None,
                        sender_name="Sunny", audience={"tags": list(tags)},
                        concurrency=concurrency, rate=rate, scheduled_at=None,
                        fallback=fallback, max_tokens_total=max_tokens_total)
    return await create_campaign(store, spec, Audience(tags=tags),
                                 [("prompt", parse_template(body))])


def campaign_messages(db: Path, campaign_id: int) -> dict[str, int]:
    """client_id → how many messages carry it, straight from the database file."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT client_id, COUNT(*) FROM messages WHERE campaign_id = ?"
                                  " GROUP BY client_id", (campaign_id,)).fetchall()
    return {str(client_id): int(n) for client_id, n in rows}


def recipient_rows(db: Path, campaign_id: int) -> dict[int, tuple[str, int | None, int | None]]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT contact_id, state, conversation_id, message_seq FROM"
                                  " campaign_recipients WHERE campaign_id = ?",
                                  (campaign_id,)).fetchall()
    return {int(c): (str(s), conv, seq) for c, s, conv, seq in rows}


def check_exactly_once(db: Path, campaign_id: int) -> dict[str, int]:
    """Each sent recipient has exactly one message, where the recipient row says; no other
    recipient has one. Returns the count of recipients per state."""
    messages = campaign_messages(db, campaign_id)
    rows = recipient_rows(db, campaign_id)
    assert all(n == 1 for n in messages.values()), "a contact got the message twice"
    states: dict[str, int] = {}
    with sqlite3.connect(db) as connection:
        for contact_id, (state, conversation, seq) in rows.items():
            states[state] = states.get(state, 0) + 1
            client_id = f"campaign:{campaign_id}:{contact_id}"
            if state == RecipientState.SENT:
                assert messages.get(client_id) == 1
                found = connection.execute(
                    "SELECT client_id FROM messages WHERE conversation_id = ? AND seq = ?",
                    (conversation, seq)).fetchone()
                assert found == (client_id,), "the report's message is not the one sent"
            else:
                assert client_id not in messages
    return states
