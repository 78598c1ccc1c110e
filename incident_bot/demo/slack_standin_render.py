"""The fake workspace read back as a person sees it in Slack, for the demo's narration and for test failures.

Messages with blocks show the blocks (their ``text`` is only the notification fallback), mentions and links
are resolved the way the Slack client displays them, and thread replies sit under their parent.
"""

from __future__ import annotations

import copy
import html
import re
from datetime import UTC, datetime
from typing import Any

from incident_bot.demo.slack_standin_state import Workspace

_NOTICES = {"channel_join", "channel_leave", "channel_topic", "channel_purpose"}
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def render_channel(ws: Workspace, channel_id: str) -> str:
    """Name, privacy, topic, purpose and members of a channel, for the demo's narration."""
    with ws.lock:
        channel = ws.channels[channel_id]
        members = ", ".join("@" + _user_name(ws, m) for m in channel.members)
        lines = [f"#{channel.name}" + (" (private)" if channel.is_private else "") + (
            " (archived)" if channel.is_archived else "")]
        lines += [f"Topic: {_mrkdwn(ws, channel.topic) or '-'}",
                  f"Purpose: {_mrkdwn(ws, channel.purpose) or '-'}", f"Members: {members}"]
        if channel.pins:
            lines.append(f"Pinned: {len(channel.pins)} message(s)")
        return "\n".join(lines)


def render_transcript(ws: Workspace, channel_id: str) -> str:
    """The channel as a member reads it: oldest first, thread replies under their parent, blocks as text."""
    with ws.lock:
        messages = copy.deepcopy(ws.channels[channel_id].messages)
        lines: list[str] = []
        for message in messages:
            is_reply = message.get("thread_ts") not in (None, message["ts"])
            if is_reply and message.get("subtype") != "thread_broadcast":
                continue
            lines.extend(_render_message(ws, message, indent=""))
            for reply in messages:
                if reply.get("thread_ts") == message["ts"] and reply["ts"] != message["ts"]:
                    lines.extend(_render_message(ws, reply, indent="    ↳ "))
        return "\n".join(lines)


def _render_message(ws: Workspace, message: dict[str, Any], indent: str) -> list[str]:
    when = datetime.fromtimestamp(float(message["ts"]), UTC).strftime("%H:%M:%S")
    author = _user_name(ws, message.get("user", ""))
    blocks = message.get("blocks")
    body = _blocks_text(ws, blocks) if blocks else [_mrkdwn(ws, message.get("text", ""))]
    body += [f"📎 {f.get('title') or f.get('name')}" for f in message.get("files", [])]
    if message.get("reactions"):
        body.append("  ".join(f":{r['name']}: {r['count']}" for r in message["reactions"]))
    flat = [line for chunk in body for line in chunk.split("\n")] or [""]
    if message.get("subtype") in _NOTICES:  # Slack shows these as grey notices, not as someone speaking
        return [f"{indent}[{when}] · {flat[0]}"]
    head = f"{indent}[{when}] {author}: {flat[0]}" + (" (edited)" if message.get("edited") else "")
    pad = " " * len(indent) + "  "
    return [head] + [pad + line for line in flat[1:]]


def _blocks_text(ws: Workspace, blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            out.append(f"# {_text(ws, block.get('text'))}")
        elif kind == "section":
            line = _text(ws, block.get("text"))
            if block.get("fields"):  # Slack lays fields out two to a row; a field's own lines read as one
                cells = [" ".join(_text(ws, f).split("\n")) for f in block["fields"]]
                rows = ["  |  ".join(cells[i:i + 2]) for i in range(0, len(cells), 2)]
                line = "\n".join(filter(None, [line, *rows]))
            if block.get("accessory"):
                line = f"{line} {_element(ws, block['accessory'])}".strip()
            out.append(line)
        elif kind == "context":
            out.append(" · ".join(_element(ws, e) for e in block.get("elements", [])))
        elif kind == "actions":
            out.append(" ".join(_element(ws, e) for e in block.get("elements", [])))
        elif kind == "divider":
            out.append("────────")
        elif kind == "image":
            out.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "rich_text":
            out.append(_rich_text(block))
        elif kind == "input":
            out.append(f"{_text(ws, block.get('label'))}: [input]")
    return out


def _element(ws: Workspace, element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind in ("mrkdwn", "plain_text"):
        return _text(ws, element)
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind == "button":
        return f"[{_text(ws, element.get('text'))}]"
    if kind and kind.endswith("_select"):
        return f"[{_text(ws, element.get('placeholder')) or 'select'} ▾]"
    return f"[{kind}]"


def _rich_text(node: dict[str, Any]) -> str:
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "link":
        return str(node.get("text") or node.get("url", ""))
    return "".join(_rich_text(child) for child in node.get("elements", []))


def _text(ws: Workspace, obj: Any) -> str:
    if not isinstance(obj, dict):
        return ""
    text = str(obj.get("text", ""))
    return _mrkdwn(ws, text) if obj.get("type") == "mrkdwn" else text


def _mrkdwn(ws: Workspace, text: str) -> str:
    """Resolve ``<@U..>``, ``<#C..|name>``, ``<!here>`` and ``<url|label>`` the way the Slack client displays
    them, then unescape ``&amp; &lt; &gt;``."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return "@" + _user_name(ws, target[1:])
        if target.startswith("#"):
            channel = ws.channels.get(target[1:])
            return "#" + (label or (channel.name if channel else target[1:]))
        if target.startswith("!"):
            return label or "@" + target[1:].split("^")[0]
        return f"{label} ({target})" if label else target

    return html.unescape(_LINK.sub(link, text))


def _user_name(ws: Workspace, user_id: str) -> str:
    user = ws.users.get(user_id)
    return user.name if user else user_id or "unknown"
