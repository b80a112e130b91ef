"""The context window sent upstream: the system prompt plus the newest messages that fit.

Token counts are approximate (about four characters a token, plus a few per
message for the chat format): no tokenizer is downloaded at run time, and the
estimate errs on the generous side so the real count stays under the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from customer_service.core.models import Role

TOKENS_PER_MESSAGE = 4
CONTEXT_MESSAGES = 200
"""Most messages read from storage to build a context: bounds memory per reply."""

ChatMessage = dict[str, str]


def estimate_tokens(text: str) -> int:
    """An upper-leaning estimate: about 4 characters a token, never 0 for non-empty text."""
    return (len(text) + 3) // 4


class ContextMessage(Protocol):
    """What the context is built from: a ``StoredMessage``, or a cached
    ``core.context_cache.WindowMessage``."""

    @property
    def sender_role(self) -> Role: ...

    @property
    def content(self) -> str: ...


def role_for(sender_role: Role) -> str | None:
    """How a sender appears to the model; None for messages it should not see."""
    if sender_role is Role.VISITOR:
        return "user"
    if sender_role in (Role.AI, Role.AGENT):
        return "assistant"
    return None


def upstream_role(message: ContextMessage) -> str | None:
    """How a stored message appears to the model; None for messages it should not see."""
    return role_for(message.sender_role)


def build_context(system_prompt: str, history: Sequence[ContextMessage],
                  max_tokens: int) -> list[ChatMessage]:
    """System prompt first, then the newest messages (oldest first) within ``max_tokens``.

    The newest message is always included, cut from the front if it alone is too long.
    """
    budget = max_tokens - estimate_tokens(system_prompt) - TOKENS_PER_MESSAGE
    chosen: list[ChatMessage] = []
    for message in reversed(history):
        role = upstream_role(message)
        if role is None or not message.content:
            continue
        cost = estimate_tokens(message.content) + TOKENS_PER_MESSAGE
        if cost > budget:
            if not chosen and budget > TOKENS_PER_MESSAGE:
                keep = (budget - TOKENS_PER_MESSAGE) * 4
                chosen.append({"role": role, "content": message.content[-keep:]})
            break
        chosen.append({"role": role, "content": message.content})
        budget -= cost
    chosen.reverse()
    return [{"role": "system", "content": system_prompt}, *chosen]
