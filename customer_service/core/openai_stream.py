"""One OpenAI streaming chunk (the JSON of a ``data:`` line) → the text it adds.

Tolerant of what compatible servers differ in (a role-only first chunk, usage
chunks with no choices, ``null`` content), strict about what would be a broken
stream: anything that is not a JSON object with the chunk's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from customer_service.errors import AiBadResponse

DONE = "[DONE]"


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)


class _ErrorBody(msgspec.Struct):
    message: str = ""


class _ErrorEvent(msgspec.Struct):
    error: _ErrorBody | str


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_error_decoder = msgspec.json.Decoder(_ErrorEvent)


@dataclass(frozen=True, slots=True)
class ChunkText:
    text: str
    finish_reason: str | None


def parse_chunk(data: str) -> ChunkText:
    """Decode one ``data:`` payload (not ``[DONE]``); raise ``AiBadResponse`` if malformed."""
    try:
        chunk = _chunk_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):  # msgspec has no depth limit of its own
        raise AiBadResponse(f"malformed stream chunk: {data[:80]!r}") from None
    if not chunk.choices:
        try:
            failure = _error_decoder.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return ChunkText("", None)
        detail = failure.error if isinstance(failure.error, str) else failure.error.message
        raise AiBadResponse(f"the upstream reported an error mid-stream: {detail}")
    choice = chunk.choices[0]
    text = choice.delta.content if choice.delta is not None else None
    return ChunkText(text or "", choice.finish_reason)
