"""How each kind of outbox row is delivered. The only module that calls the Slack Web API.

Each function takes a claimed row and returns a :class:`Delivered` (what to store) or raises:
- :class:`Permanent` for a call that can never succeed (the row is parked as dead),
- ``SlackApiError`` / connection errors, which the worker classifies and retries.

Exactly-once after a crash or a timeout: every message carries the outbox id in its Slack
``metadata``; before repeating an *uncertain* post, the channel history is searched for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from incident_bot.core.naming import channel_name
from incident_bot.pagerduty.rest import PagerDutyRest
from incident_bot.slack import messages
from storage import repo
from storage.models import Incident, OutboxMessage

log = logging.getLogger(__name__)
METADATA_EVENT = "incident_bot_outbox"


class Permanent(Exception):
    """This call cannot succeed by trying again."""


@dataclass
class Delivered:
    """What a call produced, stored in the transaction that marks the row done."""

    result: dict[str, Any] = field(default_factory=dict)
    incident_updates: dict[str, Any] = field(default_factory=dict)
    timeline_note: str | None = None
    members: tuple[str, list[str]] | None = None  # (channel id, user ids now in it)
    store: Callable[[Session], None] | None = None


@dataclass
class Context:
    slack: WebClient
    pagerduty: PagerDutyRest | None
    bot_user_id: str | None = None


def _resolve(value: Any, inc: Incident | None, what: str) -> Any:
    if value == "$incident":
        if inc is None or not inc.slack_channel_id:
            raise Permanent(f"{what}: the incident channel was never created")
        return inc.slack_channel_id
    if value == "$announce":
        if inc is None or not inc.announce_channel_id:
            raise Permanent(f"{what}: the announcement was never posted")
        return inc.announce_channel_id
    if value == "$announce_ts":
        if inc is None or not inc.announce_ts:
            raise Permanent(f"{what}: the announcement was never posted")
        return inc.announce_ts
    return value


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
    p = dict(row.payload)
    if p.pop("render", None) == "announcement":
        if inc is None:
            raise Permanent("announcement without an incident")
        p.update(messages.announcement(inc))
    capture = p.pop("capture", None)
    channel = _resolve(p.pop("channel"), inc, "chat.postMessage")
    if "thread_ts" in p:
        p["thread_ts"] = _resolve(p["thread_ts"], inc, "chat.postMessage thread")
    if uncertain and channel.startswith(("C", "G", "D")):
        found = _already_posted(ctx, channel, row)
        if found:
            log.info("outbox %s: already posted before a crash/timeout, not posting again", row.id)
            return _captured(found, capture)
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
    return _captured({"channel": resp.get("channel"), "ts": resp.get("ts")}, capture)


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
    channel = _resolve(row.payload["channel"], inc, "conversations.setTopic")
    # Always the current topic: if several updates queued up, the last state is what matters.
    topic = messages.topic(inc) if inc is not None else row.payload["topic"]
    ctx.slack.conversations_setTopic(channel=channel, topic=topic)
    return Delivered(result={"channel": channel})


def invite(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    channel = _resolve(row.payload["channel"], inc, "conversations.invite")
    users = [u for u in str(row.payload["users"]).split(",") if u and u != ctx.bot_user_id]
    if not users:
        return Delivered(result={"skipped": "nobody to invite"})
    try:
        ctx.slack.conversations_invite(channel=channel, users=",".join(users))
    except SlackApiError as exc:
        if exc.response.get("error") not in ("already_in_channel", "cant_invite_self"):
            raise
    return Delivered(result={"invited": users}, members=(channel, users))


def invite_oncall(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """Invite the PagerDuty on-call responders, matched to Slack users by email."""
    if inc is None:
        raise Permanent("incident.invite_oncall without an incident")
    channel = _resolve("$incident", inc, "incident.invite_oncall")
    policy = row.payload.get("escalation_policy_id") or inc.pagerduty_escalation_policy_id
    if ctx.pagerduty is None:
        return Delivered(timeline_note="On-call responders not invited: the PagerDuty REST API is not "
                                       "configured (set PAGERDUTY_API_TOKEN).")
    if not policy:
        return Delivered(timeline_note="On-call responders not invited: the incident has no escalation policy.")
    found, missing = [], []
    for person in ctx.pagerduty.oncall_users(policy):
        if not person.email:
            missing.append(person.name)
            continue
        try:
            user = ctx.slack.users_lookupByEmail(email=person.email)["user"]
            found.append(user["id"])
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                raise
            missing.append(person.name)
    if found:
        try:
            ctx.slack.conversations_invite(channel=channel, users=",".join(found))
        except SlackApiError as exc:
            if exc.response.get("error") != "already_in_channel":
                raise
    note = f"Invited {len(found)} on-call responder(s) from PagerDuty"
    if missing:
        note += f"; not found in Slack: {', '.join(missing)}"
    return Delivered(result={"invited": found, "missing": missing}, timeline_note=note, members=(channel, found))


def generic(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """Any other Web API method, payload passed through with ``$incident`` placeholders resolved."""
    args = {k: _resolve(v, inc, row.method) for k, v in row.payload.items()}
    resp = ctx.slack.api_call(row.method, json=args)
    return Delivered(result={k: resp.get(k) for k in ("channel", "ts") if resp.get(k)})


DELIVERERS = {
    "chat.postMessage": post_message,
    "conversations.create": create_channel,
    "conversations.setTopic": set_topic,
    "conversations.invite": invite,
    "incident.invite_oncall": invite_oncall,
}


def apply_delivered(session: Session, row: OutboxMessage, inc: Incident | None, out: Delivered,
                    now: datetime) -> None:
    """Store what the call produced, in the same transaction that marks the row done."""
    if inc is not None and out.incident_updates:
        for key, value in out.incident_updates.items():
            setattr(inc, key, value)
        session.add(inc)
    if out.members:
        repo.set_members(session, out.members[0], added=out.members[1])
    if out.store is not None:
        out.store(session)
    if inc is not None and out.timeline_note:
        repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=now, source="bot",
                          kind="responders", text=out.timeline_note, source_event_id=f"outbox:{row.id}")
