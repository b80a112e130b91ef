"""``GET /api/v1/widget``: what the widget and the chat page show before anyone writes.

Public (no token) and readable from any site that embeds the widget: it carries the
branding, the languages' greeting texts, the pre-chat form and whether the team can
answer now. Nothing in it is about a visitor.
"""

from __future__ import annotations

from typing import Any

from customer_service.config import LANGUAGES, Config


def team_status(agents_online: bool) -> str:
    """``online`` when an agent can take a conversation now, else ``away``."""
    return "online" if agents_online else "away"


def widget_settings(config: Config, *, agents_online: bool) -> dict[str, Any]:
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
        "status": team_status(agents_online),
    }
