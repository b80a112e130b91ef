"""``customer-service webhooks ...``: bad input gets one line naming the option; add, list,
remove; ``test`` sends a signed ping to a real receiver and prints its answer."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from customer_service.core.models import Role, StoredMessage
from customer_service.core.webhooks import (
    AttemptResult,
    DeliveryState,
    message_created,
    verify,
)
from customer_service.storage.base import Store
from tests.cli.conftest import CliRun
from tests.webhooks.receiver import Receiver, running


@pytest.mark.parametrize(("args", "message"), [
    (["add", "ftp://example.com/x", "--events", "message.created"],
     "Error: URL: 'ftp://example.com/x' is not an http:// or https:// URL"),
    (["add", "http:///x", "--events", "message.created"], "Error: URL: 'http:///x' has no host"),
    (["add", "http://a..b/h", "--events", "message.created"],
     "Error: URL: 'http://a..b/h' cannot be sent to"),
    (["add", "http://\U0001f4a9.example/", "--events", "message.created"],
     "Error: URL: 'http://\U0001f4a9.example/' cannot be sent to"),
    (["add", "https://a.example/h", "--events", "message.sent"],
     "Error: --events: unknown event 'message.sent'; the events are message.created, "
     "conversation.created, conversation.assigned, conversation.closed, campaign.finished"),
    (["add", "https://a.example/h", "--events", "message.created", "--secret", ""],
     "Error: --secret: the secret must not be empty"),
    (["remove", "42"], "Error: ID: no webhook with id 42 (see 'customer-service webhooks list')"),
    (["remove", "x1"], "Error: ID: 'x1' is not a webhook id"),
    (["test", "42"], "Error: ID: no webhook with id 42"),
    (["deliveries", "--webhook", "42"], "Error: --webhook: no webhook with id 42"),
    (["replay", "evt_nope"], "Error: EVENT_ID: no webhook event with id 'evt_nope'"),
    (["replay", "--all-failed", "--webhook", "42"], "Error: --webhook: no webhook with id 42"),
    (["replay"], "Error: replay: give an EVENT_ID or --all-failed (not both)"),
    (["replay", "evt_1", "--all-failed"], "Error: replay: give an EVENT_ID or --all-failed"),
])
def test_bad_input_is_one_line_naming_the_option(run: CliRun, args: list[str],
                                                 message: str) -> None:
    result = run("webhooks", *args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output


def test_add_list_remove(run: CliRun) -> None:
    added = run("webhooks", "add", "https://crm.example.com/hooks", "--events",
                "conversation.closed,message.created")
    assert added.exit_code == 0, added.output
    secret = re.search(r"(whsec_\S+)", added.output)
    assert secret is not None and "Added webhook 1" in added.output
    mine = run("webhooks", "add", "http://127.0.0.1:9/h", "--events", "campaign.finished",
               "--secret", "my-secret")
    assert "my-secret" not in mine.output  # only a generated secret is printed
    listed = json.loads(run("webhooks", "list", "--json").output)
    assert [(h["id"], h["url"], h["events"]) for h in listed] == [
        (1, "https://crm.example.com/hooks", ["message.created", "conversation.closed"]),
        (2, "http://127.0.0.1:9/h", ["campaign.finished"])]
    assert secret.group(1) not in run("webhooks", "list").output
    assert "Removed webhook 1" in run("webhooks", "remove", "1").output
    assert [h["id"] for h in json.loads(run("webhooks", "list", "--json").output)] == [2]
    assert "No deliveries." in run("webhooks", "deliveries").output


def test_test_sends_a_signed_ping_and_prints_the_answer(run: CliRun) -> None:
    receiver = Receiver(secret="whsec_ping")
    receiver.plan = lambda _n, _e: (202, {}, b'{"pong": true}')  # type: ignore[assignment]
    with running(receiver):
        run("webhooks", "add", receiver.url, "--events", "message.created", "--secret",
            "whsec_ping")
        result = run("webhooks", "test", "1")
    assert result.exit_code == 0, result.output
    assert f"{receiver.url} answered HTTP 202 in " in result.output
    assert 'Body: {"pong": true}' in result.output
    (request,) = receiver.requests
    assert request.event["type"] == "ping" and request.event["data"] == {"webhook_id": 1}
    assert receiver.bad_signatures == 0
    assert verify("whsec_ping", request.headers["x-webhook-signature"],
                  request.headers["x-webhook-timestamp"], request.body,
                  float(request.headers["x-webhook-timestamp"]))


def test_test_without_a_receiver_says_why_and_fails(run: CliRun) -> None:
    with running(Receiver()) as gone:
        url = gone.url
    run("webhooks", "add", url, "--events", "message.created")
    result = run("webhooks", "test", "1")
    assert result.exit_code == 1
    assert f"No answer from {url} after" in result.output and "ConnectError" in result.output


HOSTILE = b"\x1b]0;PWNED\x07\x1b[31mRED\x1b[0m \x1b[2K\rfake line\x1b[1A"
"""A receiver's answer that would retitle, recolour and rewrite the operator's terminal."""


def test_a_receivers_terminal_escapes_are_printed_escaped(run: CliRun) -> None:
    receiver = Receiver()
    receiver.plan = lambda _n, _e: (400, {}, HOSTILE)  # type: ignore[assignment]
    with running(receiver):
        run("webhooks", "add", receiver.url, "--events", "message.created")
        result = run("webhooks", "test", "1")
    assert result.exit_code == 1
    assert "\x1b" not in result.output and "\r" not in result.output
    assert "Body: \\x1b]0;PWNED" in result.output and "RED" in result.output


def test_deliveries_print_a_kept_answer_escaped(
        run: CliRun, store_call: Callable[[Callable[[Store], Awaitable[Any]]], Any]) -> None:
    """A row whose answer was kept raw (before answers were made printable) is printed safe."""
    run("webhooks", "add", "http://127.0.0.1:9/h", "--events", "message.created")

    async def kept_raw(store: Store) -> None:
        now = datetime.now(UTC)
        await store.enqueue_webhook_events([message_created(StoredMessage(
            conversation_id=1, seq=1, sender_role=Role.VISITOR, sender_id=None,
            sender_name="V", content="hi", created_at=now))])
        later = now + timedelta(seconds=1)  # the row is due from its enqueue's millisecond
        (row,) = await store.claim_webhook_deliveries("t", later, 30.0, 10)
        await store.record_webhook_attempts("t", [(row.id, AttemptResult(
            DeliveryState.DEAD, now, now, 400, "HTTP 400: " + HOSTILE.decode(), 3))])

    store_call(kept_raw)
    result = run("webhooks", "deliveries")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b" in result.output
