"""Stable machine-readable shapes (``--format json``): ISO 8601 UTC with ``Z``, whole seconds, null."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core.durations import durations
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.slack.mrkdwn import row_plain
from storage import repo
from storage.models import Incident


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def incident_dict(inc: Incident) -> dict[str, Any]:
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
    }


def incident_detail(session: Session, inc: Incident) -> dict[str, Any]:
    doc = incident_dict(inc)
    doc["timeline"] = [
        {"occurred_at": iso(e.occurred_at), "source": e.source, "kind": e.kind, "actor": e.actor,
         "text": row_plain(e.source, e.text)}
        for e in repo.timeline(session, inc.id or 0)
    ]
    return doc


def list_incidents(session: Session, status: str = "open") -> list[Incident]:
    stmt = select(Incident).order_by(Incident.number.desc())  # type: ignore[attr-defined]
    if status == "open":
        stmt = stmt.where(Incident.status.in_(("triggered", "acknowledged", "mitigated")))  # type: ignore[attr-defined]
    elif status == "resolved":
        stmt = stmt.where(Incident.status.in_(("resolved", "closed")))  # type: ignore[attr-defined]
    return list(session.execute(stmt).scalars())
