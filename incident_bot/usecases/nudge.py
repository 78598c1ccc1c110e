"""Stale-communications reminders: one message in a quiet incident channel per interval of silence.

Run by the scheduler's leader on every tick. Exactly once per interval per incident, whatever the
number of replicas or restarts: the outbox ``dedup_key`` is (incident, start of the quiet stretch,
slot) (see core/nudge.py), and the timeline row of the reminder is written only by the transaction
whose insert won.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.core import nudge
from incident_bot.core.durations import format_duration, iso_utc
from incident_bot.pipeline.outbox import intent
from incident_bot.usecases.incidents import order_key
from storage import repo
from storage.models import Incident, TimelineEvent

OPEN = ("triggered", "acknowledged", "mitigated")
QUIET_RESETS = ("status_update", "status_update_published", "nudge_snoozed")


def enqueue_nudges(session: Session, settings: Settings, now: datetime) -> int:
    """Queue the reminders due at ``now``; returns how many were queued by this call."""
    intervals = nudge.parse_intervals(settings.status_update_interval)
    t = TimelineEvent
    last = (select(t.incident_id, func.max(t.occurred_at).label("at"))
            .where(t.kind.in_(QUIET_RESETS)).group_by(t.incident_id).subquery())  # type: ignore[attr-defined]
    stmt = (select(Incident, last.c.at).outerjoin(last, last.c.incident_id == Incident.id)
            .where(Incident.status.in_(OPEN), Incident.slack_channel_id.is_not(None)))  # type: ignore[attr-defined,union-attr]
    queued = 0
    for inc, last_at in session.execute(stmt).all():
        interval = nudge.interval_for(intervals, inc.severity)
        quiet_since = max(x for x in (last_at, inc.detected_at, inc.created_at) if x is not None)
        slot = nudge.due_slot(now, quiet_since, interval)
        if slot is None:
            continue
        quiet_for = format_duration(int((now - quiet_since).total_seconds()) // 60 * 60)
        payload = {"channel": "$incident", **intent("status_nudge", ref=inc.ref, commander=inc.commander_id,
                                                    quiet_for=quiet_for, interval=format_duration(interval))}
        key = f"status-nudge:{inc.id}:{iso_utc(quiet_since)}:{slot}"
        if repo.enqueue(session, order_key=order_key(inc.id), method="chat.postMessage", payload=payload,
                        incident_id=inc.id, dedup_key=key):
            repo.add_timeline(session, incident_id=inc.id, occurred_at=now, source="bot", kind="status_nudge",
                              actor=None, text=f"Reminded {inc.commander_id or 'the channel'}: no status update "
                                               f"for {quiet_for}", source_event_id=key)
            queued += 1
    return queued


def snooze(session: Session, settings: Settings, inc: Incident, *, user_id: str, now: datetime) -> str:
    """Start a new quiet stretch now: the next reminder comes one interval later. Returns the interval."""
    interval = nudge.interval_for(nudge.parse_intervals(settings.status_update_interval), inc.severity)
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=now, source="slack", kind="nudge_snoozed",
                      actor=user_id, text="Status update reminder snoozed")
    return format_duration(interval)
