"""Slack's outbox job kinds: every Slack Web API call the bot makes (and ``response_url`` replies).

Each function takes a claimed row and returns a :class:`Delivered` (what to store) or raises:
- :class:`Permanent` for a call that can never succeed (the row is parked as dead),
- ``SlackApiError`` / connection errors, which :func:`classify` turns into retry, wait or give up.

Exactly-once after a crash or a timeout: every message carries the outbox id in its Slack
``metadata``; before repeating an *uncertain* post, the channel history is searched for it.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from incident_bot.core.naming import channel_name
from incident_bot.core.text import clean
from incident_bot.pipeline.jobs import (
    Context,
    Delivered,
    Failure,
    JobKind,
    Permanent,
    RetryLater,
    resolve_placeholder,
)
from incident_bot.slack import intents, messages
from incident_bot.slack.mrkdwn import from_slack
from incident_bot.usecases import directory
from incident_bot.usecases import incident_changes as svc
from incident_bot.usecases import similar as similar_svc
from incident_bot.usecases.runner import Session
from storage.models import Incident, OutboxMessage

log = logging.getLogger(__name__)
METADATA_EVENT = "incident_bot_outbox"
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
    "team_access_not_granted_temporarily", "timeout",
})


def _already_posted(ctx: Context, channel: str, row: OutboxMessage) -> dict[str, Any] | None:
    """Find a message this row posted before (its first attempt's fate is unknown)."""
    oldest = (row.created_at - timedelta(minutes=5)).timestamp()
    cursor = None
    for _ in range(10):
        try:
            resp = ctx.slack.conversations_history(channel=channel, oldest=f"{oldest:.6f}", limit=200,
                                                   include_all_metadata=True, cursor=cursor)
        except SlackApiError as exc:
            if exc.response.get("error") != "not_in_channel":
                raise
            # With chat:write.public a bot posts to public channels it is not in, but can only read the
            # history of channels it is in: join, then look.
            ctx.slack.conversations_join(channel=channel)
            continue
        for msg in resp.get("messages", []):
            meta = msg.get("metadata") or {}
            if meta.get("event_type") == METADATA_EVENT and \
                    (meta.get("event_payload") or {}).get("outbox_id") == row.id:
                return {"channel": channel, "ts": msg.get("ts")}
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


def post_message(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    # An intent is drawn now (slack/intents.py); a row queued before intents is sent as stored.
    p = intents.draw(row.payload, inc)
    capture = p.pop("capture", None)
    history = p.pop("history", None)
    channel = resolve_placeholder(p.pop("channel"), inc, "chat.postMessage")
    if "thread_ts" in p:
        p["thread_ts"] = resolve_placeholder(p["thread_ts"], inc, "chat.postMessage thread")
    learned = None
    if isinstance(history, dict) and inc is not None and inc.id is not None and ctx.history is not None:
        learned = ctx.history(inc)  # read now, in the outbox: never on the accept path or in the fold
    # A recurrence shown in the channel goes on the timeline too, in the transaction that marks this done.
    flagged = _flagged(inc, learned)
    if uncertain and channel.startswith(("C", "G", "D")):
        found = _already_posted(ctx, channel, row)
        if found:
            log.info("outbox %s: already posted before a crash/timeout, not posting again", row.id)
            return replace(_captured(found, capture), store=flagged)
    if learned is not None:
        p["blocks"] = messages.with_history(p.get("blocks") or [], learned, history.get("web_base_url"))
    meta = {"event_type": METADATA_EVENT, "event_payload": {"outbox_id": row.id}}
    try:
        resp = ctx.slack.chat_postMessage(channel=channel, metadata=meta, unfurl_links=False, **p)
    except SlackApiError as exc:
        if exc.response.get("error") == "not_in_channel":
            # A public announce channel the bot was not added to: join it and post.
            ctx.slack.conversations_join(channel=channel)
            resp = ctx.slack.chat_postMessage(channel=channel, metadata=meta, unfurl_links=False, **p)
        else:
            raise
    return replace(_captured({"channel": resp.get("channel"), "ts": resp.get("ts")}, capture), store=flagged)


def _flagged(inc: Incident | None, learned: Any) -> Callable[[Session], None] | None:
    rec = getattr(learned, "recurrence", None)
    if inc is None or inc.id is None or rec is None:
        return None
    incident_id = inc.id
    return lambda session: similar_svc.record_recurrence(session, incident_id, rec)


def _captured(result: dict[str, Any], capture: str | None) -> Delivered:
    updates = {}
    if capture == "announce":
        updates = {"announce_channel_id": result.get("channel"), "announce_ts": result.get("ts")}
    return Delivered(result=result, incident_updates=updates)


def create_channel(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    if inc is None:
        raise Permanent("conversations.create without an incident")
    if inc.slack_channel_id:
        return Delivered(result={"channel": inc.slack_channel_id, "skipped": "exists"})
    name = row.payload["name"]
    for n in range(2, 12):
        try:
            resp = ctx.slack.conversations_create(name=name, is_private=bool(row.payload.get("is_private")))
            ch = resp["channel"]
            return Delivered(result={"channel": ch["id"], "name": ch["name"]},
                             members=(ch["id"], [u for u in [ctx.bot_user_id] if u]),
                             incident_updates={"slack_channel_id": ch["id"], "slack_channel_name": ch["name"]})
        except SlackApiError as exc:
            if exc.response.get("error") != "name_taken":
                raise
            if uncertain:
                adopted = _adopt_own_channel(ctx, name)
                if adopted:
                    return Delivered(result={"channel": adopted, "name": name, "adopted": True},
                                     incident_updates={"slack_channel_id": adopted, "slack_channel_name": name})
            name = channel_name(inc.number, inc.title, suffix=str(n))
    raise Permanent("conversations.create: every candidate channel name is taken")


def _adopt_own_channel(ctx: Context, name: str) -> str | None:
    """Our first attempt may have created the channel before the answer was lost: take it back."""
    cursor = None
    for _ in range(20):
        resp = ctx.slack.conversations_list(types="public_channel,private_channel", limit=1000,
                                            exclude_archived=True, cursor=cursor)
        for ch in resp.get("channels", []):
            if ch.get("name") == name and ch.get("creator") == ctx.bot_user_id:
                return ch.get("id")
        cursor = (resp.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    return None


def set_topic(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """Set the topic the incident had when this row was queued, so it never runs ahead of the messages
    queued before it. A later topic supersedes a pending one (``usecases.incidents.set_topic``)."""
    p = intents.draw(row.payload, inc)
    channel = resolve_placeholder(p["channel"], inc, "conversations.setTopic")
    ctx.slack.conversations_setTopic(channel=channel, topic=p["topic"])
    return Delivered(result={"channel": channel})


def invite(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    channel = resolve_placeholder(row.payload["channel"], inc, "conversations.invite")
    users = [u for u in str(row.payload["users"]).split(",") if u and u != ctx.bot_user_id]
    if not users:
        return Delivered(result={"skipped": "nobody to invite"})
    try:
        ctx.slack.conversations_invite(channel=channel, users=",".join(users))
    except SlackApiError as exc:
        if exc.response.get("error") not in ("already_in_channel", "cant_invite_self"):
            raise
    return Delivered(result={"invited": users}, members=(channel, users))


def post_ephemeral(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    p = {k: resolve_placeholder(v, inc, "chat.postEphemeral") for k, v in row.payload.items()}
    resp = ctx.slack.chat_postEphemeral(**p)
    return Delivered(result={"message_ts": resp.get("message_ts")})


def respond(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """The outcome of a command or a click, through the ``response_url`` Slack gave with it (valid 30
    minutes, 5 uses): it reaches the user even where the bot cannot post (a non-member's click)."""
    p = dict(row.payload)
    url = str(p.pop("response_url", ""))
    if not _allowed_response_url(url, ctx.respond_hosts):
        raise Permanent("response_url is not a Slack URL")
    resp = WebhookClient(url, timeout=10).send_dict({"response_type": "ephemeral", **p})
    if resp.status_code == 429:
        raise RetryLater("response_url: 429", retry_after=_header_seconds(resp.headers))
    if resp.status_code >= 500:
        raise RetryLater(f"response_url: HTTP {resp.status_code}")
    if resp.status_code >= 400:
        raise Permanent(f"response_url refused: HTTP {resp.status_code} {resp.body[:100]}")
    return Delivered(result={"responded": True})


def _allowed_response_url(url: str, hosts: tuple[str, ...]) -> bool:
    """Slack's own hosts over HTTPS; the configured Web API host (a stand-in) too, in plain HTTP only on
    loopback."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = parts.hostname or ""
    if parts.scheme == "https":
        return host.endswith(".slack.com") or host in hosts
    return parts.scheme == "http" and host in hosts and host in ("127.0.0.1", "localhost", "::1")


def publish_view(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    ctx.slack.views_publish(user_id=row.payload["user_id"], view=row.payload["view"])
    return Delivered(result={"user_id": row.payload["user_id"]})


def _ts_time(ts: str) -> datetime:
    return datetime.fromtimestamp(float(ts), UTC)


def pin_to_timeline(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    """Add a pinned message to the timeline at the message's own time, with its author, once."""
    if inc is None:
        raise Permanent("timeline.pin without an incident")
    channel, ts = row.payload["channel"], row.payload["ts"]
    resp = ctx.slack.conversations_history(channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1)
    found = [m for m in resp.get("messages", []) if m.get("ts") == ts]
    if not found:
        # A reply in a thread is not in the channel history: look in the thread.
        try:
            replies = ctx.slack.conversations_replies(channel=channel, ts=ts, limit=1)
            found = [m for m in replies.get("messages", []) if m.get("ts") == ts]
        except SlackApiError as exc:
            if exc.response.get("error") != "thread_not_found":
                raise
    if not found:
        raise Permanent("the pinned message no longer exists")
    msg = found[0]
    author = msg.get("user") or row.payload.get("author") or msg.get("bot_id")
    # A message is Slack mrkdwn: kept as such (a timeline row of source "slack"), mass mentions neutralised.
    text = from_slack(clean(msg.get("text")))

    def store(session: Session) -> None:
        svc.pinned(session, inc, channel_id=channel, ts=ts, at=_ts_time(ts), author=author, text=text)

    return Delivered(result={"ts": ts}, store=store)


def user_info(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    """Cache a user's display name, email and time zone (ids stay the keys everywhere)."""
    uid = row.payload["user"]
    u = ctx.slack.users_info(user=uid)["user"]
    profile = u.get("profile") or {}

    name = profile.get("display_name") or u.get("real_name") or u.get("name")

    def store(session: Session) -> None:
        directory.cache_user(session, uid, name=name, email=profile.get("email"), tz=u.get("tz"))

    return Delivered(result={"user": uid}, store=store)


def upload_file(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    """files.upload_v2 (getUploadURLExternal + upload + completeUploadExternal), e.g. the RCA."""
    p = row.payload
    channel = resolve_placeholder(p["channel"], inc, "files.upload_v2")
    resp = ctx.slack.files_upload_v2(channel=channel, content=p["content"], filename=p["filename"],
                                     title=p.get("title"), initial_comment=p.get("initial_comment"))
    return Delivered(result={"file": (resp.get("file") or {}).get("id")})




def classify(exc: BaseException) -> Failure | None:
    """Slack's answers: 429 waits Retry-After (every row of the method), 5xx and transient errors retry
    with backoff, anything else can never succeed (``channel_not_found``, ``invalid_auth``...)."""
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        data = getattr(exc.response, "data", None)
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        if status == 429 or error == "ratelimited":
            return Failure("rate_limited", "429 Retry-After", retry_after=_retry_after(exc))
        if status >= 500 or error in TRANSIENT_ERRORS:
            return Failure("retry", f"HTTP {status} {error}".strip())
        return Failure("permanent", error or f"HTTP {status}")
    if isinstance(exc, (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)):
        return Failure("retry", f"{exc.__class__.__name__}: {exc}")
    return None


def _retry_after(exc: SlackApiError) -> float:
    return _header_seconds(getattr(exc.response, "headers", {}) or {})


def _header_seconds(headers: Any) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, min(float(value if not isinstance(value, list) else value[0]), 3600.0))
            except ValueError:
                break
    return 30.0


JOBS = (
    JobKind("chat.postMessage", post_message),
    JobKind("chat.postEphemeral", post_ephemeral),
    JobKind("slack.respond", respond),
    JobKind("conversations.create", create_channel),
    JobKind("conversations.setTopic", set_topic),
    JobKind("conversations.invite", invite),
    JobKind("views.publish", publish_view),
    JobKind("files.upload_v2", upload_file),
    JobKind("timeline.pin", pin_to_timeline),
    JobKind("users.info", user_info),
)


def make_slack_client(token: str, base_url: str, timeout: float) -> WebClient:
    """A Web API client with no retry handlers of its own: the outbox decides what is retried."""
    return WebClient(token=token, base_url=base_url, timeout=int(max(1, timeout)), retry_handlers=[])
