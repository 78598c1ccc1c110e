"""Stable machine-readable shapes (``--format json``): ISO 8601 UTC with ``Z``, whole seconds, null."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core.durations import durations, iso_utc
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.core.markup import row_plain
from incident_bot.core.people import ID_TOKEN, Directory
from incident_bot.usecases import similar
from incident_bot.usecases.directory import directory
from incident_bot.usecases.incidents import NoSuchIncident
from storage import repo
from storage.models import Incident


def iso(ts: datetime | None) -> str | None:
    return iso_utc(ts)


ROLES = ("commander", "comms", "scribe", "reporter")


def incident_dict(inc: Incident, people: Directory | None = None) -> dict[str, Any]:
    """One incident for machines. People are ``{"id": "U0ADA", "name": "Ada"}`` (name null when unknown)."""
    people = people or Directory()
    ms = {m: getattr(inc, m) for m in MILESTONES}
    return {
        "ref": inc.ref,
        "title": inc.title,
        "status": inc.status,
        "severity": inc.severity,
        "service": inc.service,
        "pagerduty": {"incident_id": inc.pagerduty_incident_id, "url": inc.pagerduty_url},
        "slack": {"channel_id": inc.slack_channel_id, "channel_name": inc.slack_channel_name},
        "milestones": {m: iso(v) for m, v in ms.items()},
        "metrics": durations(ms),
        "people": {role: people.person(getattr(inc, f"{role}_id")) for role in ROLES},
    }


def incident_detail(session: Session, inc: Incident) -> dict[str, Any]:
    rows = list(repo.timeline(session, inc.id or 0))
    people = directory(session, [*(getattr(inc, f"{r}_id") for r in ROLES), *(e.actor for e in rows),
                                 *(m for e in rows for m in ID_TOKEN.findall(e.text or ""))])
    doc = incident_dict(inc, people)
    # ``actor`` stays the stored id (or PagerDuty name); ``actor_name`` is what a person reads.
    doc["timeline"] = [
        {"occurred_at": iso(e.occurred_at), "source": e.source, "kind": e.kind, "actor": e.actor,
         "actor_name": people.name(e.actor) or None, "text": row_plain(e.source, e.text),
         "text_named": people.humanize(row_plain(e.source, e.text))}
        for e in rows
    ]
    return doc


def incident_docs(session: Session, status: str = "open") -> list[dict[str, Any]]:
    """``incidents list``: the incidents of a status, newest first, as :func:`incident_dict`."""
    return [incident_dict(i) for i in list_incidents(session, status)]


def incident_show(session: Session, ref: str, *, window: timedelta) -> dict[str, Any]:
    """``incidents show``: :func:`incident_detail` with its similar past incidents and its recurrence."""
    inc = repo.incident_by_ref(session, ref)
    if inc is None:
        raise NoSuchIncident(ref)
    doc = incident_detail(session, inc)
    learned = similar.learn(session, inc, window=window)
    doc["similar"] = [similar.past_json(p) for p in learned.similar]
    doc["recurrence"] = similar.recurrence_json(learned.recurrence)
    return doc


def list_incidents(session: Session, status: str = "open") -> list[Incident]:
    stmt = select(Incident).order_by(Incident.number.desc())  # type: ignore[attr-defined]
    if status == "open":
        stmt = stmt.where(Incident.status.in_(("triggered", "acknowledged", "mitigated")))  # type: ignore[attr-defined]
    elif status == "resolved":
        stmt = stmt.where(Incident.status.in_(("resolved", "closed")))  # type: ignore[attr-defined]
    return list(session.execute(stmt).scalars())
