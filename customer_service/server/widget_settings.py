"""``GET /api/v1/widget``: what the widget and the chat page show before anyone writes.

Public (no token) and readable from any site that embeds the widget: it carries the
branding, the languages' greeting texts, the pre-chat form and whether the team can
answer now. Nothing in it is about a visitor. Cheap: the widget polls it while open (no
database read; the availability comes from the clock, the hub and the schedule parsed
at start, ``server/availability.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from customer_service.config import LANGUAGES, Config
from customer_service.server.availability import iso


def widget_settings(config: Config, *, status: str, back_at: datetime | None
                    ) -> dict[str, Any]:
    """``status``: ``online``, ``away`` or ``closed``; ``back_at``: the next opening when
    closed (None otherwise, or when it is not known)."""
    web = config.web
    return {
        "title": web.title,
        "logo_url": web.logo_url,
        "accent_color": web.accent_color,
        "show_embed_help": web.show_embed_help,
        "default_language": web.default_language,
        "languages": list(LANGUAGES),
        "prechat_fields": list(web.prechat_fields),
        "expected_reply": dict(web.expected_reply),
        "welcome": dict(config.auto_replies.welcome),
        "status": status,
        "back_at": iso(back_at),
        "timezone": config.hours.timezone if config.hours.enabled else None,
    }
