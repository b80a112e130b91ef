"""One chat completion per contact, from the OpenAI-compatible ``[ai]`` upstream.

Non-streaming (nobody watches a campaign message being written): one ``POST
/chat/completions`` with the system prompt and the contact's rendered prompt, one
JSON answer with the text and, usually, ``usage``. Each call is one attempt: retries,
backoff and the campaign-wide pace are the runner's (``core.campaign_pacing``), so
that a 429 slows the whole campaign.

The request goes over the chat's transport (``ai.transport``): the lean h11 client for
a plain ``http://`` upstream, the sharded httpx pools for ``https://`` or ``[ai]
http_client = "httpx"``. The transport raises ``AiError``s only (each converts its own
failures in one place); an answer other than 200 becomes one here (``status_error``).
Its per-read and pool-wait timeouts are the campaign's ``total_timeout`` (nothing
arrives before the whole completion is written), connect and write ``connect_timeout``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec
import trio

from customer_service.ai.transport import UpstreamTransport, open_transport
from customer_service.ai.upstream import read_at_most, status_error
from customer_service.config import AiConfig
from customer_service.core.text import visible
from customer_service.errors import (
    AiBadResponse,
    AiError,
    AiTimeout,
)

MAX_BODY = 1 << 20
CHARS_PER_TOKEN = 4
"""The estimate of tokens used when the upstream reports no ``usage``."""


class EmptyReply(AiBadResponse):
    kind = "empty_reply"


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    total_tokens: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Completion(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None


_decode_completion = msgspec.json.Decoder(_Completion).decode
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Generated:
    text: str
    tokens: int
    """From ``usage.total_tokens`` when the upstream sent it, else estimated."""


def estimate_tokens(*texts: str) -> int:
    return max(1, math.ceil(sum(len(t) for t in texts) / CHARS_PER_TOKEN))


def parse_completion(body: bytes, prompt_chars: int) -> Generated:
    """The text and tokens of a ``chat.completion`` body; raise ``AiBadResponse`` (or
    ``EmptyReply`` when it holds no visible text)."""
    try:
        completion = _decode_completion(body)
    except (msgspec.DecodeError, RecursionError):
        raise AiBadResponse(f"malformed completion: {body[:80]!r}") from None
    if not completion.choices or completion.choices[0].message is None:
        raise AiBadResponse("the completion has no choices")
    text = (completion.choices[0].message.content or "").strip()
    if not visible(text):
        raise EmptyReply("the upstream answered with no text")
    usage = completion.usage
    if usage is not None and usage.total_tokens is not None and usage.total_tokens > 0:
        tokens = usage.total_tokens
    elif usage is not None and usage.completion_tokens is not None:
        tokens = (usage.prompt_tokens or 0) + usage.completion_tokens
    else:
        tokens = estimate_tokens(text) + math.ceil(prompt_chars / CHARS_PER_TOKEN)
    return Generated(text, tokens)


HEADERS = {"User-Agent": "customer-service-campaigns", "Content-Type": "application/json",
           "Accept-Encoding": "identity"}
"""Sent with every request (given to the transport once). The body is read raw, without
content-decoding, so it must come uncompressed."""


class CampaignAi:
    """Generates campaign messages; one instance per run, shared by its workers, over one
    transport holding at most the campaign's ``concurrency`` connections."""

    def __init__(self, config: AiConfig, transport: UpstreamTransport) -> None:
        self.config = config
        self.transport = transport

    async def generate(self, prompt: str) -> Generated:
        """One attempt; raise an ``AiError`` (``AiRateLimited`` with its Retry-After,
        ``AiUpstreamError`` with the status, ``AiConnectionError``, ``AiTimeout``,
        ``AiBadResponse``/``EmptyReply``)."""
        cfg = self.config
        body = _json.encode({
            "model": cfg.model, "stream": False, "max_tokens": cfg.max_reply_tokens,
            "temperature": cfg.temperature,
            "messages": [{"role": "system", "content": cfg.system_prompt},
                         {"role": "user", "content": prompt}]})
        try:
            with trio.fail_after(cfg.total_timeout):
                async with self.transport.stream_post("chat/completions", body,
                                                      {}) as response:
                    status, headers = response.status_code, response.headers
                    content = await read_at_most(response, MAX_BODY)
        except trio.TooSlowError:
            raise AiTimeout(f"no answer within {cfg.total_timeout:g} s") from None
        if status != 200:
            raise status_error(status, headers, content)
        return parse_completion(content, len(cfg.system_prompt) + len(prompt))


def describe_error(error: AiError) -> str:
    return f"{error.kind}: {error.message}"


@asynccontextmanager
async def open_campaign_ai(config: AiConfig, concurrency: int) -> AsyncIterator[CampaignAi]:
    """A ``CampaignAi`` with at most ``concurrency`` connections (``ai.transport``), closed
    at exit. The transport waits up to ``first_token_timeout`` for a free connection and
    ``max(idle_timeout, first_token_timeout)`` per read; a non-streaming answer comes
    whole at the end, so both are the campaign's ``total_timeout`` here."""
    wait = config.total_timeout
    transport_config = dataclasses.replace(config, first_token_timeout=wait, idle_timeout=wait)
    async with open_transport(transport_config, max(1, concurrency),
                              dict(HEADERS)) as transport:
        yield CampaignAi(config, transport)
