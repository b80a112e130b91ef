"""Auto-replies and the team's availability: pure decisions, no clock, no I/O.

- ``availability``: what the widget's header says (``online``, ``away``, ``closed``).
- ``welcome_reply``: the greeting stored when a conversation begins (before the visitor's
  first message).
- ``unavailable_reply``: the away or closed message stored right after the visitor's first
  message when nobody can answer (no agent available, and the AI does not answer).

Each auto-reply is stored as a ``system`` message whose client id names the kind and the
conversation (``auto:welcome:42``): the store's unique (role, sender, client id) key then
keeps it to one per conversation, whichever socket or instance posts it (a second post is
answered with the first one, as a resend is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

Status = Literal["online", "away", "closed"]
Kind = Literal["welcome", "away", "closed"]

WELCOME: Final = "welcome"
AWAY: Final = "away"
CLOSED: Final = "closed"

_WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {"today": "today at {time}", "tomorrow": "tomorrow at {time}",
           "weekday": "{day} {time}", "date": "on {date} at {time}", "later": "later",
           "zone": " ({zone})"},
    "zh-CN": {"today": "今天 {time}", "tomorrow": "明天 {time}", "weekday": "{day} {time}",
              "date": "{date} {time}", "later": "稍后", "zone": "（{zone}）"},
}
_DAY_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "zh-CN": ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"),
}


@dataclass(frozen=True, slots=True)
class TeamState:
    """What decides the auto-replies at one instant."""

    hours_open: bool
    """Within business hours (always true when ``[hours]`` is off)."""
    agents_available: bool
    """An agent can take the conversation now."""
    ai_answers: bool
    """The AI answers a new conversation's visitor messages."""
    back_at: datetime | None = None
    """When closed: the next opening, in the team's time zone (None: not known)."""


@dataclass(frozen=True, slots=True)
class AutoReply:
    kind: Kind
    text: str

    def client_id(self, conversation_id: int) -> str:
        return auto_client_id(self.kind, conversation_id)


def auto_client_id(kind: Kind, conversation_id: int) -> str:
    """The client id of a conversation's auto-reply of ``kind``: one per conversation."""
    return f"auto:{kind}:{conversation_id}"


def availability(state: TeamState) -> Status:
    """``closed`` outside business hours; else ``online`` when an agent (or the AI) can
    answer, ``away`` when nobody can."""
    if not state.hours_open:
        return "closed"
    return "online" if state.agents_available or state.ai_answers else "away"


def resolve_language(wanted: str | None, languages: tuple[str, ...], default: str) -> str:
    """A known language (exact, else by its base: ``zh`` → ``zh-CN``), else ``default``."""
    if wanted:
        lower = wanted.lower()
        for language in languages:
            if language.lower() == lower:
                return language
        base = lower.split("-")[0]
        for language in languages:
            if language.lower().split("-")[0] == base:
                return language
    return default


def text_for(table: Mapping[str, str], language: str, default: str) -> str | None:
    """The table's text in ``language``: a language missing from the table gets the default
    language's text; an empty (or blank) text means no message (None)."""
    text = table[language] if language in table else table.get(default, "")
    return text if text.strip() else None


def describe_back(back_at: datetime | None, now: datetime, language: str) -> str:
    """When the team is back, in words of ``language`` and the team's time zone (the
    stored message cannot know the visitor's; the widget's header shows local time)."""
    words = _WORDS.get(language, _WORDS["en"])
    if back_at is None:
        return words["later"]
    local_now = now.astimezone(back_at.tzinfo)
    days = (back_at.date() - local_now.date()).days
    clock = back_at.strftime("%H:%M")
    if days <= 0:
        said = words["today"].format(time=clock)
    elif days == 1:
        said = words["tomorrow"].format(time=clock)
    elif days < 7:
        said = words["weekday"].format(day=_DAY_NAMES.get(language, _DAY_NAMES["en"])[
            back_at.weekday()], time=clock)
    else:
        said = words["date"].format(date=back_at.date().isoformat(), time=clock)
    zone = str(back_at.tzinfo) if back_at.tzinfo is not None else ""
    return said + (words["zone"].format(zone=zone) if zone else "")


def welcome_reply(welcome: Mapping[str, str], language: str, default: str) -> AutoReply | None:
    """The greeting stored when the conversation begins, or None (no text for it)."""
    text = text_for(welcome, language, default)
    return AutoReply(WELCOME, text) if text is not None else None


def unavailable_reply(state: TeamState, away: Mapping[str, str], closed: Mapping[str, str],
                      *, language: str, default: str, now: datetime) -> AutoReply | None:
    """After the visitor's first message: the closed message outside business hours, the
    away message when no agent is available; nothing when someone (or the AI) answers."""
    if state.ai_answers:
        return None
    if not state.hours_open:
        text = text_for(closed, language, default)
        if text is None:
            return None
        return AutoReply(CLOSED, text.replace("{back}", describe_back(state.back_at, now,
                                                                       language)))
    if state.agents_available:
        return None
    text = text_for(away, language, default)
    return AutoReply(AWAY, text) if text is not None else None

