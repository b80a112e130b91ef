"""The reports' hand-computed fixture: a handful of conversations with exact timestamps,
two agents, AI replies, labels and a campaign, written into any ``Store`` (the store
contract, the CLI, REST and the browser tests share it). The expected figures are written
out by hand in ``tests/storage/test_reports_contract.py`` (see the table there).

Timeline (UTC), the report's range being 2026-11-02 .. 2026-11-03:

- C1 11-02 09:00 opened; visitor 09:00:10, AI 09:00:15, alice 09:01:10; alice closes 09:30.
  Label billing. Assigned alice.
- C2 11-02 10:00 opened; visitor 10:00:00, bob 10:04:10. Labels billing, vip. Assigned bob.
- C3 11-02 11:00 opened; welcome (system) 11:00:00, visitor 11:00:20, AI 11:00:22 and
  11:00:40; an agent closes it without accepting it at 11:10 (the AI resolved it).
- C4 11-03 08:00 opened; visitor 08:00:00, AI 08:00:30, alice 08:02:00; closed 09:00.
  Label vip. Assigned alice.
- C5 11-01 23:00 opened (before the range); visitor 23:00, alice 23:05; closed 11-02 01:00.
- C6 11-03 12:00 opened but the visitor never wrote: not counted as opened.
- C7 11-03 13:00 made by the campaign "November promo" (AI message 13:00), the contact
  replies 13:30:00, the AI answers 13:30:08. Open.
- C8 11-04 00:30 (after the range); visitor 00:30.
- Campaign "November promo" ran 11-03 12:59 → 13:05: sent 1 (C7, replied), failed 1,
  skipped 1. Campaign "October" ran in October (not in the range).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from customer_service.core.models import NewMessage, Role
from customer_service.storage._sql import Tx
from customer_service.storage.base import Store


def ms(day: int, hour: int, minute: int, second: int = 0, month: int = 11) -> int:
    return int(datetime(2026, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Msg:
    role: Role
    at: int
    sender: str = ""
    campaign: bool = False


@dataclass(frozen=True)
class Conv:
    name: str
    created: int
    messages: tuple[Msg, ...]
    status: str = "open"
    assigned: str | None = None
    closed: int | None = None
    labels: tuple[str, ...] = ()


V, A, AI, S = Role.VISITOR, Role.AGENT, Role.AI, Role.SYSTEM

CONVERSATIONS = (
    Conv("C1", ms(2, 9, 0), (Msg(V, ms(2, 9, 0, 10)), Msg(AI, ms(2, 9, 0, 15)),
                             Msg(A, ms(2, 9, 1, 10), "alice"), Msg(S, ms(2, 9, 30))),
         "closed", "alice", ms(2, 9, 30), ("billing",)),
    Conv("C2", ms(2, 10, 0), (Msg(V, ms(2, 10, 0)), Msg(A, ms(2, 10, 4, 10), "bob")),
         "assigned", "bob", None, ("billing", "vip")),
    Conv("C3", ms(2, 11, 0), (Msg(S, ms(2, 11, 0)), Msg(V, ms(2, 11, 0, 20)),
                              Msg(AI, ms(2, 11, 0, 22)), Msg(AI, ms(2, 11, 0, 40)),
                              Msg(S, ms(2, 11, 10))),
         "closed", None, ms(2, 11, 10)),
    Conv("C4", ms(3, 8, 0), (Msg(V, ms(3, 8, 0)), Msg(AI, ms(3, 8, 0, 30)),
                             Msg(A, ms(3, 8, 2), "alice"), Msg(S, ms(3, 9, 0))),
         "closed", "alice", ms(3, 9, 0), ("vip",)),
    Conv("C5", ms(1, 23, 0), (Msg(V, ms(1, 23, 0)), Msg(A, ms(1, 23, 5), "alice"),
                              Msg(S, ms(2, 1, 0))),
         "closed", "alice", ms(2, 1, 0)),
    Conv("C6", ms(3, 12, 0), ()),
    Conv("C7", ms(3, 13, 0), (Msg(AI, ms(3, 13, 0), campaign=True), Msg(V, ms(3, 13, 30)),
                              Msg(AI, ms(3, 13, 30, 8))),
         "open"),
    Conv("C8", ms(4, 0, 30), (Msg(V, ms(4, 0, 30)),)),
)


@dataclass(frozen=True)
class Fixture:
    ids: dict[str, int]
    """Conversation name → id."""
    agents: dict[str, int]
    campaign_id: int


async def fill(store: Store) -> Fixture:
    """Write the fixture into a migrated store without conversations (agents alice and bob
    may be there already)."""
    agents = {}
    for username, name in (("alice", "Alice"), ("bob", "Bob")):
        known = await store.get_agent_by_username(username)  # the browser tests' own
        agents[username] = (known or await store.create_agent(username, name, "x")).id
    ids: dict[str, int] = {}
    for n, conv in enumerate(CONVERSATIONS):
        visitor = await store.create_visitor(f"reports-{n}", f"Visitor {conv.name}",
                                             f"{conv.name.lower()}@example.com", "/")
        cid = (await store.current_conversation(visitor.id)).id
        ids[conv.name] = cid
        if conv.messages:
            await store.append_messages([
                NewMessage(cid, msg.role, agents.get(msg.sender), msg.sender or str(msg.role),
                           f"{conv.name} {msg.role} {i}")
                for i, msg in enumerate(conv.messages)])
        if conv.labels:
            await store.add_conversation_labels(cid, list(conv.labels))

    def rewrite(tx: Tx) -> int:
        for conv in CONVERSATIONS:
            cid = ids[conv.name]
            tx.execute("UPDATE conversations SET created_at = ?, updated_at = ?, status = ?,"
                       " assigned_to = ?, closed_at = ? WHERE id = ?",
                       (conv.created, conv.created, conv.status,
                        agents.get(conv.assigned or ""), conv.closed, cid))
            for seq, msg in enumerate(conv.messages, start=1):
                tx.execute("UPDATE messages SET created_at = ? WHERE conversation_id = ?"
                           " AND seq = ?", (msg.at, cid, seq))
        now = ms(1, 0, 0, month=10)
        contacts = []
        for n in range(3):
            contacts.append(tx.insert(
                "INSERT INTO contacts (external_id, name, attributes, created_at, updated_at)"
                " VALUES (?, ?, '{}', ?, ?)", (f"user-{n}", f"Contact {n}", now, now)))
        tx.execute("UPDATE conversations SET contact_id = ? WHERE id = ?",
                   (contacts[0], ids["C7"]))
        campaigns = []
        for name, started, finished in (("November promo", ms(3, 12, 59), ms(3, 13, 5)),
                                        ("October", ms(1, 9, 0, month=10),
                                         ms(2, 9, 0, month=10))):
            campaigns.append(tx.insert(
                "INSERT INTO campaigns (name, status, kind, body, sender_role, sender_name,"
                " audience, concurrency, rate, stop_reason, created_at, updated_at,"
                " started_at, finished_at) VALUES (?, 'finished', 'prompt', 'Say hi', 'ai',"
                " 'AI', '{}', 1, 1, '', ?, ?, ?, ?)",
                (name, started, finished, started, finished)))
        promo, october = campaigns
        tx.execute("UPDATE messages SET campaign_id = ? WHERE conversation_id = ? AND seq = 1",
                   (promo, ids["C7"]))
        for contact, state, cid, seq in ((contacts[0], "sent", ids["C7"], 1),
                                         (contacts[1], "failed", None, None),
                                         (contacts[2], "skipped", None, None)):
            tx.execute("INSERT INTO campaign_recipients (campaign_id, contact_id, state, error,"
                       " conversation_id, message_seq, updated_at)"
                       " VALUES (?, ?, ?, '', ?, ?, ?)",
                       (promo, contact, state, cid, seq, ms(3, 13, 0)))
        tx.execute("INSERT INTO campaign_recipients (campaign_id, contact_id, state, error,"
                   " updated_at) VALUES (?, ?, 'sent', '', ?)", (october, contacts[1], now))
        return promo

    campaign_id = await store._run(rewrite, write=True)  # type: ignore[attr-defined]
    return Fixture(ids, agents, campaign_id)
