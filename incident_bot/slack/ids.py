"""Slack ids in a signed request, checked against the columns they are stored in.

An id longer than its column is refused (400), never cut: cut ids collide (two users become one member,
two events one delivery). Slack's own ids are 9-11 characters (event ids about 12).
"""

from __future__ import annotations

from typing import Any

from storage.limits import EVENT_ID_LEN, SLACK_ID_LEN

# Where Slack puts ids in slash commands (form fields), Events API envelopes and interaction payloads.
_PATHS: tuple[tuple[tuple[str, ...], int], ...] = (
    *(((key,), SLACK_ID_LEN) for key in ("user_id", "channel_id", "team_id", "enterprise_id", "api_app_id")),
    (("event_id",), EVENT_ID_LEN),
    *(((obj, "id"), SLACK_ID_LEN) for obj in ("user", "channel", "team", "enterprise")),
    (("user", "team_id"), SLACK_ID_LEN),
    (("container", "channel_id"), SLACK_ID_LEN),
    (("view", "team_id"), SLACK_ID_LEN),
    *((("event", key), SLACK_ID_LEN) for key in ("user", "channel", "item_user", "team")),
    (("event", "item", "channel"), SLACK_ID_LEN),
)


def over_long_id(parsed: dict[str, Any]) -> str | None:
    """The dotted path of the first id longer than its column, or None."""
    for path, limit in _PATHS:
        node: Any = parsed
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and len(node) > limit:
            return ".".join(path)
    return None
