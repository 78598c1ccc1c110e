"""Fold PagerDuty deliveries into incidents: the fold worker calls this for each stored delivery, many
per transaction. Pure lifecycle rules are in ``core.lifecycle``; this writes their effects. The event comes
parsed, and its meaning from the PagerDuty adapter (a :class:`~incident_bot.usecases.pagerduty_event.Reader`):
this module knows no PagerDuty payload."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.core.clock import bounded
from incident_bot.core.severity import FALLBACK, severity_for
from incident_bot.pipeline import inbox, outbox
from incident_bot.pipeline.fold import Plan
from incident_bot.usecases import grouping
from incident_bot.usecases.incidents import (
    BADGE_FACTS,
    NewIncident,
    apply_signals,
    milestone_for,
    open_incident,
    post,
    refresh_metrics,
    request_channel,
    set_topic,
)
from incident_bot.usecases.pagerduty_event import PagerDutyEvent, PagerDutyIncident, Reader
from storage import repo
from storage.models import InboxDelivery, Incident, PagerDutyLink, utcnow

log = logging.getLogger(__name__)
SOURCE = "pagerduty"
OPEN_STATUSES = ("triggered", "acknowledged", "mitigated")


@dataclass(frozen=True)
class FoldResult:
    outcome: str  # processed | ignored | deferred
    incident_id: int | None = None
    applied_deferred: tuple[InboxDelivery, ...] = ()


def needs_counter(session: Session, pd_incident_ids: set[str], *, return_new: bool = False) -> Any:
    """True when some of these PagerDuty incidents have no incident of ours yet: the batch may open one,
    so it takes the counter lock first (always first: a fixed lock order, no deadlock between replicas)."""
    if not pd_incident_ids:
        return set() if return_new else False
    known = set(session.execute(select(PagerDutyLink.pagerduty_incident_id).where(
        PagerDutyLink.pagerduty_incident_id.in_(pd_incident_ids))).scalars())  # type: ignore[attr-defined]
    new = pd_incident_ids - known
    return new if return_new else bool(new)


def plan_batch(session: Session, settings: Settings, rows: Sequence[InboxDelivery], plan: Plan,
               incident_of: Callable[[InboxDelivery], PagerDutyIncident | None], *, source: str) -> None:
    """The fold's plan for a batch of stored deliveries of ``source``: what it locks before applying them.
    ``incident_of``: the adapter's reading of a row's PagerDuty incident (None: malformed)."""
    ids = {r.subject_id for r in rows if r.subject_id}
    plan.pagerduty_ids |= ids
    new = needs_counter(session, ids, return_new=True)
    if not new:
        return
    plan.may_open = True
    inbox.expect_subjects(session, source, new)
    if not grouping.enabled(settings):
        return
    # A new PagerDuty incident may join the open incident of its service (alert storm): the counter lock and
    # the candidates to lock, named from the new incidents' services and trigger times.
    triggers = []
    for r in rows:
        if r.subject_id in new:
            pd = incident_of(r)
            if pd is not None and pd.service_id and pd.created_at:
                triggers.append((pd.service_id, pd.created_at))
    plan.incident_ids |= grouping.plan_locks(session, settings, triggers)


def fold_event(session: Session, settings: Settings, ev: PagerDutyEvent, row: InboxDelivery, reader: Reader, *,
               imported: bool = False) -> FoldResult:
    """Apply one PagerDuty delivery inside the fold's transaction (the caller marks the row done).
    ``reader``: the adapter's reading of stored deliveries and of what an event means.

    ``imported``: an event read back from PagerDuty's history (``incident-bot backfill``): the same fold,
    but no channel, message, topic or invitation (no outbox row at all), a new incident is recorded with
    ``origin="import"``, and a timeline row that says what a live delivery already said is not added."""
    # No autoflush: every query would otherwise first write out everything pending, and a batch runs
    # hundreds of them (it was a third of the fold's time; for an import, which asks "said already" for
    # every row, over half). The few reads that need pending rows flush themselves (open_incident);
    # lookups of incidents, links and deferred rows are served from what the batch loaded under its locks
    # (repo.lock_incidents, inbox.take_deferred); "said already" also reads the batch's queued timeline
    # rows (repo.queued_timeline).
    with session.no_autoflush:
        return _fold(session, settings, ev, row, reader, imported=imported)


def _fold(session: Session, settings: Settings, ev: PagerDutyEvent, row: InboxDelivery, reader: Reader, *,
          imported: bool = False) -> FoldResult:
    if not ev.known or not ev.incident_id:
        return FoldResult("ignored")
    source = row.source
    announce = not imported
    inc = repo.incident_for_pagerduty(session, ev.incident_id)
    if inc is None and ev.incident is None:
        # A note about an incident we have not opened yet (deliveries overtake each other): keep it and
        # apply it when the incident opens. The batch holds the counter lock (needs_counter), which an
        # opening transaction holds until it commits, so no replica can open it unseen in between.
        repo.lock_counter(session)
        inc = repo.incident_for_pagerduty(session, ev.incident_id)
        if inc is None:
            inbox.defer(session, row, ev.incident_id)
            return FoldResult("deferred")
    applied: list[InboxDelivery] = []
    if inc is None:
        assert ev.incident is not None
        group = grouping.find_group(session, settings, ev.incident)
        if group is not None:  # an alert storm: join the open incident of the service, no new channel
            inc = group
            grouping.join(session, inc, ev, source=source, quiet=imported,
                          line_hold=timedelta(seconds=settings.group_line_hold))
        else:
            inc = _open_from_pagerduty(session, settings, ev, reader, imported=imported)
        session.info.setdefault("pd_incidents", {})[ev.incident_id] = inc
        # The intro message covers a trigger; any other first event (it overtook the trigger) is posted.
        _apply(session, settings, inc, ev, reader, announce=announce and ev.event_type != "incident.triggered",
               imported=imported)
        for deferred in inbox.take_deferred(session, source, ev.incident_id):
            _apply(session, settings, inc, reader.event_of(deferred), reader, announce=announce, imported=imported)
            inbox.finish(session, deferred, outcome="processed", incident_id=inc.id)
            applied.append(deferred)
    else:
        _apply(session, settings, inc, ev, reader, announce=announce, imported=imported)
    return FoldResult("processed", inc.id, tuple(applied))


def _open_from_pagerduty(session: Session, settings: Settings, ev: PagerDutyEvent, reader: Reader, *,
                         imported: bool = False) -> Incident:
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
    inc = open_incident(
        session,
        NewIncident(
            title=pd.title, detected_at=detected, origin="import" if imported else "pagerduty",
            service=pd.service_name,
            # An unmapped priority name has no severity to keep yet: urgency (then SEV3) opens it.
            severity=reader.severity(pd) or severity_for(None, pd.urgency, settings.severity_map)
            or FALLBACK,
            fired_by=what, pagerduty_incident_id=pd.id, pagerduty_url=pd.html_url,
            pagerduty_service_id=pd.service_id, pagerduty_escalation_policy_id=pd.escalation_policy_id,
            pagerduty_priority=pd.priority, pagerduty_urgency=pd.urgency,
            # The trigger's own timeline row is the opening row (same source event id: added once).
            opened_kind="triggered", source_event_id=trigger_row_id(pd.id), web_base_url=settings.web_base_url,
        ),
        announce_channel=settings.incident_announce_channel,
        invite_oncall=True,
        # Over when we first hear of it (resolved before the bot saw its trigger, e.g. opened before the
        # bot was installed): recorded for metrics and history, but no channel born resolved.
        quiet=imported or ev.event_type == "incident.resolved" or pd.status == "resolved",
    )
    link = repo.get_link(session, pd.id)
    if link is not None:  # what grouping, merge and unlink need of it
        link.service_id, link.title, link.triggered_at, link.status = pd.service_id, pd.title, detected, pd.status
        session.add(link)
    return inc


def _apply(session: Session, settings: Settings, inc: Incident, ev: PagerDutyEvent, reader: Reader, *,
           announce: bool, imported: bool = False) -> None:
    at = ev.occurred_at or utcnow()
    tr_in = reader.translate(ev, at)
    link = repo.get_link(session, ev.incident_id) if ev.incident_id else None
    if grouping.is_joined(link):
        assert link is not None
        grouping.linked_event(session, inc, link, ev, tr_in, at, imported=imported)
        return
    before_sev, before_status = inc.severity, inc.status
    tr = apply_signals(session, inc, tr_in.signals, strict=False, source=SOURCE, actor=ev.agent,
                       source_event_id=ev.event_id)
    if link is not None and ev.incident and ev.incident.status:
        link.status = ev.incident.status
        session.add(link)
    if (not inc.slack_channel_wanted and inc.origin != "import" and not imported
            and inc.status in OPEN_STATUSES):
        # Recorded quietly because it was over when we first heard of it, and now open again (reopened):
        # a live incident, so it gets its channel now. An incident that is over when we can first apply
        # it (its trigger arrives after its resolve, e.g. both delayed by an outage) stays quiet: a
        # channel born resolved helps nobody.
        request_channel(session, inc, fired_by=f"PagerDuty {tr_in.kind}",
                        announce_channel=settings.incident_announce_channel, invite_oncall=True,
                        web_base_url=settings.web_base_url)
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
                               "recorded at the time it was received", source_event_id=f"{ev.event_id}:clamped",
                          known_new=True)
    if not (imported and grouping.said_already(session, inc.id, tr_in.kind, at, ev.agent)):
        repo.add_timeline(
            session, incident_id=inc.id, occurred_at=at, source=SOURCE, kind=tr_in.kind, text=tr_in.text,
            actor=ev.agent, milestone=milestone_for(tr_in.kind, tr.changed), source_event_id=row_id,
            # Each delivery is applied once (the inbox), so its row is new; the trigger's row may already be
            # the incident's opening row.
            known_new=tr_in.kind != "triggered",
        )
    if (ev.event_type == "incident.acknowledged" and ev.agent_id and settings.pagerduty_rest_enabled
            and not imported):
        # Responders are invited to the channel as they acknowledge (paged services included).
        repo.enqueue(session, order_key=f"incident:{inc.id}", method="incident.invite_pd_user",
                     incident_id=inc.id, payload={"pd_user_id": ev.agent_id},
                     dedup_key=f"invite-pd:{inc.id}:{ev.agent_id}")
    if not announce:
        return
    # An ack/resolve/reopen that changes nothing (late, or the echo of a resolve done from Slack) is
    # recorded on the timeline but not announced again.
    echo = tr_in.kind in ("acknowledged", "resolved", "reopened") and not tr.changed and not tr.status_changed
    # An acknowledgement that arrives after the resolve changes acknowledged_at (the first ack counts)
    # but is old news in the channel.
    echo = echo or (tr_in.kind == "acknowledged" and inc.status in ("resolved", "closed"))
    if tr_in.channel and not echo:
        post(session, inc, outbox.intent("pagerduty_update", incident=outbox.facts(inc, *BADGE_FACTS),
                                         said=tr_in.channel, text=tr_in.text))
    if inc.severity != before_sev or inc.status != before_status:
        set_topic(session, inc)


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
    # Set only what changed: most deliveries repeat the incident's details, and every attribute set on
    # an ORM entity is change tracking and validation, changed or not (a tenth of the fold's CPU).
    for name, value in (
        ("title", pd.title or inc.title),
        ("service", pd.service_name or inc.service),
        ("pagerduty_url", pd.html_url or inc.pagerduty_url),
        ("pagerduty_service_id", pd.service_id or inc.pagerduty_service_id),
        ("pagerduty_escalation_policy_id", pd.escalation_policy_id or inc.pagerduty_escalation_policy_id),
        ("pagerduty_priority", pd.priority),
        ("pagerduty_urgency", pd.urgency or inc.pagerduty_urgency),
        ("details_at", at),
    ):
        if getattr(inc, name) != value:
            setattr(inc, name, value)
