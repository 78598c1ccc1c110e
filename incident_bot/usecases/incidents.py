"""Incident services: one transaction per input, writing incident, timeline, metrics and outbox together.

Callers pass an open session (the use-case runner's, :mod:`incident_bot.usecases.runner`); nothing here
commits, so an input either has all of its effects or none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlmodel import Session

from incident_bot.core.durations import durations
from incident_bot.core.lifecycle import MILESTONES, IncidentState, Signal, Transition, apply, open_state
from incident_bot.core.markup import stored
from incident_bot.core.naming import channel_name, incident_ref
from incident_bot.pipeline import outbox
from storage import repo, text_search
from storage.models import Incident, IncidentMetrics, PagerDutyLink, utcnow

# What a channel topic shows (``severity status | ref: title | PagerDuty: url``), snapshot when queued.
TOPIC_FACTS = ("ref", "title", "severity", "status", "pagerduty_url")
# What a lifecycle update's context line shows.
BADGE_FACTS = ("ref", "severity", "status")
_STATE_FIELDS = [f.name for f in fields(IncidentState)]
MILESTONE_LABELS = {
    "impact_started_at": "impact started",
    "detected_at": "detected",
    "acknowledged_at": "acknowledged",
    "mitigated_at": "mitigated",
    "resolved_at": "resolved",
    "closed_at": "closed",
}


class NoSuchIncident(LookupError):
    """A reference that names no incident (the message says which: ``no incident INC-9``)."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no incident {ref}")


def order_key(incident_id: int) -> str:
    return f"incident:{incident_id}"


def state_of(inc: Incident) -> IncidentState:
    assert inc.detected_at is not None
    values = {name: getattr(inc, name) for name in _STATE_FIELDS}
    values["resolve_times"] = tuple(datetime.fromisoformat(t) for t in inc.resolve_times or ())
    return IncidentState(**values)


def state_values(state: IncidentState) -> dict[str, Any]:
    """The lifecycle state as the incident's column values."""
    values = {name: getattr(state, name) for name in _STATE_FIELDS}
    values["resolve_times"] = [t.isoformat() for t in state.resolve_times]
    return values


def store_state(inc: Incident, state: IncidentState) -> None:
    """Write the lifecycle state back; only the fields that changed (every attribute set on a mapped
    object costs, and the fold stores thousands of states a second)."""
    changed = False
    for name in _STATE_FIELDS:
        if name == "resolve_times":
            value: Any = [t.isoformat() for t in state.resolve_times]  # a new list: JSON is saved
        else:
            value = getattr(state, name)
        if getattr(inc, name) != value:
            setattr(inc, name, value)
            changed = True
    if changed or inc.updated_at is None:
        inc.updated_at = utcnow()


def refresh_metrics(session: Session, inc: Incident) -> IncidentMetrics:
    """Recompute the incident's TTx row; called whenever a milestone or a grouping field changes."""
    assert inc.id is not None
    new = inc.id in session.info.get("new_incidents", ())
    row = (None if new else session.get(IncidentMetrics, inc.id)) or session.info.get("metrics", {}).get(inc.id)
    if row is None:
        row = IncidentMetrics(incident_id=inc.id, severity=inc.severity)
        session.info.setdefault("metrics", {})[inc.id] = row
    for key, value in durations({m: getattr(inc, m) for m in MILESTONES}).items():
        setattr(row, key, value)
    row.severity, row.service = inc.severity, inc.service
    row.detected_at, row.resolved_at = inc.detected_at, inc.resolved_at
    row.updated_at = utcnow()
    session.add(row)
    return row


def post(session: Session, inc: Incident, payload: dict[str, Any], *, thread_announce: bool = False,
         channel: str = "$incident") -> None:
    """Queue a message for the incident channel (or elsewhere) behind the incident's earlier calls. An
    incident without a channel (recorded quietly) gets no messages about itself."""
    assert inc.id is not None
    if not inc.slack_channel_wanted and (channel == "$incident" or thread_announce):
        return
    body = {"channel": channel, **payload}
    if thread_announce:
        body["thread_ts"] = "$announce_ts"
        body["channel"] = "$announce"
    repo.enqueue(session, order_key=order_key(inc.id), method="chat.postMessage", payload=body,
                 incident_id=inc.id)


def set_topic(session: Session, inc: Incident) -> None:
    """Queue the channel topic for the incident's state now, behind the messages queued before it; a
    topic still waiting in the queue is superseded (only the last state matters)."""
    assert inc.id is not None
    if not inc.slack_channel_wanted:
        return
    queued = session.info.setdefault("topic_rows", {})
    earlier = queued.get(inc.id)
    if earlier is not None:  # queued earlier in this transaction: superseded without a query
        earlier.status, earlier.result, earlier.done_at = outbox.DONE, {"skipped": "superseded"}, utcnow()
    elif inc.id not in session.info.get("new_incidents", ()):
        outbox.supersede(session, order_key=order_key(inc.id), method="conversations.setTopic")
    queued[inc.id] = repo.enqueue_row(session, order_key=order_key(inc.id), method="conversations.setTopic",
                                      incident_id=inc.id,
                                      payload={"channel": "$incident", **outbox.intent(
                                          "topic", incident=outbox.facts(inc, *TOPIC_FACTS))})


@dataclass(frozen=True)
class NewIncident:
    title: str
    detected_at: datetime
    severity: str
    origin: str  # pagerduty | slack | cli
    service: str | None = None
    description: str | None = None
    impact_started_at: datetime | None = None
    reporter_id: str | None = None
    fired_by: str = "Declared"
    pagerduty_incident_id: str | None = None
    pagerduty_url: str | None = None
    pagerduty_service_id: str | None = None
    pagerduty_escalation_policy_id: str | None = None
    pagerduty_priority: str | None = None
    pagerduty_urgency: str | None = None
    source_event_id: str | None = None
    opened_kind: str = "declared"
    web_base_url: str | None = None  # WEB_BASE_URL: the intro card links the incident's page


def open_incident(session: Session, new: NewIncident, *, announce_channel: str | None,
                  invite_oncall: bool, quiet: bool = False) -> Incident:
    """Create the incident and queue its channel, topic, first message, invitations and announcement.

    ``quiet``: record it (timeline, milestones, metrics) without any Slack channel: an incident that is
    already over when we first hear of it (a resolve for an incident opened before the bot was
    installed), or one imported from history. It gets a channel if it is reopened."""
    number = repo.next_number(session)
    state = open_state(detected_at=new.detected_at, severity=new.severity,
                       impact_started_at=new.impact_started_at)
    inc = repo.insert_incident(session, {
        "number": number, "ref": incident_ref(number), "title": new.title, "description": new.description,
        "service": new.service, "origin": new.origin, "reporter_id": new.reporter_id,
        "pagerduty_incident_id": new.pagerduty_incident_id, "pagerduty_url": new.pagerduty_url,
        "pagerduty_service_id": new.pagerduty_service_id,
        "pagerduty_escalation_policy_id": new.pagerduty_escalation_policy_id,
        "pagerduty_priority": new.pagerduty_priority, "pagerduty_urgency": new.pagerduty_urgency,
        "detected_at": new.detected_at, "details_at": new.detected_at, "rca": {},
        **state_values(state), "updated_at": utcnow(),
    })
    text_search.index_new(session, [inc])
    assert inc.id is not None
    session.info.setdefault("new_incidents", set()).add(inc.id)
    if new.pagerduty_incident_id:
        repo.add_link(session, PagerDutyLink(pagerduty_incident_id=new.pagerduty_incident_id, incident_id=inc.id,
                                             primary=True, url=new.pagerduty_url, service_name=new.service))
    repo.add_timeline(
        session, incident_id=inc.id, occurred_at=new.detected_at, source=new.origin, kind=new.opened_kind,
        text=stored(new.origin, f"{new.fired_by}: {new.title}"), actor=new.reporter_id, milestone="detected_at",
        source_event_id=new.source_event_id,
    )
    if state.impact_started_at and state.impact_started_at < new.detected_at:
        repo.add_timeline(session, incident_id=inc.id, occurred_at=state.impact_started_at,
                          source=new.origin, kind="impact_started", text="Impact started",
                          actor=new.reporter_id, milestone="impact_started_at")
    refresh_metrics(session, inc)
    if quiet:
        inc.slack_channel_wanted = False
        session.add(inc)
        return inc
    request_channel(session, inc, fired_by=new.fired_by, announce_channel=announce_channel,
                    invite_oncall=invite_oncall, web_base_url=new.web_base_url)
    return inc


def request_channel(session: Session, inc: Incident, *, fired_by: str, announce_channel: str | None,
                    invite_oncall: bool, web_base_url: str | None = None) -> None:
    """Queue the incident's channel, topic, intro, announcement and invitations (once per incident)."""
    assert inc.id is not None
    inc.slack_channel_wanted = True
    session.add(inc)
    key = order_key(inc.id)
    # Once per incident: at its opening, or when a quiet one first needs a channel (the caller holds the
    # incident's lock and saw slack_channel_wanted False).
    repo.enqueue(session, order_key=key, method="conversations.create", incident_id=inc.id,
                 payload={"name": channel_name(inc.number, inc.title), "is_private": False})
    set_topic(session, inc)
    # Similar past incidents and a recurrence are looked up when the outbox posts the intro (slack/jobs.py),
    # not here: the fold stays as fast as it was, and a slow lookup never holds SQLite's write lock.
    post(session, inc, {**outbox.intent("channel_intro", incident=outbox.facts(inc), fired_by=fired_by,
                                        web_base_url=web_base_url),
                        "history": {"web_base_url": web_base_url}})
    if announce_channel:
        repo.enqueue(session, order_key=key, method="chat.postMessage", incident_id=inc.id,
                     payload={"channel": announce_channel, "render": "announcement",
                              "capture": "announce"})
    if inc.reporter_id:
        repo.enqueue(session, order_key=key, method="conversations.invite", incident_id=inc.id,
                     payload={"channel": "$incident", "users": inc.reporter_id})
    if invite_oncall:
        repo.enqueue(session, order_key=key, method="incident.invite_oncall", incident_id=inc.id,
                     payload={"escalation_policy_id": inc.pagerduty_escalation_policy_id})


def apply_signals(
    session: Session, inc: Incident, signals: list[Signal], *, strict: bool, source: str,
    actor: str | None = None, source_event_id: str | None = None,
) -> Transition:
    """Fold signals into the incident; on refusal nothing is stored and ``refused`` says why."""
    before = state_of(inc)
    state = before
    changed: dict[str, datetime | None] = {}
    for sig in signals:
        tr = apply(state, sig, strict=strict)
        if tr.refused:
            return Transition(state=before, refused=tr.refused, status_before=before.status)
        state = tr.state
        changed.update(tr.changed)
    changed = {m: v for m, v in changed.items() if getattr(before, m) != v}
    severity_changed = state.severity != before.severity
    store_state(inc, state)
    session.add(inc)
    if changed or severity_changed:
        refresh_metrics(session, inc)
    if changed.get("impact_started_at") and changed["impact_started_at"] != inc.detected_at:
        # A moved impact start is its own timeline row, at the time it names.
        repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=changed["impact_started_at"],
                          source=source, kind="impact_started", text="Impact started",
                          actor=actor, milestone="impact_started_at",
                          source_event_id=f"{source_event_id}:impact" if source_event_id else None)
    return Transition(state=state, changed=changed, status_before=before.status)


_KIND_MILESTONE = {
    "acknowledged": "acknowledged_at", "mitigated": "mitigated_at", "resolved": "resolved_at",
    "closed": "closed_at",
}


def milestone_for(kind: str, changed: dict[str, datetime | None]) -> str | None:
    """The milestone a timeline row marks: the one this input set (not one it cleared)."""
    m = _KIND_MILESTONE.get(kind)
    return m if m and changed.get(m) is not None else None
