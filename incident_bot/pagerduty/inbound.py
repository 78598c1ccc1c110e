"""PagerDuty webhooks in: the accept step (verify, parse, store) and the fold's applier.

Accept: the signature (any ``v1=`` of the header, secret rotation), the body parsed and bounded
(``events.parse_delivery``), then ONE inbox INSERT keyed on PagerDuty's event id. Apply (later, in the
fold worker): the stored body parsed again and folded into its incident by the use case.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from incident_bot.config import Settings
from incident_bot.pagerduty import translate as meaning
from incident_bot.pagerduty.events import MalformedDelivery, parse_delivery
from incident_bot.pipeline import inbox
from incident_bot.pipeline.fold import Applied, Plan
from incident_bot.usecases.backfill import IMPORT_SOURCE  # history read back by `incident-bot backfill pagerduty`
from incident_bot.usecases.pagerduty_event import PagerDutyEvent, PagerDutyIncident, Translation
from incident_bot.usecases.pagerduty_ingest import bound_times, fold_event, plan_batch
from incident_bot.usecases.runner import Engine, Session
from storage.models import InboxDelivery

SOURCE = "pagerduty"


def store(engine: Engine, ev: PagerDutyEvent, body: bytes) -> inbox.Accepted:
    """One INSERT. An event type we do not handle is recorded as done (``ignored``) with no body: PagerDuty
    adds types, and a 4xx for them would make it disable the subscription."""
    if not ev.known or not ev.incident_id:
        return inbox.accept(engine, source=SOURCE, event_id=ev.event_id, event_type=ev.event_type, payload="",
                            status=inbox.DONE, outcome="ignored")
    return inbox.accept(engine, source=SOURCE, event_id=ev.event_id, event_type=ev.event_type,
                        payload=body.decode("utf-8"), subject_id=ev.incident_id)


class PagerDutyApplier:
    """The fold's applier for stored PagerDuty deliveries (see ``pipeline.fold.Applier``), and the fold's
    reader of PagerDuty (``usecases.pagerduty_event.Reader``): parsing and translation stay here.

    ``imported``: the applier of source ``pagerduty-import`` (``incident-bot backfill pagerduty``): the
    same fold, quietly (no channel, no message, no outbox row)."""

    def __init__(self, settings: Settings, *, imported: bool = False) -> None:
        self.settings = settings
        self.imported = imported
        # New timeline and outbox rows are written with the batch's (no savepoint here); an import's "said
        # already" reads the rows queued so far as well as the database (grouping.said_already).
        self.writes_at_end = True

    def plan(self, s: Session, rows: Sequence[InboxDelivery], plan: Plan) -> None:
        plan_batch(s, self.settings, rows, plan, lambda r: _incident_of(s, r),
                   source=IMPORT_SOURCE if self.imported else SOURCE)

    def apply(self, s: Session, row: InboxDelivery) -> Applied:
        result = fold_event(s, self.settings, _event_of(s, row), row, self, imported=self.imported)
        return Applied(result.outcome, result.incident_id)

    # -- the fold's Reader ----------------------------------------------------------------------------
    def event_of(self, row: InboxDelivery) -> PagerDutyEvent:
        """A delivery deferred until its incident opened, read back when it is applied."""
        return bound_times(parse_delivery((row.payload or "").encode()), row.received_at)

    def translate(self, ev: PagerDutyEvent, at: datetime) -> Translation:
        return meaning.translate(ev, at, self.settings.severity_map)

    def severity(self, pd: PagerDutyIncident) -> str | None:
        return meaning.severity_of(pd, self.settings.severity_map)


def _event_of(s: Session, row: InboxDelivery) -> PagerDutyEvent:
    """The row's delivery, parsed once per transaction (the plan reads it too), with the clock rule: a
    source time later than the row's receipt (plus a small skew) is clamped to it."""
    cache: dict[int, PagerDutyEvent] = s.info.setdefault("pd_events", {})
    ev = cache.get(row.id or 0)
    if ev is None:
        ev = bound_times(parse_delivery((row.payload or "").encode()), row.received_at)
        if row.id is not None:
            cache[row.id] = ev
    return ev


def _incident_of(s: Session, row: InboxDelivery) -> PagerDutyIncident | None:
    try:
        return _event_of(s, row).incident
    except MalformedDelivery:
        return None  # apply() raises on it, and the fold isolates the row
