"""The verification examples of docs/webhooks.md, as written there, accept a real delivery
and reject it tampered with, signed with another secret, or replayed after 5 minutes."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from customer_service.server.run import Server
from tests.integration.helpers import agent_socket, make_agent, visitor
from tests.webhooks.receiver import Receiver, Request, wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec_docs"

NODE_HARNESS = """
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
console.log(JSON.stringify(input.cases.map((c) =>
  verifyWebhook(c.secret, c.headers, Buffer.from(c.body, "base64"), c.now))));
"""


def example(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert found is not None, f"no {marker} example in {DOC}"
    return found.group(1)


async def delivery(server: Server, receiver: Receiver) -> Request:
    await server.service.store.add_webhook(receiver.url, ("message.created",), SECRET)
    async with visitor(server) as (vis, _):
        await vis.send(type="text", id="m1", content="verify me: 你好")
        await vis.recv_type("ack", id="m1")
    (request,) = await wait_for(receiver.answered, "a delivery")
    return request


def cases(request: Request) -> list[dict[str, Any]]:
    """(secret, headers, body, now) and whether each should verify."""
    stamp = int(request.headers["x-webhook-timestamp"])
    good = {"secret": SECRET, "headers": request.headers,
            "body": base64.b64encode(request.body).decode(), "now": stamp + 5}
    tampered = base64.b64encode(request.body.replace(b"verify", b"VERIFY")).decode()
    return [good, good | {"body": tampered}, good | {"secret": "whsec_other"},
            good | {"now": stamp + 301}, good | {"now": stamp + 299}]


EXPECTED = [True, False, False, False, True]


async def test_the_python_example(server: Server, receiver: Receiver) -> None:
    request = await delivery(server, receiver)
    namespace: dict[str, Any] = {}
    exec(compile(example("verify-python"), str(DOC), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify_webhook"]
    results = [verify(c["secret"], c["headers"], base64.b64decode(c["body"]), c["now"])
               for c in cases(request)]
    assert results == EXPECTED
    assert verify(SECRET, request.headers, request.body)  # now: within the window


async def test_the_node_example(server: Server, receiver: Receiver, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    request = await delivery(server, receiver)
    script = tmp_path / "verify.js"
    script.write_text(example("verify-node") + NODE_HARNESS)
    payload = json.dumps({"cases": cases(request)})
    done = await trio.to_thread.run_sync(lambda: subprocess.run(
        [node, str(script)], input=payload, capture_output=True, text=True, timeout=30,
        check=False))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == EXPECTED


def documented_data() -> dict[str, set[str]]:
    """Event type -> the ``data`` keys the docs list under "`data` by event"."""
    text = DOC.read_text().split("`data` by event:", 1)[1].split("\nTimes are", 1)[0]
    found: dict[str, set[str]] = {}
    for item in re.split(r"\n- ", text):
        head = re.match(r"\s*`([a-z.]+)`:", item)
        if head is not None:
            body = re.sub(r"\([^)]*\)", "", item[head.end():])  # "(or null)", "(counts...)"
            found[head.group(1)] = set(re.findall(r"`([a-z_]+)`", body)) - {
                "visitor", "agent", "ai", "open", "closed", "pending", "generating", "sent",
                "failed", "skipped", "system"}
    return found


async def test_each_event_has_the_documented_headers_and_data(server: Server,
                                                               receiver: Receiver) -> None:
    """A CRM following the docs: every conversation event arrives with the documented
    headers and exactly the documented ``data`` keys."""
    await server.service.store.add_webhook(
        receiver.url, ("message.created", "conversation.created", "conversation.assigned",
                       "conversation.closed"), SECRET)
    _, token = await make_agent(server, "alice")
    async with visitor(server, name="Vera") as (vis, hello):
        await vis.send(type="text", id="m1", content="Where is my order?")
        await vis.recv_type("ack", id="m1")
        async with agent_socket(server, token) as (agent, _):
            for n, kind in enumerate(("accept", "close")):
                await agent.send(type=kind, id=f"x{n}", conversation_id=hello["conversation_id"])
                await agent.recv_type("ack", id=f"x{n}")
    requests = await wait_for(lambda: len(receiver.answered()) >= 4 and receiver.answered(),
                              "four events")
    wanted = documented_data()
    for request in requests:
        event = request.event
        assert set(event) == {"id", "type", "created_at", "data"}
        assert set(event["data"]) == wanted[event["type"]], event
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("customer-service/")
        assert request.headers["x-webhook-id"] == event["id"]
        assert request.headers["x-webhook-timestamp"].isdigit()
        assert request.headers["x-webhook-signature"].startswith("v1=")
    assert sorted(e.event["type"] for e in requests) == [
        "conversation.assigned", "conversation.closed", "conversation.created",
        "message.created"]
