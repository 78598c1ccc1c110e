"""CAPA action items: add, list, change status, daily overdue reminders, and closing an incident.

Callers pass an open session (the use-case runner's, :mod:`incident_bot.usecases.runner`); nothing here
commits. The rules (vocabulary, overdue, ordering) are in :mod:`incident_bot.core.capa`; this module
stores them. A change queues its ticket's sync in the same transaction (``usecases.tickets``): the
tracker adapter's jobs (``trackers/jobs.py``) run it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.core import capa
from incident_bot.core.lifecycle import Signal, Transition
from incident_bot.core.markup import stored
from incident_bot.core.people import Directory
from incident_bot.core.rca import safe_url
from incident_bot.pipeline.outbox import intent
from incident_bot.usecases.directory import directory, remember_user
from incident_bot.usecases.incidents import NoSuchIncident, apply_signals, milestone_for
from incident_bot.usecases.json_shapes import iso
from incident_bot.usecases.tickets import queue_ticket_sync
from storage import repo
from storage.models import ActionItem, Incident, utcnow


@dataclass(frozen=True)
class ActionListing:
    item: ActionItem
    incident_ref: str
    overdue: bool


@dataclass(frozen=True)
class CloseOutcome:
    closed: bool
    refused: str | None = None
    open_corrective: list[int] = field(default_factory=list)
    transition: Transition | None = None


def normalise_owner(owner: str | None) -> str | None:
    """``<@U123>``, ``<@U123|bob>``, ``@U123`` or ``U123`` -> ``U123``: owners are Slack user ids."""
    if owner is None or not owner.strip():
        return None
    m = re.fullmatch(r"\s*(?:<@)?@?([UW][A-Z0-9]{2,31})(?:\|[^>]*)?>?\s*", owner)
    if not m:
        raise capa.CapaError(f"owner {owner!r} is not a Slack user id (U123ABC) or mention (<@U123ABC>)")
    return m.group(1)


def add_action(
    session: Session,
    incident: Incident,
    title: str,
    type: str = "corrective",
    priority: str = "medium",
    owner_id: str | None = None,
    due_date: date | None = None,
    ticket_url: str | None = None,
    created_by: str | None = None,
    *,
    source: str = "cli",
    at: datetime | None = None,
    tracker: str | None = None,
) -> ActionItem:
    """Add an action item; allowed in any state, since most follow-up is written after resolution.
    With ``tracker`` (CAPA_TRACKER), its ticket is queued in the same transaction."""
    title = " ".join((title or "").split())
    if not title:
        raise capa.CapaError("an action needs a title")
    if len(title) > 1024:
        raise capa.CapaError("an action title is at most 1024 characters")
    if ticket_url and not safe_url(ticket_url):
        raise capa.CapaError(f"ticket {ticket_url!r} is not an http(s) URL")
    assert incident.id is not None
    item = ActionItem(
        incident_id=incident.id, title=title, type=capa.validate_type(type),
        priority=capa.validate_priority(priority), owner_id=normalise_owner(owner_id), due_date=due_date,
        status="open", ticket_url=(ticket_url or "").strip() or None, created_by=created_by,
        created_at=at or utcnow(),
    )
    session.add(item)
    session.flush()
    extra = "".join([f", owner {item.owner_id}" if item.owner_id else "",
                     f", due {item.due_date.isoformat()}" if item.due_date else ""])
    repo.add_timeline(session, incident_id=incident.id, occurred_at=item.created_at, source=source,
                      kind="action_added", actor=created_by,
                      text=stored(source, f"CAPA action #{item.id} added ({item.type}, {item.priority}{extra}): "
                                          f"{title}"))
    queue_ticket_sync(session, item, tracker, created=True)
    remember_user(session, item.owner_id)  # so the RCA, the digest and reminders can name the owner
    return item


def set_status(session: Session, action_id: int, status: str, *, actor: str | None = None,
               source: str = "cli", at: datetime | None = None, tracker: str | None = None) -> ActionItem:
    """Change an action's status; ``closed_at`` is set by done/wont_do and cleared by reopening.
    With ``tracker``, the ticket is updated to match (a change that came FROM the tracker passes None)."""
    new = capa.validate_status(status)
    stmt = select(ActionItem).where(ActionItem.id == action_id).with_for_update()  # type: ignore[arg-type]
    item = session.execute(stmt).scalar_one_or_none()
    if item is None:
        raise LookupError(f"no action item #{action_id}")
    if item.status == new:
        return item
    when = at or utcnow()
    before, item.status = item.status, new
    item.closed_at = when if new in capa.CLOSED_STATUSES else None
    session.add(item)
    repo.add_timeline(session, incident_id=item.incident_id, occurred_at=when, source=source,
                      kind="action_status", actor=actor,
                      text=stored(source, f"CAPA action #{item.id} {before} → {new}: {item.title}"))
    queue_ticket_sync(session, item, tracker)
    return item


def update_action(session: Session, action_id: int, *, owner_id: str | None = None, clear_owner: bool = False,
                  due_date: date | None = None, clear_due: bool = False, priority: str | None = None,
                  actor: str | None = None, source: str = "cli", at: datetime | None = None,
                  tracker: str | None = None) -> ActionItem:
    """Change an action's owner, due date or priority (what is given); the ticket follows with ``tracker``."""
    stmt = select(ActionItem).where(ActionItem.id == action_id).with_for_update()  # type: ignore[arg-type]
    item = session.execute(stmt).scalar_one_or_none()
    if item is None:
        raise LookupError(f"no action item #{action_id}")
    changed: list[str] = []
    if clear_owner or owner_id is not None:
        owner = None if clear_owner else normalise_owner(owner_id)
        if owner != item.owner_id:
            item.owner_id = owner
            changed.append(f"owner {owner or 'none'}")
    if clear_due or due_date is not None:
        due = None if clear_due else due_date
        if due != item.due_date:
            item.due_date = due
            changed.append(f"due {due.isoformat() if due else 'none'}")
    if priority is not None:
        prio = capa.validate_priority(priority)
        if prio != item.priority:
            item.priority = prio
            changed.append(f"priority {prio}")
    if not changed:
        return item
    session.add(item)
    repo.add_timeline(session, incident_id=item.incident_id, occurred_at=at or utcnow(), source=source,
                      kind="action_changed", actor=actor,
                      text=f"CAPA action #{item.id} changed ({', '.join(changed)}): {item.title}")
    queue_ticket_sync(session, item, tracker)
    return item


def action_of(session: Session, incident: Incident, action_id: int) -> ActionItem | None:
    """Action #``action_id`` of this incident; None when there is none, or it is another incident's."""
    item = session.get(ActionItem, action_id)
    return item if item is not None and item.incident_id == incident.id else None


def list_actions(
    session: Session,
    *,
    open_only: bool = False,
    overdue: bool = False,
    owner: str | None = None,
    incident_ref: str | None = None,
    today: date | None = None,
) -> list[ActionListing]:
    """Actions with their incident: open ones first, each group by priority then due date.
    ``today`` (the team's calendar day) marks overdue ones and is required for ``overdue=True``."""
    if overdue and today is None:
        raise ValueError("listing overdue actions needs today's date in the team's time zone")
    stmt = select(ActionItem, Incident.ref).join(Incident, Incident.id == ActionItem.incident_id)  # type: ignore[arg-type]
    if open_only or overdue:
        stmt = stmt.where(ActionItem.status.in_(capa.OPEN_STATUSES))  # type: ignore[attr-defined]
    if overdue:
        stmt = stmt.where(ActionItem.due_date.is_not(None), ActionItem.due_date < today)  # type: ignore[union-attr,operator]
    if owner:
        stmt = stmt.where(ActionItem.owner_id == normalise_owner(owner))  # type: ignore[arg-type]
    if incident_ref:
        stmt = stmt.where(func.upper(Incident.ref) == incident_ref.strip().upper())
    rows = [
        ActionListing(item, ref, bool(today and capa.is_overdue(item.status, item.due_date, today)))
        for item, ref in session.execute(stmt).all()
    ]
    # Open work first (that is what a list is read for), then by priority and due date.
    rows.sort(key=lambda r: (not capa.is_open(r.item.status),
                             *capa.action_sort_key(r.item.priority, r.item.due_date, r.item.id)))
    return rows


def action_dict(row: ActionListing, people: Directory | None = None) -> dict[str, Any]:
    """The stable JSON shape of ``actions list --format json``; ``owner`` is ``{"id", "name"}`` or null."""
    a = row.item
    return {
        "id": a.id, "incident": row.incident_ref, "title": a.title, "type": a.type, "priority": a.priority,
        "owner": (people or Directory()).person(a.owner_id),
        "due_date": a.due_date.isoformat() if a.due_date else None, "status": a.status,
        "overdue": row.overdue, "ticket_url": a.ticket_url, "ticket_key": a.ticket_key, "created_by": a.created_by,
        "created_at": iso(a.created_at), "closed_at": iso(a.closed_at),
    }


# -- the commands (``actions list|add|set``): one use case each, answering the JSON shape ------------------

def action_docs(session: Session, *, open_only: bool = False, overdue: bool = False, owner: str | None = None,
                incident_ref: str | None = None, today: date | None = None) -> list[dict[str, Any]]:
    """``actions list``: :func:`list_actions` as :func:`action_dict`, with the owners' names."""
    if incident_ref and repo.incident_by_ref(session, incident_ref.strip().upper()) is None:
        raise NoSuchIncident(incident_ref)
    rows = list_actions(session, open_only=open_only, overdue=overdue, owner=owner, incident_ref=incident_ref,
                        today=today)
    people = directory(session, [r.item.owner_id for r in rows])
    return [action_dict(r, people) for r in rows]


def add_action_doc(session: Session, ref: str, title: str, type: str, priority: str, owner_id: str | None,
                   due_date: date | None, ticket_url: str | None, *, source: str,
                   tracker: str | None) -> dict[str, Any]:
    """``actions add``: :func:`add_action` to the incident ``ref``; the new action as :func:`action_dict`."""
    inc = repo.incident_by_ref(session, ref)
    if inc is None:
        raise NoSuchIncident(ref)
    item = add_action(session, inc, title, type, priority, owner_id, due_date, ticket_url, None, source=source,
                      tracker=tracker)
    return action_dict(ActionListing(item, inc.ref, False))


def change_action_doc(session: Session, action_id: int, *, status: str | None, today: date, source: str,
                      tracker: str | None, **changes: Any) -> dict[str, Any]:
    """``actions set``: :func:`update_action` with ``changes``, then :func:`set_status` when a status is
    given; the action as :func:`action_dict`. LookupError: no such action."""
    item = update_action(session, action_id, source=source, tracker=tracker, **changes)
    if status:
        item = set_status(session, action_id, status, source=source, tracker=tracker)
    inc = session.get(Incident, item.incident_id)
    ref = inc.ref if inc else f"#{item.incident_id}"
    return action_dict(ActionListing(item, ref, capa.is_overdue(item.status, item.due_date, today)))


def open_corrective_ids(session: Session, incident_id: int) -> list[int]:
    stmt = select(ActionItem.id).where(
        ActionItem.incident_id == incident_id, ActionItem.type == "corrective",  # type: ignore[arg-type]
        ActionItem.status.in_(capa.OPEN_STATUSES),  # type: ignore[attr-defined]
    ).order_by(ActionItem.id)  # type: ignore[arg-type]
    return [int(i) for i in session.execute(stmt).scalars()]


def open_corrective_count(session: Session, incident_id: int) -> int:
    return len(open_corrective_ids(session, incident_id))


def close_incident(session: Session, incident: Incident, *, actor: str | None, at: datetime,
                   override_reason: str | None = None, source: str = "slack") -> CloseOutcome:
    """Close a resolved incident; refused while corrective actions are open, unless the commander
    gives a reason, which is stored on the incident and in the timeline for the record."""
    assert incident.id is not None
    inc = repo.lock_incident(session, incident.id) or incident
    open_ids = open_corrective_ids(session, incident.id)
    reason = " ".join((override_reason or "").split()) or None
    if open_ids and not reason:
        listed = ", ".join(f"#{i}" for i in open_ids)
        return CloseOutcome(False, refused=(
            f"{inc.ref} has {len(open_ids)} open corrective action(s) ({listed}): finish them, or close "
            "with an override reason"), open_corrective=open_ids)
    tr = apply_signals(session, inc, [Signal(kind="close", at=at)], strict=True, source=source, actor=actor)
    if tr.refused:
        return CloseOutcome(False, refused=tr.refused, open_corrective=open_ids, transition=tr)
    repo.add_timeline(session, incident_id=incident.id, occurred_at=at, source=source, kind="closed",
                      actor=actor, text="Closed", milestone=milestone_for("closed", tr.changed))
    if open_ids:
        inc.close_override_reason = reason
        repo.add_timeline(session, incident_id=incident.id, occurred_at=at, source=source,
                          kind="close_override", actor=actor,
                          text=stored(source, f"Closed with open corrective action(s) "
                                          f"{', '.join(f'#{i}' for i in open_ids)}; reason: {reason}"))
    else:
        inc.close_override_reason = None
    session.add(inc)
    return CloseOutcome(True, open_corrective=open_ids, transition=tr)


# -- reminders ---------------------------------------------------------------------------------------

def _zone_label(zone: tzinfo | str | None, today: date) -> str:
    if zone is None:
        return ""
    if isinstance(zone, str):
        return zone
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=zone)
    return getattr(zone, "key", None) or noon.tzname() or ""


def _reminder_item(item: ActionItem, ref: str, title: str) -> dict[str, Any]:
    """One overdue action as the reminder shows it (plain data; slack/intents.py draws the DM)."""
    return {"id": item.id, "title": item.title, "due_date": item.due_date.isoformat() if item.due_date else None,
            "priority": item.priority, "type": item.type, "status": item.status, "ticket_url": item.ticket_url,
            "ref": ref, "incident_title": title}


def enqueue_overdue_reminders(session: Session, *, today: date, tz: tzinfo | str | None = None) -> int:
    """Queue one DM per owner with all of their overdue open actions; returns how many were queued.

    The dedup key (owner, day) makes this safe to call from every replica and more than once a day:
    the first call of the day queues the DM, later ones find the key taken and queue nothing.
    """
    stmt = (
        select(ActionItem, Incident.ref, Incident.title)
        .join(Incident, Incident.id == ActionItem.incident_id)  # type: ignore[arg-type]
        .where(ActionItem.status.in_(capa.OPEN_STATUSES),  # type: ignore[attr-defined]
               ActionItem.owner_id.is_not(None),  # type: ignore[union-attr]
               ActionItem.due_date.is_not(None), ActionItem.due_date < today)  # type: ignore[union-attr,operator]
    )
    by_owner: dict[str, list[tuple[ActionItem, str, str]]] = defaultdict(list)
    for item, ref, title in session.execute(stmt).all():
        by_owner[str(item.owner_id)].append((item, ref, title))
    label = _zone_label(tz, today)
    queued = 0
    for owner in sorted(by_owner):
        rows = sorted(by_owner[owner],
                      key=lambda r: capa.action_sort_key(r[0].priority, r[0].due_date, r[0].id))
        payload = {"channel": owner, **intent("capa_reminder", owner=owner, today=today.isoformat(), zone_label=label,
                                              items=[_reminder_item(*r) for r in rows])}
        if repo.enqueue(session, order_key=f"dm:{owner}", method="chat.postMessage", payload=payload,
                        dedup_key=f"capa-reminder:{owner}:{today.isoformat()}"):
            queued += 1
    return queued
