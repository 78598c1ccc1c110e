"""Outbox jobs that are more than one Web API call: pins, user lookups, PagerDuty paging and resolving.

They run in the outbox worker (never in a request), so a slow Slack or PagerDuty never delays an ack.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from incident_bot.services.directory import remember_user
from incident_bot.slack.delivery import DELIVERERS, Context, Delivered, Permanent, _resolve
from incident_bot.slack.mrkdwn import escape, link
from storage import repo
from storage.models import Incident, PagerDutyLink, SlackUser, utcnow


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
    text = msg.get("text") or ""

    def store(session: Session) -> None:
        repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=_ts_time(ts), source="slack",
                          kind="pinned", actor=author, text=text, source_event_id=f"pin:{channel}:{ts}")
        remember_user(session, author)  # the RCA and timeline show the author's name

    return Delivered(result={"ts": ts}, store=store)


def user_info(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    """Cache a user's display name, email and time zone (ids stay the keys everywhere)."""
    uid = row.payload["user"]
    u = ctx.slack.users_info(user=uid)["user"]
    profile = u.get("profile") or {}

    def store(session: Session) -> None:
        cached = session.get(SlackUser, uid) or SlackUser(user_id=uid)
        cached.name = profile.get("display_name") or u.get("real_name") or u.get("name")
        cached.email, cached.tz, cached.fetched_at = profile.get("email"), u.get("tz"), utcnow()
        session.add(cached)

    return Delivered(result={"user": uid}, store=store)


def _pd(ctx: Context) -> Any:
    if ctx.pagerduty is None:
        raise Permanent("the PagerDuty REST API is not configured")
    return ctx.pagerduty


def pagerduty_resolve(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    _pd(ctx).resolve_incident(row.payload["incident_id"])
    return Delivered(result={"resolved": row.payload["incident_id"]})


def pagerduty_page(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    """Open a PagerDuty incident on a service, linked to ours, with the Slack channel in its body."""
    if inc is None:
        raise Permanent("pagerduty.page without an incident")
    pd = _pd(ctx)
    wanted = row.payload["service"]
    service = pd.find_service(wanted)
    if service is None:
        return Delivered(timeline_note=f"Paging failed: no PagerDuty service named {wanted!r}", store=_tell(
            inc, f"⚠️ No PagerDuty service named *{escape(wanted)}*; nobody was paged."))
    channel = f"#{inc.slack_channel_name}" if inc.slack_channel_name else inc.ref
    created = pd.create_incident(
        service_id=service["id"], title=f"[{inc.ref}] {inc.title}"[:1024],
        details=f"Paged from Slack incident {inc.ref} ({inc.severity}). Join the response in {channel}.",
        # The key makes a retried page idempotent on PagerDuty's side.
        incident_key=f"incident-bot:{inc.ref}:{service['id']}",
    )
    pd_id, url = created.get("id"), created.get("html_url")

    def store(session: Session) -> None:
        if pd_id and session.get(PagerDutyLink, pd_id) is None:
            session.add(PagerDutyLink(pagerduty_incident_id=pd_id, incident_id=inc.id or 0, primary=False,
                                      url=url, service_name=service.get("name")))
        _tell(inc, f"📟 Paged *{escape(service.get('name', wanted))}* on-call: {link(url, 'PagerDuty incident')}. "
                   "Responders are invited here as they acknowledge.")(session)

    return Delivered(result={"pagerduty_incident": pd_id}, store=store,
                     timeline_note=f"Paged {service.get('name', wanted)} on-call (PagerDuty {pd_id})")


def invite_pagerduty_user(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    """A PagerDuty responder acknowledged: invite them, matched by email."""
    if inc is None:
        raise Permanent("incident.invite_pd_user without an incident")
    channel = _resolve("$incident", inc, "incident.invite_pd_user")
    pd_user = _pd(ctx).client.rget(f"users/{row.payload['pd_user_id']}")
    email = pd_user.get("email")
    if not email:
        return Delivered(result={"skipped": "no email"})
    try:
        uid = ctx.slack.users_lookupByEmail(email=email)["user"]["id"]
    except SlackApiError as exc:
        if exc.response.get("error") == "users_not_found":
            return Delivered(timeline_note=f"{pd_user.get('name')} acknowledged but has no Slack account")
        raise
    try:
        ctx.slack.conversations_invite(channel=channel, users=uid)
    except SlackApiError as exc:
        if exc.response.get("error") != "already_in_channel":
            raise
    return Delivered(result={"invited": uid}, members=(channel, [uid]))


def _tell(inc: Incident, md: str) -> Any:
    from incident_bot.services.incidents import post
    from incident_bot.slack import messages

    def store(session: Session) -> None:
        post(session, inc, messages.plain(md, fallback=f"{inc.ref}: PagerDuty"))

    return store


def upload_file(ctx: Context, row: Any, inc: Incident | None, uncertain: bool) -> Delivered:
    """files.upload_v2 (getUploadURLExternal + upload + completeUploadExternal), e.g. the RCA."""
    p = row.payload
    channel = _resolve(p["channel"], inc, "files.upload_v2")
    resp = ctx.slack.files_upload_v2(channel=channel, content=p["content"], filename=p["filename"],
                                     title=p.get("title"), initial_comment=p.get("initial_comment"))
    return Delivered(result={"file": (resp.get("file") or {}).get("id")})


DELIVERERS.update({
    "files.upload_v2": upload_file,
    "timeline.pin": pin_to_timeline,
    "users.info": user_info,
    "pagerduty.resolve": pagerduty_resolve,
    "pagerduty.page": pagerduty_page,
    "incident.invite_pd_user": invite_pagerduty_user,
})
