"""The state of the fake Slack workspace: users, channels, messages, files, views, and how to read them back.

Kept apart from the HTTP side (``slack_standin``) so that the Web API methods there read as "what Slack does";
the helpers at the end check argument values the way Slack does (Block Kit limits, pagination).
"""

from __future__ import annotations

import base64
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T0STANDIN"
APP_ID = "A0STANDIN"


class SlackError(Exception):
    """An ``{"ok": false, "error": ...}`` answer, raised by Web API methods before they change any state."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class User:
    id: str
    name: str
    email: str | None
    tz: str = "UTC"
    is_bot: bool = False
    deleted: bool = False

    def to_api(self) -> dict[str, Any]:
        try:
            offset = ZoneInfo(self.tz).utcoffset(datetime.now(UTC).replace(tzinfo=None))
        except (ZoneInfoNotFoundError, ValueError):
            offset = None
        profile: dict[str, Any] = {"real_name": self.name, "display_name": self.name, "team": TEAM_ID}
        if self.email:
            profile["email"] = self.email
        if self.is_bot:
            profile["bot_id"] = BOT_ID
        return {
            "id": self.id, "team_id": TEAM_ID, "name": self.name, "real_name": self.name,
            "deleted": self.deleted, "tz": self.tz, "tz_offset": int(offset.total_seconds()) if offset else 0,
            "is_bot": self.is_bot, "is_app_user": False, "profile": profile,
        }


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool
    creator: str
    created: int
    members: list[str]
    is_im: bool = False
    is_archived: bool = False
    topic: str = ""
    purpose: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)  # top-level and replies, oldest first
    pins: list[str] = field(default_factory=list)

    def to_api(self, viewer: str = BOT_USER_ID) -> dict[str, Any]:
        if self.is_im:
            other = next((m for m in self.members if m != BOT_USER_ID), BOT_USER_ID)
            return {"id": self.id, "is_im": True, "user": other, "created": self.created, "is_open": True}
        return {
            "id": self.id, "name": self.name, "name_normalized": self.name, "is_channel": not self.is_private,
            "is_group": False, "is_im": False, "is_mpim": False, "is_private": self.is_private,
            "is_archived": self.is_archived, "is_general": False, "created": self.created,
            "creator": self.creator,
            "is_member": viewer in self.members, "context_team_id": TEAM_ID,
            "topic": {"value": self.topic, "creator": self.creator, "last_set": 0},
            "purpose": {"value": self.purpose, "creator": self.creator, "last_set": 0},
        }


@dataclass
class UploadedFile:
    """A file from ``files.getUploadURLExternal``: ``content`` comes to the upload URL, the rest later."""

    id: str
    filename: str
    length: int
    title: str | None = None
    content: bytes | None = None
    channel_id: str | None = None
    completed: bool = False


def ts_to_micros(ts: Any) -> int:
    try:
        return int(Decimal(str(ts)) * 1_000_000)
    except (InvalidOperation, ValueError) as exc:
        raise SlackError("invalid_ts_latest") from exc


def micros_to_ts(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


class Workspace:
    """All workspace data behind one re-entrant lock; every reader gets copies, never live objects."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.files: dict[str, UploadedFile] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, str] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # bodies posted to response URLs, with their token
        self.socket_mode_url: str | None = None  # set by SocketModeStandIn
        self._last_ts = 0
        self._serial = 0
        # Seconds since the epoch; the demo replaces it with its scripted clock so transcripts repeat.
        self.clock: Callable[[], float] = time.time
        self.users[BOT_USER_ID] = User(BOT_USER_ID, "incident-bot", None, is_bot=True)

    def new_id(self, prefix: str) -> str:
        with self.lock:
            self._serial += 1
            return f"{prefix}{self._serial:09d}"

    def next_ts(self) -> str:
        """Wall-clock based like Slack's, but strictly increasing and unique even within one microsecond."""
        with self.lock:
            self._last_ts = max(int(self.clock() * 1_000_000), self._last_ts + 1)
            return micros_to_ts(self._last_ts)

    def user(self, user_id: Any) -> User:
        found = self.users.get(str(user_id or ""))
        if found is None:
            raise SlackError("user_not_found")
        return found

    def channel(self, ref: Any, *, by_name: bool = False, viewer: str = BOT_USER_ID) -> Channel:
        """Resolve a channel id; with ``by_name`` also ``#name`` or ``name`` of a public channel, which Slack
        accepts in ``chat.postMessage`` but not in the ``conversations.*`` methods."""
        key = str(ref or "")
        found = self.channels.get(key)
        if found is None and key and by_name:
            name = key.removeprefix("#")
            found = next((c for c in self.channels.values() if c.name == name and not c.is_private), None)
        if found is None or (found.is_private and viewer not in found.members):
            raise SlackError("channel_not_found")
        return found

    def channel_by_name(self, name: str) -> Channel | None:
        name = name.removeprefix("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def im_with(self, user_id: str) -> Channel:
        """The bot's direct-message channel with a user, opened on first use like ``conversations.open``."""
        self.user(user_id)
        for channel in self.channels.values():
            if channel.is_im and user_id in channel.members:
                return channel
        channel = Channel(self.new_id("D"), user_id, True, BOT_USER_ID, int(time.time()),
                          [BOT_USER_ID, user_id], is_im=True)
        self.channels[channel.id] = channel
        return channel

    def find_message(self, channel: Channel, ts: Any) -> dict[str, Any]:
        message = next((m for m in channel.messages if m["ts"] == str(ts)), None)
        if message is None:
            raise SlackError("message_not_found")
        return message

    def append_message(self, channel: Channel, message: dict[str, Any]) -> dict[str, Any]:
        """Store a message (a ts is assigned here) and keep the parent's thread summary up to date."""
        message = {"type": "message", "team": TEAM_ID, **message, "ts": self.next_ts()}
        thread_ts = message.get("thread_ts")
        if thread_ts:
            parent = next((m for m in channel.messages if m["ts"] == thread_ts), None)
            if parent is not None:
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["latest_reply"] = message["ts"]
                users = parent.setdefault("reply_users", [])
                if message.get("user") and message["user"] not in users:
                    users.append(message["user"])
        channel.messages.append(message)
        return message

    def system_message(self, channel: Channel, user_id: str, subtype: str, text: str) -> None:
        self.append_message(channel, {"subtype": subtype, "user": user_id, "text": text})

    def snapshot_messages(self, channel_id: str, *, include_system: bool) -> list[dict[str, Any]]:
        with self.lock:
            channel = self.channels.get(channel_id)
            if channel is None:
                raise KeyError(f"no channel {channel_id!r}")
            return copy.deepcopy([m for m in channel.messages if include_system or not _is_system(m)])

    def duplicate_messages(self) -> list[dict[str, Any]]:
        with self.lock:
            found: list[dict[str, Any]] = []
            for channel in self.channels.values():
                seen: dict[str, list[dict[str, Any]]] = {}
                for message in channel.messages:
                    payload = (message.get("metadata") or {}).get("event_payload") or {}
                    outbox_id = payload.get("outbox_id") if isinstance(payload, dict) else None
                    if outbox_id is not None:
                        seen.setdefault(str(outbox_id), []).append(message)
                for group in seen.values():
                    if len(group) > 1:
                        found.extend({**copy.deepcopy(m), "channel": channel.id} for m in group)
            return found


def _is_system(message: dict[str, Any]) -> bool:
    return message.get("subtype") in {"channel_join", "channel_topic", "channel_purpose", "channel_leave"}


# -- values of Web API arguments, checked the way Slack checks them ------------------------------------------


def flag(value: Any) -> bool:
    """A boolean argument as it arrives: JSON true, or "true"/"1" in a form."""
    return value in (True, 1, "1", "true", "True")


def id_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def message_content(p: dict[str, Any]) -> dict[str, Any]:
    """The text/blocks/attachments of a message, with the Block Kit limits Slack enforces."""
    content: dict[str, Any] = {}
    if p.get("text") is not None:
        content["text"] = str(p["text"])
        if len(content["text"]) > 40_000:
            raise SlackError("msg_too_long")
    blocks = p.get("blocks")
    if blocks:
        if not isinstance(blocks, list) or len(blocks) > 50 or not all(_block_ok(b) for b in blocks):
            raise SlackError("invalid_blocks")
        content["blocks"] = blocks
    if p.get("attachments"):
        content["attachments"] = p["attachments"]
    return content


def _block_ok(block: Any) -> bool:
    if not isinstance(block, dict) or not block.get("type"):
        return False
    text = block.get("text") if isinstance(block.get("text"), dict) else {}
    limit = {"header": 150, "section": 3000}.get(block["type"])
    return limit is None or len(str(text.get("text", ""))) <= limit


def view_arg(p: dict[str, Any], types: tuple[str, ...]) -> dict[str, Any]:
    view = p.get("view")
    if not isinstance(view, dict) or view.get("type") not in types or len(view.get("blocks", [])) > 100:
        raise SlackError("invalid_arguments")
    if view["type"] == "modal" and not view.get("title"):
        raise SlackError("invalid_arguments")
    return view


def as_listed(message: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    """A copy as history/replies return it: metadata only when ``include_all_metadata`` is set."""
    listed = copy.deepcopy(message)
    if not flag(p.get("include_all_metadata")):
        listed.pop("metadata", None)
    return listed


def page(items: list[Any], p: dict[str, Any], key: str) -> dict[str, Any]:
    """Cursor pagination like Slack's: an opaque ``next_cursor``, empty on the last page."""
    try:
        cursor = str(p.get("cursor") or "")
        start = int(base64.b64decode(cursor).decode().removeprefix("offset:")) if cursor else 0
    except ValueError as exc:
        raise SlackError("invalid_cursor") from exc
    try:
        limit = int(p.get("limit") or 100)
    except ValueError as exc:
        raise SlackError("invalid_limit") from exc
    limit = min(max(limit, 1), 1000)
    end = start + limit
    cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return {key: items[start:end], "response_metadata": {"next_cursor": cursor}}
