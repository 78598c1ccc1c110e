"""One PagerDuty delivery -> one transaction. The webhook answers 202 only after this commits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.core.clock import bounded
from incident_bot.core.severity import severity_for
from incident_bot.pagerduty.events import PagerDutyEvent, parse_delivery
from incident_bot.pagerduty.translate import translate
from incident_bot.services.incidents import (
    NewIncident,
    apply_signals,
    milestone_for,
    open_incident,
    post,
    refresh_metrics,
)
from incident_bot.slack import messages
from storage import repo
from storage.db import session_scope
from storage.models import InboxDelivery, Incident, utcnow

log = logging.getLogger(__name__)
SOURCE = "pagerduty"


@dataclass(frozen=True)
class IngestResult:
    outcome: str  # processed | duplicate | ignored | deferred
    ref: str | None = None


def ingest(engine: Engine, settings: Settings, ev: PagerDutyEvent, body: bytes,
           received_at: datetime | None = None) -> IngestResult:
    """Apply a delivery exactly once. Retries once when a racing replica opened the same incident."""
    ev = bound_times(ev, received_at or utcnow())
    for attempt in range(3):
        try:
            with session_scope(engine) as session:
                return _ingest(session, settings, ev, body)
        except IntegrityError:
            # Another replica committed the same incident (or delivery) between our check and insert;
            # everything we wrote was rolled back, so a fresh attempt sees its row and does the right thing.
            if attempt == 2:
                raise
            log.info("pagerduty: retrying %s after a concurrent insert", ev.event_id)
    raise AssertionError("unreachable")


def _ingest(session: Session, settings: Settings, ev: PagerDutyEvent, body: bytes) -> IngestResult:
    if not repo.record_delivery(session, source=SOURCE, event_id=ev.event_id, event_type=ev.event_type):
        return IngestResult("duplicate")
    if not ev.known or not ev.incident_id:
        repo.set_delivery_outcome(session, SOURCE, ev.event_id, "ignored", None)
        return IngestResult("ignored")

    inc = repo.incident_for_pagerduty(session, ev.incident_id)
    if inc is None and ev.incident is None:
        # A note about an incident we have not opened yet (deliveries can overtake each other): keep it
        # and apply it when the incident opens. Under the counter lock, which the opening transaction
        # holds until it commits: otherwise a replica opening the incident right now would not see this
        # deferred row (not committed yet when it looks) and the note would never be applied.
        repo.lock_counter(session)
        inc = repo.incident_for_pagerduty(session, ev.incident_id)
        if inc is None:
            _defer(session, ev, body)
            return IngestResult("deferred")
    if inc is None:
        inc = _open_from_pagerduty(session, settings, ev)
        # The intro message covers a trigger; any other first event (it overtook the trigger) is posted.
        _apply(session, settings, inc, ev, announce=ev.event_type != "incident.triggered")
        for deferred in _take_deferred(session, ev.incident_id):
            _apply(session, settings, inc, deferred, announce=True)
    else:
        _apply(session, settings, inc, ev, announce=True)
    # The inbox row was inserted as "processed": no second write on the hot path.
    return IngestResult("processed", inc.ref)


def _open_from_pagerduty(session: Session, settings: Settings, ev: PagerDutyEvent) -> Incident:
    pd = ev.incident
    assert pd is not None
    # Serialise incident creation on the counter row, then look again: a replica that held the lock
    # before us may have opened this very incident.
    repo.lock_counter(session)
    again = repo.incident_for_pagerduty(session, pd.id)
    if again is not None:
        return again
    detected = pd.created_at or ev.occurred_at or utcnow()
    # Whichever delivery arrives first opens the incident; every PagerDuty incident was triggered at
    # created_at, so the opening row is the trigger's row, the same whatever the arrival order.
    what = "PagerDuty triggered"
    return open_incident(
        session,
        NewIncident(
            title=pd.title, detected_at=detected, origin="pagerduty", service=pd.service_name,
            severity=severity_for(pd.priority, pd.urgency, settings.severity_map),
            fired_by=what, pagerduty_incident_id=pd.id, pagerduty_url=pd.html_url,
            pagerduty_service_id=pd.service_id, pagerduty_escalation_policy_id=pd.escalation_policy_id,
            pagerduty_priority=pd.priority, pagerduty_urgency=pd.urgency,
            # The trigger's own timeline row is the opening row (same source event id: added once).
            opened_kind="triggered", source_event_id=trigger_row_id(pd.id),
        ),
        announce_channel=settings.incident_announce_channel,
        invite_oncall=True,
    )


def _apply(session: Session, settings: Settings, inc: Incident, ev: PagerDutyEvent, *, announce: bool) -> None:
    at = ev.occurred_at or utcnow()
    tr_in = translate(ev, at, settings.severity_map)
    before_sev, before_status = inc.severity, inc.status
    tr = apply_signals(session, inc, tr_in.signals, strict=False, source=SOURCE, actor=ev.agent,
                       source_event_id=ev.event_id)
    if ev.incident and (inc.details_at is None or at >= inc.details_at):
        service = inc.service
        _refresh_details(inc, ev, at)
        if inc.service != service:  # metrics rows carry the service for grouping
            refresh_metrics(session, inc)
    assert inc.id is not None
    # The trigger's row is the opening row (added when the incident opened, by whichever delivery came
    # first): the same key makes this add a no-op.
    row_id = trigger_row_id(ev.incident_id or "") if tr_in.kind == "triggered" else ev.event_id
    if ev.clamped_from:
        repo.add_timeline(session, incident_id=inc.id, occurred_at=at, source=SOURCE, kind="clock_clamped",
                          text=f"{ev.event_type}: PagerDuty's time {ev.clamped_from} is ahead of our clock; "
                               "recorded at the time it was received", source_event_id=f"{ev.event_id}:clamped")
    repo.add_timeline(
        session, incident_id=inc.id, occurred_at=at, source=SOURCE, kind=tr_in.kind, text=tr_in.text,
        actor=ev.agent, milestone=milestone_for(tr_in.kind, tr.changed), source_event_id=row_id,
    )
    if ev.event_type == "incident.acknowledged" and ev.agent_id and settings.pagerduty_rest_enabled:
        # Responders are invited to the channel as they acknowledge (paged services included).
        repo.enqueue(session, order_key=f"incident:{inc.id}", method="incident.invite_pd_user",
                     incident_id=inc.id, payload={"pd_user_id": ev.agent_id},
                     dedup_key=f"invite-pd:{inc.id}:{ev.agent_id}")
    if not announce:
        return
    # An ack/resolve/reopen that changes nothing (late, or the echo of a resolve done from Slack) is
    # recorded on the timeline but not announced again.
    echo = tr_in.kind in ("acknowledged", "resolved", "reopened") and not tr.changed and not tr.status_changed
    if tr_in.channel_md and not echo:
        post(session, inc, messages.update(inc, icon=tr_in.icon, text_md=tr_in.channel_md,
                                           fallback=f"{inc.ref}: {tr_in.text}"))
    if inc.severity != before_sev or inc.status != before_status:
        repo.enqueue(session, order_key=f"incident:{inc.id}", method="conversations.setTopic",
                     incident_id=inc.id, payload={"channel": "$incident", "topic": messages.topic(inc)})


def bound_times(ev: PagerDutyEvent, received_at: datetime) -> PagerDutyEvent:
    """The clock rule (core/clock.py) applied to a delivery's ``occurred_at`` and ``created_at``."""
    occurred, late = bounded(ev.occurred_at, received_at)
    incident = ev.incident
    if incident is not None:
        created, created_late = bounded(incident.created_at, received_at)
        if created_late:
            incident = replace(incident, created_at=created)
            late = late or created_late
    if not late:
        return ev
    original = ev.occurred_at if ev.occurred_at and ev.occurred_at > received_at else (
        ev.incident.created_at if ev.incident else None)
    return replace(ev, occurred_at=occurred, incident=incident,
                   clamped_from=original.isoformat().replace("+00:00", "Z") if original else "?")


def trigger_row_id(pd_incident_id: str) -> str:
    return f"trigger:{pd_incident_id}"


def _refresh_details(inc: Incident, ev: PagerDutyEvent, at: datetime) -> None:
    pd = ev.incident
    assert pd is not None
    inc.title = pd.title or inc.title
    inc.service = pd.service_name or inc.service
    inc.pagerduty_url = pd.html_url or inc.pagerduty_url
    inc.pagerduty_service_id = pd.service_id or inc.pagerduty_service_id
    inc.pagerduty_escalation_policy_id = pd.escalation_policy_id or inc.pagerduty_escalation_policy_id
    inc.pagerduty_priority, inc.pagerduty_urgency = pd.priority, pd.urgency or inc.pagerduty_urgency
    inc.details_at = at


def _defer(session: Session, ev: PagerDutyEvent, body: bytes) -> None:
    row = session.execute(
        select(InboxDelivery).where(InboxDelivery.source == SOURCE, InboxDelivery.event_id == ev.event_id)
    ).scalar_one()
    row.outcome, row.subject_id, row.payload = "deferred", ev.incident_id, body.decode("utf-8", "replace")
    session.add(row)


def _take_deferred(session: Session, pd_incident_id: str) -> list[PagerDutyEvent]:
    rows = session.execute(
        select(InboxDelivery)
        .where(InboxDelivery.subject_id == pd_incident_id, InboxDelivery.outcome == "deferred")
        .order_by(InboxDelivery.id)
    ).scalars().all()
    events = []
    for row in rows:
        events.append(bound_times(parse_delivery((row.payload or "").encode()), row.received_at))
        row.outcome, row.payload = "processed", None
        session.add(row)
    return events
