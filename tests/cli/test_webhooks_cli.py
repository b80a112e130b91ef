"""``customer-service webhooks ...``: bad input gets one line naming the option; add, list,
remove; ``test`` sends a signed ping to a real receiver and prints its answer."""

from __future__ import annotations

import json
import re

import pytest

from customer_service.core.webhooks import verify
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
