"""How an AI reply ends: its metrics outcome, what is stored, who is told.

Pure: the responder passes whether the request failed, why the reply was stopped
(if it was) and the text it streamed; the answer says what to do. The rules:

- every visitor message the AI was to answer ends in an answer or in the
  ``unavailable`` note with the conversation flagged ``needs_agent``: a reply that
  failed, that finished with no visible text (a content filter's empty answer,
  whitespace only), or that the server's shutdown cut off;
- the text streamed is stored when it has visible text, whatever ended the reply
  (it is what the visitor saw);
- a reply cut at the length cap is complete; an agent taking over cancels a reply,
  and so does a shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass

from customer_service.core.text import visible

CUT_AT_LENGTH = "length"
"""``stopped_by`` of a reply cut at 16 times ``max_reply_tokens`` characters."""
SHUTDOWN = "shutdown"
"""``stopped_by`` of a reply cut off by the server's shutdown."""
EMPTY_REPLY = "empty_reply"
"""``cs_ai_errors_total`` kind of a reply that finished with no visible text."""


@dataclass(frozen=True, slots=True)
class ReplyEnd:
    outcome: str
    """``cs_ai_replies_total`` label: ``completed``, ``cancelled`` or ``failed``."""
    store_text: bool
    """Store the streamed text as the AI message (with the reply's ``stream_id``)."""
    alert: bool
    """Store the ``unavailable`` note and flag the conversation ``needs_agent``."""
    follow_up: bool
    """A follow-up queued while the reply streamed may run now."""
    empty: bool
    """The upstream finished with no visible text (an error of kind ``empty_reply``)."""


FILTERED = "content_filter"
"""``finish_reason`` of a reply the upstream's content filter cut off."""


def reply_end(*, failed: bool, stopped_by: str | None, text: str,
              finish_reason: str | None = None) -> ReplyEnd:
    """The end of a reply that ``failed`` (an upstream error), or was stopped (``stopped_by``:
    ``CUT_AT_LENGTH``, ``SHUTDOWN``, or any other reason: an agent took over), or neither
    (the upstream finished it, with ``finish_reason``), having streamed ``text``. A reply
    the upstream's content filter cut is not an answer: what showed is kept, and an agent
    is asked to follow up."""
    shown = visible(text)
    if failed or (stopped_by is None and finish_reason == FILTERED and shown):
        return ReplyEnd("failed", store_text=shown, alert=True, follow_up=False, empty=False)
    if stopped_by is None or stopped_by == CUT_AT_LENGTH:
        if shown:
            return ReplyEnd("completed", store_text=True, alert=False, follow_up=True,
                            empty=False)
        return ReplyEnd("failed", store_text=False, alert=True, follow_up=False, empty=True)
    return ReplyEnd("cancelled", store_text=shown, alert=stopped_by == SHUTDOWN,
                    follow_up=False, empty=False)
