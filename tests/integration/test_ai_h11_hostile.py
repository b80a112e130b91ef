"""The lean h11 upstream client against hostile upstreams (issue 14's attack): answers
that carry more than one response, extra bytes past the end of a body, and the like.
Each failure must be the documented ``AiError`` and no connection may carry a byte of
one exchange into the next."""

from __future__ import annotations

import contextlib

import trio

from customer_service.errors import AiUpstreamError
from tests.integration.test_ai_h11 import (
    client_for,
    content_length_answer,
    lean,
    reply,
    sse_body,
    tiny_upstream,
)


async def test_bytes_past_the_end_of_a_response_never_answer_the_next_request() -> None:
    # A 204 has no body by definition, and a Content-Length body ends where it says: what
    # the upstream sent beyond is not the answer to anything we asked. Kept in the
    # connection's buffer, it would be read as the next request's response.
    answers = [b"HTTP/1.1 204 No Content\r\n\r\n" + content_length_answer(sse_body("stale")),
               content_length_answer(sse_body("one")) + content_length_answer(sse_body("stale"))]
    for first in answers:
        sent = [first]

        async def answer(stream: trio.SocketStream, n: int, sent: list[bytes] = sent) -> bool:
            await stream.send_all(sent.pop() if sent else content_length_answer(sse_body("fresh")))
            return True

        async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
            with contextlib.suppress(AiUpstreamError):  # the 204
                await reply(client)
            assert len(lean(client).idle) == 0
            assert await reply(client) == "fresh"
            assert counts["connections"] == 2


async def test_a_response_nobody_asked_for_on_an_idle_connection_is_never_read_as_an_answer(
        ) -> None:
    # The upstream answers, then sends another response unasked while the connection sits
    # idle in the pool (however briefly): it must not become the next request's answer.
    unasked = trio.Event()

    async def answer(stream: trio.SocketStream, n: int) -> bool:
        await stream.send_all(content_length_answer(sse_body(f"answer {n}")))
        if n == 0:
            await unasked.wait()
            await stream.send_all(content_length_answer(sse_body("unasked")))
            await trio.sleep_forever()  # and keeps the connection open
        return True

    async with tiny_upstream(answer) as (url, counts), client_for(url) as client:
        assert await reply(client) == "answer 0"
        unasked.set()
        (conn,) = lean(client).idle.drain()  # a hot connection: idle for no time at all
        lean(client).idle.put(conn, trio.current_time())
        with trio.fail_after(5):
            while conn.looks_alive():  # the unasked bytes are here
                await trio.sleep(0.01)
        assert await reply(client) == "answer 0"  # on a new connection
        assert counts["connections"] == 2
