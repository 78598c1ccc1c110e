"""Grouping after the fact: merge two incidents, split a PagerDuty incident out of a group.

``merge(target, other)``: every PagerDuty incident of ``other`` joins ``target`` (linked, not primary:
their events no longer move a lifecycle, see ``usecases.grouping``); detection becomes the earlier of
the two; ``other`` is resolved and closed as a duplicate and its metrics row removed, so metrics count
the pair once. ``unlink(inc, pd_id)``: a joined PagerDuty incident leaves the group and opens its own
incident (with a channel, unless the group is quiet), detected at its own trigger time.

Both run in one transaction; the caller locks the incidents (the CLI through :func:`merge_refs` and
:func:`unlink_ref`; the Slack command holds the counter lock first, see ``slack/apply.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.core.lifecycle import Signal
from incident_bot.pipeline.outbox import facts, intent
from incident_bot.usecases.incidents import (
    NewIncident,
    NoSuchIncident,
    apply_signals,
    open_incident,
    post,
    refresh_metrics,
)
from storage import repo
from storage.models import Incident, IncidentMetrics, PagerDutyLink, utcnow


@dataclass(frozen=True)
class Result:
    ok: bool
    text: str
    incident: Incident | None = None


def merge_refs(session: Session, target_ref: str, other_ref: str) -> Result:
    """``incidents merge A B``: the counter lock, then both incidents locked in id order (the order every
    fold batch locks in, so no deadlock), then :func:`merge`."""
    repo.lock_counter(session)
    found = {ref: repo.incident_by_ref(session, ref) for ref in (target_ref, other_ref)}
    missing = [ref for ref, inc in found.items() if inc is None]
    if missing:
        raise NoSuchIncident(missing[0])
    target, other = found[target_ref], found[other_ref]
    assert target is not None and other is not None
    for inc in sorted((target, other), key=lambda i: i.id or 0):
        repo.lock_incident(session, inc.id or 0)
    return merge(session, target, other, actor=None)


def unlink_ref(session: Session, settings: Settings, ref: str, pd_id: str) -> Result:
    """``incidents unlink REF PD``: the counter lock, the incident locked, then :func:`unlink`."""
    repo.lock_counter(session)
    inc = repo.incident_by_ref(session, ref, lock=True)
    if inc is None:
        raise NoSuchIncident(ref)
    return unlink(session, settings, inc, pd_id, actor=None)


def merge(session: Session, target: Incident, other: Incident, *, actor: str | None) -> Result:
    if target.id == other.id:
        return Result(False, f"{target.ref} cannot be merged into itself.")
    if other.status == "closed":
        return Result(False, f"{other.ref} is closed; reopen it before merging it.")
    assert target.id is not None and other.id is not None
    now = utcnow()
    links = list(session.execute(select(PagerDutyLink).where(PagerDutyLink.incident_id == other.id)).scalars())  # type: ignore[arg-type]
    for link in links:
        link.incident_id, link.primary = target.id, False
        link.triggered_at = link.triggered_at or other.detected_at  # a joined link (grouping.is_joined)
        session.add(link)
    if other.detected_at and target.detected_at and other.detected_at < target.detected_at:
        target.detected_at = other.detected_at
        session.add(target)
        refresh_metrics(session, target)
    repo.add_timeline(session, incident_id=target.id, occurred_at=now, source="slack" if actor else "cli",
                      kind="merged", actor=actor,
                      text=f"{other.ref} merged into this incident ({len(links)} PagerDuty incident(s)): {other.title}")
    for kind in ("resolve", "close"):
        apply_signals(session, other, [Signal(kind, at=now)], strict=False, source="cli", actor=actor)  # type: ignore[arg-type]
    repo.add_timeline(session, incident_id=other.id, occurred_at=now, source="slack" if actor else "cli",
                      kind="merged", actor=actor, text=f"Merged into {target.ref} (a duplicate)")
    session.execute(delete(IncidentMetrics).where(IncidentMetrics.incident_id == other.id))  # type: ignore[arg-type]
    post(session, target, intent("merged_in", ref=other.ref, title=other.title, links=len(links), into=target.ref))
    post(session, other, intent("merged_away", into=facts(target, "ref", "slack_channel_id", "slack_channel_name")))
    return Result(True, f"{other.ref} merged into {target.ref} ({len(links)} PagerDuty incident(s) linked).", target)


def unlink(session: Session, settings: Settings, inc: Incident, pd_id: str, *, actor: str | None) -> Result:
    link = session.get(PagerDutyLink, pd_id.strip())
    if link is None or link.incident_id != inc.id:
        return Result(False, f"PagerDuty incident {pd_id} is not linked to {inc.ref}.")
    if link.primary:
        return Result(False, f"{pd_id} opened {inc.ref}; it cannot leave it (merge or resolve instead).")
    assert inc.id is not None
    title, service_id, url = link.title or f"PagerDuty incident {pd_id}", link.service_id, link.url
    service_name, status = link.service_name, link.status
    detected = link.triggered_at or utcnow()
    session.delete(link)
    session.flush()
    new = open_incident(
        session,
        NewIncident(title=title, detected_at=detected, severity=inc.severity, origin="pagerduty",
                    service=service_name or inc.service, fired_by=f"Split out of {inc.ref}",
                    pagerduty_incident_id=pd_id, pagerduty_url=url, pagerduty_service_id=service_id,
                    opened_kind="triggered", source_event_id=f"trigger:{pd_id}", web_base_url=settings.web_base_url),
        announce_channel=settings.incident_announce_channel, invite_oncall=False,
        quiet=not inc.slack_channel_wanted or status == "resolved",
    )
    moved = session.get(PagerDutyLink, pd_id)
    if moved is not None:
        moved.service_id, moved.title, moved.triggered_at, moved.status = service_id, title, detected, status
        session.add(moved)
    # The group's detection: the earliest trigger of the PagerDuty incidents it still has.
    rest = [t for t in session.execute(select(PagerDutyLink.triggered_at).where(  # type: ignore[call-overload]
        PagerDutyLink.incident_id == inc.id)).scalars() if t is not None]
    if rest and min(rest) != inc.detected_at:
        inc.detected_at = min(rest)
        session.add(inc)
        refresh_metrics(session, inc)
    now = utcnow()
    repo.add_timeline(session, incident_id=inc.id, occurred_at=now, source="slack" if actor else "cli",
                      kind="unlinked", actor=actor, text=f"PagerDuty incident {pd_id} split out into {new.ref}")
    post(session, inc, intent("split_out", pagerduty_id=pd_id, ref=new.ref))
    return Result(True, f"{pd_id} split out of {inc.ref} into {new.ref}.", new)
