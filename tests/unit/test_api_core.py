"""API tokens' decisions and the OpenAPI document built from the route table (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from customer_service.config import Config
from customer_service.core import conversation as machine
from customer_service.core.api_tokens import check_name, check_scope, may
from customer_service.core.api_types import (
    BlockOut,
    CannedOut,
    ContactOut,
    ContextOut,
    SearchHitOut,
    WidgetOut,
)
from customer_service.core.assignment import AgentLoad, eligible
from customer_service.core.blocks import Block
from customer_service.core.canned import CannedReply, canned_dict
from customer_service.core.contact_json import contact_dict
from customer_service.core.models import Agent, Contact, Conversation, ConversationStatus
from customer_service.core.openapi import openapi_document
from customer_service.core.visitor_context import ConversationContext
from customer_service.errors import BadRequest, Conflict
from customer_service.server.rest_api import ROUTES
from customer_service.server.rest_blocks import block_dict
from customer_service.server.rest_context import context_json
from customer_service.server.widget_settings import widget_settings

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(("access", "credential", "allowed"), [
    ("public", "read", True), ("agent", "agent", True), ("agent", "read", False),
    ("agent", "write", False), ("read", "read", True), ("read", "write", True),
    ("read", "agent", True), ("write", "read", False), ("write", "write", True),
    ("write", "agent", True),
])
def test_who_may_call_what(access: Any, credential: Any, allowed: bool) -> None:
    assert (may(access, credential) is None) is allowed


def test_refusals_say_why() -> None:
    assert "scope is read" in (may("write", "read") or "")
    assert "for agents" in (may("agent", "write") or "")


def test_names_and_scopes() -> None:
    assert check_name("crm-bot") == "crm-bot" and check_scope("write") == "write"
    for bad in ("", " ", "bad name", "-x", "x" * 65):
        with pytest.raises(BadRequest):
            check_name(bad)
    with pytest.raises(BadRequest, match="unknown scope 'admin': read or write"):
        check_scope("admin")


def test_a_bot_is_never_eligible_for_assignment() -> None:
    load = AgentLoad(agent_id=1, username="b", name="b", status="online", capacity=None,
                     open_count=0)
    assert eligible(load, {1})
    assert not eligible(AgentLoad(agent_id=1, username="b", name="b", status="online",
                                  capacity=None, open_count=0, bot=True), {1})


def test_a_bot_writes_and_closes_whatever_is_not_closed() -> None:
    bot = Agent(id=9, username="crm", name="crm", password_hash="!", disabled=False,
                created_at=NOW, bot=True)
    open_one = Conversation(id=1, visitor_id=1, status=ConversationStatus.ASSIGNED,
                            assigned_to=3, last_seq=0, agent_read_seq=0, visitor_read_seq=0,
                            created_at=NOW, updated_at=NOW)
    machine.bot_may_write(open_one)
    change = machine.bot_close(open_one, bot)
    assert (change.status, change.assigned_to) == (ConversationStatus.CLOSED, 3)
    assert change.note == "crm closed the conversation"
    closed = dataclasses.replace(open_one, status=ConversationStatus.CLOSED)
    with pytest.raises(Conflict):
        machine.bot_may_write(closed)
    with pytest.raises(Conflict):
        machine.bot_close(closed, bot)
    alice = dataclasses.replace(bot, id=3, username="alice", name="Alice", bot=False)
    with pytest.raises(Conflict, match="'crm' is a bot agent"):
        machine.transfer(open_one, alice, bot)


def test_the_document_lists_every_route_with_its_auth_and_errors() -> None:
    document = openapi_document(ROUTES, "9.9")
    assert document["openapi"].startswith("3.1") and document["info"]["version"] == "9.9"
    operations = {(method.upper(), path) for path, ops in document["paths"].items()
                  for method in ops}
    assert operations == {(r.method, r.openapi_path) for r in ROUTES}
    send = document["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"]
    assert send["x-token-kinds"] == ["agent", "write"]
    assert send["security"] == [{"bearer": []}]
    assert {"200", "201", "400", "401", "403", "404", "409", "413"} <= set(send["responses"])
    body_ref = send["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body_ref.endswith("/SendBody")
    error = send["responses"]["403"]["content"]["application/json"]["schema"]["$ref"]
    assert document["components"]["schemas"][error.rsplit("/", 1)[-1]]["required"] == [
        "error", "message"]
    widget = document["paths"]["/api/v1/widget"]["get"]
    assert widget["security"] == [] and "401" not in widget["responses"]
    listing = document["paths"]["/api/v1/conversations"]["get"]
    names = {p["name"]: p for p in listing["parameters"]}
    assert set(names) == {"status", "limit", "label"}
    assert names["label"]["schema"]["type"] == "array" and names["label"]["explode"]
    assert names["limit"]["schema"]["maximum"] == 1000
    assert "/ws/agent" in document["info"]["description"]
    refs = msgspec.json.encode(document).decode()
    for name in document["components"]["schemas"]:
        assert f"/{name}\"" in refs
    for ref in {part.split('"')[0] for part in refs.split("#/components/schemas/")[1:]}:
        assert ref in document["components"]["schemas"]


def test_the_dict_builders_match_their_structs() -> None:
    """What handlers build as dicts converts to the route's Struct and encodes to the same
    bytes: the document describes exactly what clients get."""
    contact = Contact(id=1, external_id="e1", name="Ann", email="a@x", phone="", tags=("vip",),
                      attributes={"plan": "pro"}, unsubscribed=False, last_campaign_at=None,
                      created_at=NOW, updated_at=NOW)
    block = Block(id=1, visitor_id=None, network="10.0.0.0/8", reason="", created_by="alice",
                  created_at=NOW, expires_at=None)
    canned = CannedReply(id=1, shortcut="hi", text="Hello", created_at=NOW)
    context = ConversationContext(conversation_id=1, visitor=None, contact=contact,
                                  stored=None, pages=(), earlier=(), earlier_total=0)
    context_dict = context_json(context) | {"browser": {"name": "Firefox", "version": "1"},
                                            "os": {"name": "Linux", "version": ""},
                                            "device": "Other"}
    widget = widget_settings(Config(), status="online", back_at=None)
    for built, kind in ((contact_dict(contact), ContactOut), (block_dict(block, NOW), BlockOut),
                        (canned_dict(canned), CannedOut), (context_dict, ContextOut),
                        (widget, WidgetOut)):
        assert msgspec.json.encode(msgspec.convert(built, kind)) == msgspec.json.encode(built)
    hit = {"kind": "message", "conversation_id": 1, "seq": 2, "role": "visitor",
           "sender_name": "", "visitor_name": "", "created_at": "x", "snippet": "s",
           "highlights": [[0, 1]], "cursor": None}
    assert msgspec.json.encode(msgspec.convert(hit, SearchHitOut)) == msgspec.json.encode(hit)


def test_only_the_report_takes_longer_than_the_chat_deadline() -> None:
    """A report over a long range may take seconds on a million messages (docs/reports.md);
    every other request keeps ``[server] message_timeout``."""
    longer = {(r.method, r.path): r.deadline for r in ROUTES if r.deadline is not None}
    assert longer == {("GET", "/api/v1/reports"): 30.0}
    assert Config().server.message_timeout < 30.0
