"""The fold's applier for a tracker's stored webhooks: the body parsed by the tracker's module, the ticket
applied to its CAPA by the use case (``usecases/ticket_changes.py``, with the rules, and the reconcile).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from incident_bot.pipeline.fold import Applied, Plan
from incident_bot.trackers.base import Ticket
from incident_bot.usecases.runner import Session
from incident_bot.usecases.ticket_changes import apply_ticket
from incident_bot.usecases.ticket_changes import reconcile as reconcile  # where `incident-bot actions sync` finds it
from storage.models import InboxDelivery


class TrackerApplier:
    """The fold's applier for one tracker's stored webhooks (see ``pipeline.fold.Applier``)."""

    def __init__(self, tracker: str, parse: Callable[[str], Ticket]) -> None:
        self.tracker, self.parse = tracker, parse

    def plan(self, s: Session, rows: Sequence[InboxDelivery], plan: Plan) -> None:
        """Nothing to lock up front: an event touches one action, locked (FOR UPDATE) when applied."""

    def apply(self, s: Session, row: InboxDelivery) -> Applied:
        if not row.payload:
            return Applied("ignored")
        ticket = self.parse(row.payload)
        outcome, incident_id = apply_ticket(s, ticket, tracker=self.tracker, source=row.source,
                                            event_id=row.event_id)
        return Applied(outcome[:16], incident_id)
