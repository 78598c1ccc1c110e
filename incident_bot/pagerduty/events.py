"""Parse a PagerDuty webhook v3 delivery into the plain data the fold reads (``usecases/pagerduty_event.py``).

Untrusted input: every field is checked for type, lengths are capped, and anything missing that the
contract requires (``event.id``, ``event.event_type``) is a :class:`MalformedDelivery` (HTTP 400).
``priority``, ``agent`` and ``client`` may be null, as PagerDuty documents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dateutil import parser as dtparser

from incident_bot.core.text import clean
from incident_bot.usecases.pagerduty_event import HANDLED_TYPES, PagerDutyEvent, PagerDutyIncident
from storage.limits import EVENT_ID_LEN, PAGERDUTY_ID_LEN, PAGERDUTY_PRIORITY_LEN

MAX_TEXT = 4000


class MalformedDelivery(ValueError):
    """The body is not a PagerDuty webhook v3 delivery we can read."""


def _str(value: Any, limit: int = 512) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    # JSON escapes can carry NUL (PostgreSQL refuses it in text) and lone surrogates (not encodable as
    # UTF-8, so no database stores them): both would fail the transaction of a valid delivery.
    # Bidi and other control characters go too (core/text.py): one rule for all outside text.
    value = clean(value).strip()
    return value[:limit] if value else None


def _id(value: Any, where: str, limit: int = PAGERDUTY_ID_LEN) -> str | None:
    """An id is refused when longer than its column, never cut: two ids with a common prefix would
    become one incident, or the second delivery a "duplicate" of the first."""
    text = _str(value, limit + 1)
    if text is not None and len(text) > limit:
        raise MalformedDelivery(f"'{where}' is longer than {limit} characters")
    return text


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> datetime | None:
    text = _str(value, 64)
    if not text:
        return None
    try:
        # The C parser takes what PagerDuty sends (RFC 3339) in a microsecond; dateutil, 20 times slower,
        # the rest of ISO 8601 (both on the accept path, twice a delivery).
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = dtparser.isoparse(text)
        except (ValueError, OverflowError):
            return None
    if parsed.tzinfo is None:
        return None  # PagerDuty always sends a zone; a naive time is not trustworthy
    try:
        return parsed.astimezone(UTC)  # stored as UTC; 9999-12-31T23:59-01:00 has no UTC date
    except (ValueError, OverflowError):
        return None


def _incident(data: dict[str, Any]) -> PagerDutyIncident | None:
    if data.get("type") not in ("incident", "incident_reference") or not _id(data.get("id"), "event.data.id"):
        return None
    if data.get("type") == "incident_reference" and not data.get("title"):
        return None
    service = _dict(data.get("service"))
    policy = _dict(data.get("escalation_policy"))
    priority = _dict(data.get("priority"))
    number = data.get("number")
    return PagerDutyIncident(
        id=_id(data["id"], "event.data.id") or "",
        title=_str(data.get("title"), 1024) or _str(data.get("summary"), 1024) or "(untitled incident)",
        created_at=_time(data.get("created_at")),
        html_url=_str(data.get("html_url"), 1024),
        number=number if isinstance(number, int) and not isinstance(number, bool) else None,
        status=_str(data.get("status"), 32),
        service_id=_id(service.get("id"), "event.data.service.id"),
        service_name=_str(service.get("summary"), 255) or _str(service.get("name"), 255),
        escalation_policy_id=_id(policy.get("id"), "event.data.escalation_policy.id"),
        # Whole names: SEVERITY_MAP keys are whole names (a cut name could never match its key).
        priority=_str(priority.get("summary"), PAGERDUTY_PRIORITY_LEN)
        or _str(priority.get("name"), PAGERDUTY_PRIORITY_LEN),
        urgency=_str(data.get("urgency"), 16),
    )


def parse_delivery(body: bytes) -> PagerDutyEvent:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # also an integer over Python's 4300-digit limit
        raise MalformedDelivery(f"body is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), dict):
        raise MalformedDelivery("missing object 'event'")
    event = doc["event"]
    event_id = _id(event.get("id"), "event.id", EVENT_ID_LEN)
    event_type = _str(event.get("event_type"), 64)
    if not event_id:
        raise MalformedDelivery("missing 'event.id'")
    if not event_type:
        raise MalformedDelivery("missing 'event.event_type'")
    occurred_at = _time(event.get("occurred_at"))
    if event.get("occurred_at") is not None and occurred_at is None:
        raise MalformedDelivery("'event.occurred_at' is not an ISO 8601 time with a zone")
    data = _dict(event.get("data"))
    agent = _dict(event.get("agent"))
    incident = _incident(data)
    incident_id = incident.id if incident else None
    note = None
    responder = None
    if data.get("type") in ("incident_note", "incident_status_update", "incident_responder"):
        ref = _dict(data.get("incident"))
        incident_id = _id(ref.get("id"), "event.data.incident.id")
        note = _str(data.get("content"), MAX_TEXT) or _str(data.get("message"), MAX_TEXT)
        responder = _str(_dict(data.get("user")).get("summary"), 255)
    elif incident is None and isinstance(data.get("incident"), dict):
        incident_id = _id(data["incident"].get("id"), "event.data.incident.id")
    assignees = tuple(
        name for a in (data.get("assignees") or []) if isinstance(a, dict)
        if (name := _str(a.get("summary"), 255))
    )
    if event_type.startswith("incident.") and event_type in HANDLED_TYPES and not incident_id:
        raise MalformedDelivery(f"{event_type} without an incident id in 'event.data'")
    return PagerDutyEvent(
        event_id=event_id,
        event_type=event_type,
        occurred_at=occurred_at,
        agent=_str(agent.get("summary"), 255),
        agent_id=_id(agent.get("id"), "event.agent.id") if agent.get("type") == "user_reference" else None,
        incident_id=incident_id,
        incident=incident,
        note=note,
        assignees=assignees,
        responder=responder,
    )
