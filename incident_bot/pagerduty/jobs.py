"""PagerDuty's outbox job kinds: invite the on-call, invite an acknowledging responder, page a service,
resolve a linked PagerDuty incident. They run in the outbox worker (never in a request), so a slow
PagerDuty never delays an answer.
"""

from __future__ import annotations

from typing import Any

import pagerduty
from slack_sdk.errors import SlackApiError

from incident_bot.pipeline.jobs import Context, Delivered, Failure, JobKind, Permanent, resolve_placeholder
from incident_bot.pipeline.outbox import intent
from incident_bot.usecases import incident_changes as svc
from incident_bot.usecases.incidents import post
from incident_bot.usecases.runner import Session
from storage.models import Incident, OutboxMessage


def _pd(ctx: Context) -> Any:
    if ctx.pagerduty is None:
        raise Permanent("the PagerDuty REST API is not configured")
    return ctx.pagerduty


def invite_oncall(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """Invite the PagerDuty on-call responders, matched to Slack users by email."""
    if inc is None:
        raise Permanent("incident.invite_oncall without an incident")
    channel = resolve_placeholder("$incident", inc, "incident.invite_oncall")
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


def invite_pagerduty_user(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """A PagerDuty responder acknowledged: invite them, matched by email."""
    if inc is None:
        raise Permanent("incident.invite_pd_user without an incident")
    channel = resolve_placeholder("$incident", inc, "incident.invite_pd_user")
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


def pagerduty_resolve(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    _pd(ctx).resolve_incident(row.payload["incident_id"])
    return Delivered(result={"resolved": row.payload["incident_id"]})


def pagerduty_resolve_many(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """Resolve the PagerDuty incidents of an alert-storm group, up to 100 per call."""
    done = _pd(ctx).resolve_incidents(list(row.payload["incident_ids"]))
    return Delivered(result={"resolved": len(done)})


def pagerduty_page(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """Open a PagerDuty incident on a service, linked to ours, with the Slack channel in its body."""
    if inc is None:
        raise Permanent("pagerduty.page without an incident")
    pd = _pd(ctx)
    wanted = row.payload["service"]
    service = pd.find_service(wanted)
    if service is None:
        return Delivered(timeline_note=f"Paging failed: no PagerDuty service named {wanted!r}", store=_tell(
            inc, intent("pagerduty_page_failed", ref=inc.ref, service=wanted)))
    channel = f"#{inc.slack_channel_name}" if inc.slack_channel_name else inc.ref
    created = pd.create_incident(
        service_id=service["id"], title=f"[{inc.ref}] {inc.title}"[:1024],
        details=f"Paged from Slack incident {inc.ref} ({inc.severity}). Join the response in {channel}.",
        # The key makes a retried page idempotent on PagerDuty's side.
        incident_key=f"incident-bot:{inc.ref}:{service['id']}",
    )
    pd_id, url = created.get("id"), created.get("html_url")

    def store(session: Session) -> None:
        if pd_id:
            svc.paged(session, inc, pagerduty_id=pd_id, url=url, service_name=service.get("name"))
        _tell(inc, intent("pagerduty_paged", ref=inc.ref, service=service.get("name", wanted), url=url))(session)

    return Delivered(result={"pagerduty_incident": pd_id}, store=store,
                     timeline_note=f"Paged {service.get('name', wanted)} on-call (PagerDuty {pd_id})")


def _tell(inc: Incident, said: dict[str, Any]) -> Any:
    def store(session: Session) -> None:
        post(session, inc, said)

    return store


def classify(exc: BaseException) -> Failure | None:
    """PagerDuty's 4xx (but 429) cannot succeed by retrying; everything else from its client can."""
    if not isinstance(exc, pagerduty.Error):
        return None
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status and 400 <= status < 500 and status != 429:
        return Failure("permanent", f"PagerDuty HTTP {status}: {exc}")
    return Failure("retry", f"PagerDuty: {exc}", uncertain=False)


JOBS = (
    JobKind("incident.invite_oncall", invite_oncall),
    JobKind("incident.invite_pd_user", invite_pagerduty_user),
    JobKind("pagerduty.resolve", pagerduty_resolve),
    JobKind("pagerduty.resolve_many", pagerduty_resolve_many),
    JobKind("pagerduty.page", pagerduty_page),
)
