"""What each Slack Web API method does to the fake workspace, and the errors it answers instead.

One method per Web API method, registered under its Slack name with :func:`web_api`. They run with the
workspace lock held and raise :class:`SlackError` before changing anything, so a refused call leaves no trace.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from typing import Any

from incident_bot.demo.slack_standin_state import (
    APP_ID,
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    Channel,
    SlackError,
    UploadedFile,
    Workspace,
    as_listed,
    flag,
    id_list,
    message_content,
    page,
    ts_to_micros,
    view_arg,
)

Handler = Callable[["SlackWebApi", dict[str, Any]], dict[str, Any]]
_METHODS: dict[str, Handler] = {}
_NAME = re.compile(r"[a-z0-9_-]+")


def web_api(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _METHODS[name] = handler
        return handler

    return register


class SlackWebApi:
    """The Web API over a :class:`Workspace`; ``upload_url(file_id)`` is where a file's bytes get POSTed."""

    def __init__(self, ws: Workspace, upload_url: Callable[[str], str]) -> None:
        self.ws = ws
        self.upload_url = upload_url

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = _METHODS.get(method)
        if handler is None:
            raise SlackError("unknown_method")
        with self.ws.lock:
            return handler(self, params)

    @web_api("auth.test")
    def auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://standin.slack.com/", "team": "Stand-in", "user": "incident-bot",
                "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
                "is_enterprise_install": False}

    @web_api("apps.connections.open")
    def apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if not self.ws.socket_mode_url:  # Socket Mode is off for this app
            raise SlackError("not_allowed_token_type")
        return {"url": self.ws.socket_mode_url}

    @web_api("conversations.create")
    def conversations_create(self, p: dict[str, Any]) -> dict[str, Any]:
        name = str(p.get("name") or "")
        if not name:
            raise SlackError("invalid_name_required")
        if len(name) > 80:
            raise SlackError("invalid_name_maxlength")
        if not _NAME.fullmatch(name):
            raise SlackError("invalid_name_specials")
        if not re.search(r"[a-z0-9]", name):
            raise SlackError("invalid_name")
        if self.ws.channel_by_name(name) or any(u.name == name for u in self.ws.users.values()):
            raise SlackError("name_taken")
        channel = Channel(self.ws.new_id("C"), name, flag(p.get("is_private")), BOT_USER_ID, int(time.time()),
                          [BOT_USER_ID])
        self.ws.channels[channel.id] = channel
        return {"channel": channel.to_api()}

    @web_api("conversations.setTopic")
    def conversations_setTopic(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._set_text(p, "topic")

    @web_api("conversations.setPurpose")
    def conversations_setPurpose(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._set_text(p, "purpose")

    def _set_text(self, p: dict[str, Any], which: str) -> dict[str, Any]:
        channel = self.joined(p.get("channel"))
        value = str(p.get(which) or "")
        if len(value) > 250:
            raise SlackError("too_long")
        setattr(channel, which, value)
        self.ws.system_message(channel, BOT_USER_ID, f"channel_{which}",
                               f"<@{BOT_USER_ID}> set the channel {which}: {value}")
        return {"channel": channel.to_api()}

    @web_api("conversations.invite")
    def conversations_invite(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.joined(p.get("channel"))
        if channel.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        users = id_list(p.get("users"))
        if not users:
            raise SlackError("no_user")
        for user_id in users:
            self.ws.user(user_id)
            if user_id == BOT_USER_ID:
                raise SlackError("cant_invite_self")
        new = [u for u in dict.fromkeys(users) if u not in channel.members]
        if not new:
            raise SlackError("already_in_channel")
        for user_id in new:
            channel.members.append(user_id)
            self.ws.system_message(channel, user_id, "channel_join", f"<@{user_id}> has joined the channel")
        return {"channel": channel.to_api()}

    @web_api("conversations.join")
    def conversations_join(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.channel(p.get("channel"))
        if channel.is_private or channel.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise SlackError("is_archived")
        if BOT_USER_ID in channel.members:
            return {"channel": channel.to_api(), "warning": "already_in_channel",
                    "response_metadata": {"warnings": ["already_in_channel"]}}
        channel.members.append(BOT_USER_ID)
        self.ws.system_message(channel, BOT_USER_ID, "channel_join",
                               f"<@{BOT_USER_ID}> has joined the channel")
        return {"channel": channel.to_api()}

    @web_api("conversations.info")
    def conversations_info(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.channel(p.get("channel"))
        info = channel.to_api()
        if flag(p.get("include_num_members")):
            info["num_members"] = len(channel.members)
        return {"channel": info}

    @web_api("conversations.members")
    def conversations_members(self, p: dict[str, Any]) -> dict[str, Any]:
        return page(list(self.ws.channel(p.get("channel")).members), p, "members")

    @web_api("conversations.list")
    def conversations_list(self, p: dict[str, Any]) -> dict[str, Any]:
        types = set(str(p.get("types") or "public_channel").split(","))

        def listed(c: Channel) -> bool:
            if c.is_archived and flag(p.get("exclude_archived")):
                return False
            if c.is_im:
                return "im" in types
            if c.is_private:
                return "private_channel" in types and BOT_USER_ID in c.members
            return "public_channel" in types

        return page([c.to_api() for c in self.ws.channels.values() if listed(c)], p, "channels")

    @web_api("conversations.history")
    def conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.joined(p.get("channel"))
        oldest, latest = p.get("oldest"), p.get("latest")
        inclusive = flag(p.get("inclusive"))

        def in_range(m: dict[str, Any]) -> bool:
            ts = ts_to_micros(m["ts"])
            low = oldest is None or ts > ts_to_micros(oldest) or (inclusive and ts == ts_to_micros(oldest))
            high = latest is None or ts < ts_to_micros(latest) or (inclusive and ts == ts_to_micros(latest))
            return low and high

        top = [m for m in channel.messages if m.get("thread_ts") in (None, m["ts"])
               or m.get("subtype") == "thread_broadcast"]
        found = [as_listed(m, p) for m in reversed(top) if in_range(m)]
        listing = page(found, p, "messages")
        return {**listing, "has_more": bool(listing["response_metadata"]["next_cursor"])}

    @web_api("conversations.replies")
    def conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.joined(p.get("channel"))
        ts = str(p.get("ts") or "")
        if not any(m["ts"] == ts for m in channel.messages):
            raise SlackError("thread_not_found")
        thread = [as_listed(m, p) for m in channel.messages if m["ts"] == ts or m.get("thread_ts") == ts]
        listing = page(thread, p, "messages")
        return {**listing, "has_more": bool(listing["response_metadata"]["next_cursor"])}

    @web_api("chat.postMessage")
    def chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.postable(p.get("channel"))
        content = message_content(p)
        if not content.get("text") and not content.get("blocks") and not content.get("attachments"):
            raise SlackError("no_text")
        metadata = p.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and metadata.get("event_type")):
            raise SlackError("invalid_metadata_format")
        message: dict[str, Any] = {"user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID, "text": "",
                                   **content}
        if p.get("thread_ts"):
            message["thread_ts"] = str(p["thread_ts"])
            if flag(p.get("reply_broadcast")):
                message["subtype"] = "thread_broadcast"
        if metadata is not None:
            message["metadata"] = metadata
        stored = self.ws.append_message(channel, message)
        return {"channel": channel.id, "ts": stored["ts"], "message": copy.deepcopy(stored)}

    @web_api("chat.postEphemeral")
    def chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.postable(p.get("channel"))
        user = self.ws.user(p.get("user"))
        if user.id not in channel.members:
            raise SlackError("user_not_in_channel")
        content = message_content(p)
        if not content.get("text") and not content.get("blocks"):
            raise SlackError("no_text")
        ts = self.ws.next_ts()
        self.ws.ephemeral.append({"channel": channel.id, "user": user.id, "ts": ts, **content})
        return {"message_ts": ts}

    @web_api("chat.update")
    def chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.channel(p.get("channel"))
        message = self.ws.find_message(channel, p.get("ts"))
        if message.get("user") != BOT_USER_ID or message.get("subtype"):
            raise SlackError("cant_update_message")
        content = message_content(p)
        if not content and p.get("metadata") is None:
            raise SlackError("no_text")
        message.update(content)
        if isinstance(p.get("metadata"), dict):
            message["metadata"] = p["metadata"]
        message["edited"] = {"user": BOT_USER_ID, "ts": self.ws.next_ts()}
        return {"channel": channel.id, "ts": message["ts"], "text": message.get("text", ""),
                "message": copy.deepcopy(message)}

    @web_api("chat.getPermalink")
    def chat_getPermalink(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.channel(p.get("channel"))
        message = self.ws.find_message(channel, p.get("message_ts"))
        link = f"https://standin.slack.com/archives/{channel.id}/p{message['ts'].replace('.', '')}"
        if message.get("thread_ts") not in (None, message["ts"]):
            link += f"?thread_ts={message['thread_ts']}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    @web_api("users.lookupByEmail")
    def users_lookupByEmail(self, p: dict[str, Any]) -> dict[str, Any]:
        email = str(p.get("email") or "").lower()
        user = next((u for u in self.ws.users.values()
                     if u.email and u.email.lower() == email and not u.deleted), None)
        if user is None:
            raise SlackError("users_not_found")
        return {"user": user.to_api()}

    @web_api("users.info")
    def users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"user": self.ws.user(p.get("user")).to_api()}

    @web_api("users.list")
    def users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        members = [u.to_api() for u in self.ws.users.values()]
        return {**page(members, p, "members"), "cache_ts": int(time.time())}

    @web_api("views.open")
    @web_api("views.push")
    def views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("trigger_id"):
            raise SlackError("invalid_arguments")
        return {"view": self._store_view(view_arg(p, ("modal",)))}


    @web_api("views.update")
    def views_update(self, p: dict[str, Any]) -> dict[str, Any]:
        view = view_arg(p, ("modal", "home"))
        external_id = p.get("external_id")
        current = self.ws.views.get(str(p.get("view_id") or "")) or next(
            (v for v in self.ws.views.values() if external_id and v["external_id"] == external_id), None)
        if current is None:
            raise SlackError("not_found")
        if p.get("hash") and p["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._store_view(view, current)}

    @web_api("views.publish")
    def views_publish(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.ws.user(p.get("user_id"))
        current = self.ws.views.get(self.ws.home_views.get(user.id, ""))
        if current and p.get("hash") and p["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        stored = self._store_view(view_arg(p, ("home",)), current)
        self.ws.home_views[user.id] = stored["id"]
        return {"view": stored}

    def _store_view(self, view: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
        view_id = current["id"] if current else self.ws.new_id("V")
        stored = {
            "id": view_id, "team_id": TEAM_ID, "type": view["type"], "title": view.get("title"),
            "blocks": view.get("blocks", []), "close": view.get("close"), "submit": view.get("submit"),
            "private_metadata": view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id") or (current or {}).get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{self.ws.new_id('h')}", "root_view_id": view_id,
            "previous_view_id": None, "app_id": APP_ID, "bot_id": BOT_ID,
        }
        self.ws.views[view_id] = stored
        return copy.deepcopy(stored)

    @web_api("files.getUploadURLExternal")
    def files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            filename, length = str(p["filename"]), int(p["length"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SlackError("invalid_arguments") from exc
        file_id = self.ws.new_id("F")
        self.ws.files[file_id] = UploadedFile(file_id, filename, length)
        return {"upload_url": self.upload_url(file_id), "file_id": file_id}

    @web_api("files.completeUploadExternal")
    def files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        entries = p.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        uploads = [self.ws.files.get(str(e.get("id"))) for e in entries if isinstance(e, dict)]
        missing = any(u is None or u.content is None or u.completed for u in uploads)
        if missing or len(uploads) != len(entries):
            raise SlackError("file_not_found")
        channel = self.joined(p["channel_id"]) if p.get("channel_id") else None
        shown = []
        for entry, upload in zip(entries, uploads, strict=True):
            assert upload is not None
            upload.title, upload.completed = entry.get("title") or upload.filename, True
            upload.channel_id = channel.id if channel else None
            shown.append({"id": upload.id, "name": upload.filename, "title": upload.title,
                          "size": len(upload.content or b""), "permalink": f"https://standin.slack.com/files/{upload.id}"})
        if channel is not None:
            message = {"user": BOT_USER_ID, "text": str(p.get("initial_comment") or ""), "files": shown,
                       "upload": True}
            if p.get("thread_ts"):
                message["thread_ts"] = str(p["thread_ts"])
            self.ws.append_message(channel, message)
        return {"files": shown}

    @web_api("reactions.add")
    def reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self.ws.find_message(self.ws.channel(p.get("channel")), p.get("timestamp"))
        name = str(p.get("name") or "").strip(":")
        if not name:
            raise SlackError("invalid_name")
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction and BOT_USER_ID in reaction["users"]:
            raise SlackError("already_reacted")
        if reaction is None:
            reactions.append(reaction := {"name": name, "users": [], "count": 0})
        reaction["users"].append(BOT_USER_ID)
        reaction["count"] += 1
        return {}

    @web_api("pins.add")
    def pins_add(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self.ws.channel(p.get("channel"))
        message = self.ws.find_message(channel, p.get("timestamp"))
        if message["ts"] in channel.pins:
            raise SlackError("already_pinned")
        channel.pins.append(message["ts"])
        message["pinned_to"] = [channel.id]
        return {}

    # -- channel access rules --------------------------------------------------------------------------------

    def joined(self, ref: Any) -> Channel:
        """Methods that act in a channel need the bot to be in it (``not_in_channel`` otherwise)."""
        channel = self.ws.channel(ref)
        if BOT_USER_ID not in channel.members:
            raise SlackError("not_in_channel")
        return channel

    def postable(self, ref: Any) -> Channel:
        """Posting takes ids, public channel names, or a user id (the bot's DM); public channels need no join
        (``chat:write.public``)."""
        if isinstance(ref, str) and ref.startswith(("U", "W")) and ref in self.ws.users:
            return self.ws.im_with(ref)
        channel = self.ws.channel(ref, by_name=True)
        if channel.is_archived:
            raise SlackError("is_archived")
        return channel
