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
from tests.integration.helpers import visitor
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
