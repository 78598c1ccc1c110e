"""PagerDuty event -> lifecycle signals, a timeline entry and what the channel is told (as plain data: the
Slack adapter words it, slack/intents.py ``pagerduty_update``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from incident_bot.core.lifecycle import Signal
from incident_bot.core.severity import priority_key, severity_for
from incident_bot.usecases.pagerduty_event import PagerDutyEvent, PagerDutyIncident, Translation

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # unmapped priority names already logged (bounded: names come from signed bodies)
_WARN_CAP = 1000


def severity_of(inc: PagerDutyIncident, severity_map: Mapping[str, str]) -> str | None:
    """The severity PagerDuty's priority (or, with none, urgency) maps to; None for a priority name that
    SEVERITY_MAP does not name, logged once per name so an operator can add it."""
    sev = severity_for(inc.priority, inc.urgency, severity_map)
    if sev is None and inc.priority:
        key = priority_key(inc.priority)
        if key not in _WARNED and len(_WARNED) < _WARN_CAP:
            _WARNED.add(key)
            log.warning("PagerDuty priority %r is not in SEVERITY_MAP: severity left as it is "
                        "(add it, e.g. SEVERITY_MAP=%s=SEV1)", inc.priority[:80], inc.priority[:80])
    return sev


def _by(ev: PagerDutyEvent) -> str:
    return f" by {ev.agent}" if ev.agent else ""


def translate(ev: PagerDutyEvent, at: datetime, severity_map: Mapping[str, str]) -> Translation:
    t = ev.event_type
    inc = ev.incident
    by = _by(ev)
    said: dict[str, Any] = {"by": ev.agent} if ev.agent else {}
    signals: list[Signal] = []
    if inc and inc.created_at:
        signals.append(Signal("detected", at=at, when=inc.created_at))

    if t == "incident.triggered":
        if inc and (sev := severity_of(inc, severity_map)):
            signals.append(Signal("severity", at=at, value=sev))
        return Translation(signals, "triggered", f"PagerDuty triggered: {inc.title if inc else ''}", None)
    if t == "incident.acknowledged":
        signals.append(Signal("acknowledge", at=at))
        return Translation(signals, "acknowledged", f"Acknowledged{by}", {"event": "acknowledged", **said})
    if t == "incident.unacknowledged":
        signals.append(Signal("unacknowledge", at=at))
        return Translation(signals, "unacknowledged", "Acknowledgement timed out", {"event": "unacknowledged"})
    if t == "incident.resolved":
        signals.append(Signal("resolve", at=at))
        return Translation(signals, "resolved", f"Resolved in PagerDuty{by}", {"event": "resolved", **said})
    if t == "incident.reopened":
        signals.append(Signal("reopen", at=at))
        return Translation(signals, "reopened", f"Reopened{by}", {"event": "reopened", **said})
    if t in ("incident.escalated", "incident.reassigned", "incident.delegated"):
        kind = t.split(".", 1)[1]
        to = ", ".join(ev.assignees)
        text = f"{kind.capitalize()}{by}" + (f" to {to}" if to else "")
        return Translation(signals, kind, text, {"event": kind, **said, "to": to or None})
    if t == "incident.priority_updated":
        prio = inc.priority if inc else None
        sev = severity_of(inc, severity_map) if inc else severity_for(None, None, severity_map)
        if sev is None:  # a priority name SEVERITY_MAP does not know: recorded, severity unchanged
            text = f"Priority changed to {prio} (not in SEVERITY_MAP: severity unchanged){by}"
            return Translation(signals, "priority_updated", text,
                               {"event": "priority_updated", **said, "priority": prio, "severity": None})
        signals.append(Signal("severity", at=at, value=sev))
        text = f"Priority changed to {prio or 'none'} ({sev}){by}"
        return Translation(signals, "priority_updated", text,
                           {"event": "priority_updated", **said, "priority": prio, "severity": sev})
    if t == "incident.service_updated":
        service = inc.service_name if inc else None
        text = f"Service changed to {service or 'none'}{by}"
        return Translation(signals, "service_updated", text, {"event": "service_updated", **said, "service": service})
    if t == "incident.annotated":
        note = ev.note or ""
        return Translation(signals, "note", note, {"event": "note", **said, "note": note})
    if t == "incident.status_update_published":
        note = ev.note or ""
        return Translation(signals, "status_update", note, {"event": "status_update", **said, "note": note})
    if t in ("incident.responder.added", "incident.responder.replied"):
        who = ev.responder or "a responder"
        verb = "added as responder" if t.endswith("added") else "replied to the responder request"
        return Translation(signals, "responder", f"{who} {verb}", {"event": t.removeprefix("incident."), "who": who})
    return Translation(signals, t.removeprefix("incident."), t, None)
