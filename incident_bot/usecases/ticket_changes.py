"""Ticket -> CAPA: what a tracker says, applied to the action (a webhook, the reconcile's fetch, and the
answers of our own ``tracker.create`` / ``tracker.update`` jobs).

Rules: a ticket closed while its action is open marks the action done (or wont_do when closed as not
planned / cancelled); a ticket reopened while its action is closed reopens it; a changed due date
re-dates it (Jira and Linear; GitHub has no due date). A ticket state no newer than the one we last
wrote or read (``ticket_synced_at``) is our own change coming back, or an old delivery: ignored. The
incident channel hears of every change, and the close gate and reminders read the action's status, so
they follow the tracker without knowing it exists.

The ticket comes as :class:`~incident_bot.usecases.tracker_ticket.Ticket`, filled by the tracker adapter
(``trackers/``: one parser per tracker); this module knows no tracker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core import capa
from incident_bot.pipeline.outbox import intent
from incident_bot.usecases import actions as capa_svc
from incident_bot.usecases.incidents import post
from incident_bot.usecases.tickets import queue_ticket_sync
from incident_bot.usecases.tracker_ticket import UNSET, Ticket
from storage import repo
from storage.models import ActionItem, Incident, utcnow


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def apply_ticket(session: Session, ticket: Ticket, *, tracker: str, source: str,
                 event_id: str | None = None) -> tuple[str, int | None]:
    """Apply one ticket state to its action. Returns (outcome, incident id)."""
    stmt = select(ActionItem).where(ActionItem.ticket_key == ticket.key).with_for_update()  # type: ignore[arg-type]
    item = session.execute(stmt).scalars().first()
    if item is None:
        return "unknown", None
    synced = _aware(item.ticket_synced_at)
    if ticket.updated_at is not None and synced is not None and ticket.updated_at <= synced:
        return "stale", item.incident_id
    inc = session.get(Incident, item.incident_id)
    now = utcnow()
    said: list[dict[str, str | None]] = []  # what the channel is told (drawn by slack/intents.py)
    new_status = None
    if ticket.state in capa.CLOSED_STATUSES and capa.is_open(item.status):
        new_status = ticket.state
    elif ticket.state == "open" and item.status in capa.CLOSED_STATUSES:
        new_status = "open"
    elif ticket.state == "in_progress" and item.status == "open":
        new_status = "in_progress"
    if new_status:
        capa_svc.set_status(session, item.id or 0, new_status, actor=ticket.actor, source=source, at=now)
        said.append({"status": new_status, "by": ticket.actor})
    if ticket.due is not UNSET and ticket.due != item.due_date:
        before, item.due_date = item.due_date, ticket.due
        when = ticket.due.isoformat() if ticket.due else "no due date"
        repo.add_timeline(session, incident_id=item.incident_id, occurred_at=now, source=source,
                          kind="action_due", actor=ticket.actor,
                          text=f"CAPA action #{item.id} re-dated in {tracker}: "
                               f"{before.isoformat() if before else 'none'} → {when}")
        said.append({"due": ticket.due.isoformat() if ticket.due else None, "by": ticket.actor})
    item.ticket_state = ticket.state
    item.ticket_synced_at = ticket.updated_at or now
    if ticket.url:
        item.ticket_url = ticket.url
    session.add(item)
    if said and inc is not None:
        post(session, inc, intent("ticket_changed", ref=inc.ref, tracker=tracker, key=ticket.key, url=ticket.url,
                                  action_id=item.id, title=item.title, changes=said))
    return ("applied" if said else "unchanged"), item.incident_id


def apply_tickets(session: Session, tickets: Sequence[Ticket], *, tracker: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for ticket in tickets:
        outcome, _ = apply_ticket(session, ticket, tracker=tracker, source="sync")
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def missing_tickets(session: Session) -> list[ActionItem]:
    """Open actions without a ticket (added before the tracker was set up, or whose create was parked)."""
    stmt = select(ActionItem).where(ActionItem.ticket_key.is_(None), ActionItem.ticket_url.is_(None),  # type: ignore[union-attr]
                                    ActionItem.status.in_(capa.OPEN_STATUSES))  # type: ignore[attr-defined]
    return list(session.execute(stmt).scalars())


def reconcile(session: Session, tickets: Sequence[Ticket], *, tracker: str, capa_tracker: str | None,
              incident_ref: str | None = None) -> tuple[dict[str, int], int]:
    """The reconcile (the scheduler's daily ``tracker.sync`` job, ``incident-bot actions sync``): apply every
    ticket read back, then queue a ticket for each open action that has none (only those of
    ``incident_ref``, when given). Returns (outcomes counted, tickets queued)."""
    counts = apply_tickets(session, tickets, tracker=tracker)
    queued = 0
    for item in missing_tickets(session):
        inc = session.get(Incident, item.incident_id) if incident_ref else None
        if not incident_ref or (inc.ref if inc else f"#{item.incident_id}").upper() == incident_ref.upper():
            queue_ticket_sync(session, item, capa_tracker, created=True)
            queued += 1
    return counts, queued


@dataclass(frozen=True)
class Tracked:
    """What the channel is told of a ticket a ``tracker.create`` job made (or found after a lost answer)."""

    tracker: str  # "GitHub", "Jira", "Linear"
    assigned: bool
    owner_name: str | None
    assignee_note: str | None


def ticket_created(session: Session, action_id: int, ticket: Ticket, told: Tracked, *, adopted: bool,
                   capa_tracker: str | None) -> None:
    """The ``tracker.create`` job's ticket, stored on its action, and the channel told. ``adopted``: found
    after a lost answer, so written from an older state of the action: its update is queued."""
    item = session.get(ActionItem, action_id)
    if item is None:
        return
    item.ticket_key, item.ticket_state = ticket.key, ticket.state
    item.ticket_url = ticket.url or item.ticket_url
    item.ticket_synced_at = ticket.updated_at
    session.add(item)
    if adopted:
        queue_ticket_sync(session, item, capa_tracker)
    inc = session.get(Incident, item.incident_id)
    if inc is None:
        return
    post(session, inc, intent("ticket_tracked", ref=inc.ref, action_id=item.id, tracker=told.tracker, key=ticket.key,
                              url=ticket.url, assigned=told.assigned, owner_name=told.owner_name,
                              assignee_note=told.assignee_note))


def ticket_updated(session: Session, action_id: int, ticket: Ticket) -> None:
    """The ``tracker.update`` job's answer: the ticket's state as we wrote it (its own webhook is then stale)."""
    item = session.get(ActionItem, action_id)
    if item is not None:
        item.ticket_state, item.ticket_synced_at = ticket.state, ticket.updated_at
        item.ticket_url = ticket.url or item.ticket_url
        session.add(item)
