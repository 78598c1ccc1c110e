"""CAPA tickets: what the use cases queue for the team's tracker, and what its jobs read when they run.

A change to a CAPA queues its ticket's sync in the same transaction (so a change and its sync are one):
``tracker.create`` once per action (dedup key), ``tracker.update`` after every later change, both on
the order key ``capa:<id>`` so an update always runs after its create. The tracker adapter's jobs
(``trackers/jobs.py``) carry only the action id and read the action when they run
(:func:`action_snapshot`): a queued update pushes the CAPA as it is then, never a stale one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlmodel import Session

from storage import repo
from storage.models import ActionItem, Incident, SlackUser


def ticket_order_key(action_id: int) -> str:
    return f"capa:{action_id}"


def queue_ticket_sync(session: Session, item: ActionItem, tracker: str | None, *, created: bool = False) -> None:
    """Queue the ticket's create (once) and, for a change, an update behind it. No-op without a tracker.

    In the transaction that changes the CAPA (so a change and its sync are one): ``tracker.create`` once
    per action (dedup key), ``tracker.update`` after every later change, both on the order key
    ``capa:<id>`` so an update always runs after its create."""
    if not tracker or item.id is None:
        return
    if item.ticket_url and not item.ticket_key:
        return  # linked by hand to a ticket elsewhere (``--ticket URL``): not ours to create or change
    repo.enqueue(session, order_key=ticket_order_key(item.id), method="tracker.create",
                 payload={"action_id": item.id}, incident_id=item.incident_id,
                 dedup_key=f"tracker-create:{tracker}:{item.id}")
    if not created:
        repo.enqueue(session, order_key=ticket_order_key(item.id), method="tracker.update",
                     payload={"action_id": item.id}, incident_id=item.incident_id)


def queue_ticket_reconcile(session: Session, tracker: str, day: date) -> bool:
    """Queue the day's reconcile with the CAPA tracker (``tracker.sync``: read every ticket back); False when
    that day's was queued already (the dedup key: once a day, whichever replica leads)."""
    return repo.enqueue(session, order_key="tracker-sync", method="tracker.sync", payload={},
                        dedup_key=f"tracker-sync:{tracker}:{day.isoformat()}")


@dataclass(frozen=True)
class ActionSnapshot:
    """An action as its ticket is written from it, read when the job runs (detached from the session)."""

    item: ActionItem
    incident: Incident
    owner_name: str | None  # from the Slack user cache, when the owner is in it
    owner_email: str | None


def action_snapshot(session: Session, action_id: int) -> ActionSnapshot | None:
    """The action, its incident and what we know of its owner; None when either is gone."""
    item = session.get(ActionItem, action_id)
    inc = session.get(Incident, item.incident_id) if item else None
    if item is None or inc is None:
        return None
    cached = session.get(SlackUser, item.owner_id) if item.owner_id else None
    session.expunge_all()
    return ActionSnapshot(item, inc, cached.name if cached else None, cached.email if cached else None)


def ticket_keys(session: Session, incident_ref: str | None = None) -> list[str]:
    """The key of every ticket we hold (of one incident), for the reconcile to read back."""
    stmt = select(ActionItem.ticket_key).where(ActionItem.ticket_key.is_not(None))  # type: ignore[union-attr]
    if incident_ref:
        stmt = stmt.join(Incident, Incident.id == ActionItem.incident_id).where(  # type: ignore[arg-type]
            func.upper(Incident.ref) == incident_ref.strip().upper())
    return [str(k) for k in session.execute(stmt).scalars()]
