"""A PagerDuty event as the fold reads it, and what the fold asks of the PagerDuty adapter.

The shapes are plain data that the adapter fills (``pagerduty/events.py`` parses a signed delivery into
them; ``pagerduty/translate.py`` says what an event means). The use cases (``pagerduty_ingest``,
``grouping``) read them and never import the adapter: the arrows point from the adapter to here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from incident_bot.core.lifecycle import Signal
from storage.models import InboxDelivery

# The event types the fold applies; any other is accepted and ignored (PagerDuty adds types).
HANDLED_TYPES = frozenset({
    "incident.triggered", "incident.acknowledged", "incident.unacknowledged", "incident.resolved",
    "incident.reopened", "incident.escalated", "incident.reassigned", "incident.delegated",
    "incident.priority_updated", "incident.annotated", "incident.status_update_published",
    "incident.responder.added", "incident.responder.replied", "incident.service_updated",
})


@dataclass(frozen=True)
class PagerDutyIncident:
    id: str
    title: str
    created_at: datetime | None
    html_url: str | None
    number: int | None
    status: str | None
    service_id: str | None
    service_name: str | None
    escalation_policy_id: str | None
    priority: str | None
    urgency: str | None


@dataclass(frozen=True)
class PagerDutyEvent:
    event_id: str
    event_type: str
    occurred_at: datetime | None
    agent: str | None
    agent_id: str | None
    incident_id: str | None
    incident: PagerDutyIncident | None  # full incident data (most incident.* events carry it)
    note: str | None  # incident.annotated, status_update_published
    assignees: tuple[str, ...] = ()
    responder: str | None = None
    clamped_from: str | None = None  # the source time when it was ahead of receipt (core/clock.py)

    @property
    def known(self) -> bool:
        return self.event_type in HANDLED_TYPES


@dataclass(frozen=True)
class Translation:
    """What an event means: lifecycle signals, a timeline entry, and what the channel is told."""

    signals: list[Signal]
    kind: str
    text: str  # plain text for the timeline
    # What the incident channel is told, as plain data ({"event": ..., "by": agent, ...}); None: stay quiet.
    channel: dict[str, Any] | None


class Reader(Protocol):
    """What the fold needs of the PagerDuty adapter besides the event in hand (``pagerduty/inbound.py``'s
    applier provides it): a stored delivery read back, and PagerDuty's vocabulary."""

    def event_of(self, row: InboxDelivery) -> PagerDutyEvent:
        """A stored delivery, parsed, its times bounded by its receipt (``bound_times``)."""
        ...

    def translate(self, ev: PagerDutyEvent, at: datetime) -> Translation:
        """What ``ev`` means, at ``at`` (its time, or now)."""
        ...

    def severity(self, pd: PagerDutyIncident) -> str | None:
        """The severity PagerDuty's priority (or urgency) maps to; None for a priority not mapped."""
        ...
