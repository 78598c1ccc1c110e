"""Escaping for Slack mrkdwn: text from outside must be shown, never acted on.

Slack only needs ``&``, ``<`` and ``>`` escaped: with them escaped, ``<!channel>``, ``<@U123>`` and
``<https://evil|click>`` render as literal text instead of pinging or forging a link.
"""

from __future__ import annotations


def escape(text: str | None) -> str:
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str) -> str:
    """A link whose label is escaped; a URL with characters that would break the syntax is dropped."""
    if not url or any(c in url for c in "<>| \n") or not url.startswith(("https://", "http://")):
        return escape(label)
    return f"<{url}|{escape(label).replace('|', '¦')}>"


def user(user_id: str | None) -> str:
    if not user_id or not user_id.isalnum():
        return "someone"
    return f"<@{user_id}>"


def channel(channel_id: str | None, fallback: str = "the incident channel") -> str:
    if not channel_id or not channel_id.isalnum():
        return escape(fallback)
    return f"<#{channel_id}>"


def truncate(text: str, limit: int, suffix: str = "…") -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(suffix))] + suffix
