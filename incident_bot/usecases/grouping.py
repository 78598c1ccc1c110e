"""Alert-storm grouping: a PagerDuty trigger joins the open incident of its service instead of opening one.

Rule (GROUP_BY=service): a PagerDuty incident we have not seen joins the incident of ours whose PagerDuty
service is the same, that was detected within GROUP_WINDOW of the new one's ``created_at`` (either side:
detection moves to the earliest of the group), and that was open at that moment (not resolved, or
resolved after it). The check is on PagerDuty's own times, not on arrival order, so a live webhook and a
backfill of the same history group the same way.

A joined PagerDuty incident is a ``pagerduty_links`` row with ``primary=False`` and its service, title,
trigger time and PagerDuty status. Its events are recorded on the timeline (a row each) but do not move
the incident's lifecycle: **the incident follows its primary PagerDuty incident** (the one that opened
it). Only detection takes the earliest trigger of the group. Resolving from Slack resolves every linked
PagerDuty incident (``usecases.incident_changes._resolve_pagerduty``). See docs/grouping.md.

Locks: ``plan_locks`` runs in the fold's ``plan()``; it takes the counter lock (always the first lock of a
batch) and names the candidate incidents of the services involved, which the fold then locks in id order
with the rest. Holding the counter lock, no other transaction can open an incident for these services in
between, so the candidate found in ``apply`` is one the batch already holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.pipeline import outbox
from incident_bot.usecases.incidents import order_key, refresh_metrics
from incident_bot.usecases.pagerduty_event import PagerDutyEvent, PagerDutyIncident, Translation
from storage import repo
from storage.models import Incident, OutboxMessage, PagerDutyLink, utcnow

STORM_KEY = f"{outbox.HELD}storm:"  # held: later messages overtake it while it waits


def enabled(settings: Settings) -> bool:
    return settings.group_by == "service" and settings.group_window > 0


def candidate_ids(session: Session, settings: Settings, triggers: Iterable[tuple[str, datetime]]) -> set[int]:
    """Every incident that new PagerDuty incidents ``(service id, created_at)`` of a batch may join, for
    the lock plan: a superset of what :func:`find_group` can return (status is not looked at, since
    another transaction may change it before the batch locks)."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for service_id, at in triggers:
        lo, hi = spans.get(service_id, (at, at))
        spans[service_id] = (min(lo, at), max(hi, at))
    if not spans or not enabled(settings):
        return set()
    window = timedelta(seconds=settings.group_window)
    ids: set[int] = set()
    for service_id, (lo, hi) in spans.items():
        stmt = select(Incident.id).where(Incident.pagerduty_service_id == service_id,  # type: ignore[arg-type]
                                         Incident.detected_at >= lo - window,  # type: ignore[operator]
                                         Incident.detected_at <= hi + window)  # type: ignore[operator]
        ids.update(i for i in session.execute(stmt).scalars() if i is not None)
    return ids


def plan_locks(session: Session, settings: Settings, triggers: Iterable[tuple[str, datetime]]) -> set[int]:
    """The lock plan of a batch whose new PagerDuty incidents ``(service id, created_at)`` may join an open
    incident: the counter lock now (always a batch's first lock), so no other batch opens an incident for
    these services until we commit, and the candidates (:func:`candidate_ids`) for the fold to lock in id
    order; it loads them, so :func:`find_group` reads them from the session (``group_candidates_loaded``)."""
    repo.lock_counter(session)
    ids = candidate_ids(session, settings, triggers)
    session.info["group_candidates_loaded"] = True  # the fold locks and loads them (repo.lock_incidents)
    return ids


def find_group(session: Session, settings: Settings, pd: PagerDutyIncident) -> Incident | None:
    """The incident this new PagerDuty incident joins, or None (it opens its own)."""
    if not enabled(settings) or not pd.service_id or pd.created_at is None:
        return None
    window = timedelta(seconds=settings.group_window)
    at = pd.created_at
    if session.info.get("group_candidates_loaded"):
        # The fold's plan named every incident this trigger may join (candidate_ids, same service and
        # window, any status) and locked and loaded them; with the incidents opened or joined in this
        # batch, the answer is in memory, and fresher than a query (the batch writes without autoflush).
        pool = {id(i): i for i in (*session.info.get("loaded_incidents", {}).values(),
                                   *session.info.get("pd_incidents", {}).values()) if i is not None}
        fits = [i for i in pool.values()
                if i.pagerduty_service_id == pd.service_id and i.detected_at is not None
                and at - window <= i.detected_at <= at + window and (i.resolved_at is None or i.resolved_at >= at)]
        return max(fits, key=lambda i: (i.detected_at, i.id or 0), default=None)
    stmt = (select(Incident)
            .where(Incident.pagerduty_service_id == pd.service_id,  # type: ignore[arg-type]
                   Incident.detected_at >= at - window, Incident.detected_at <= at + window,  # type: ignore[operator]
                   or_(Incident.resolved_at.is_(None), Incident.resolved_at >= at))  # type: ignore[union-attr, operator]
            .order_by(Incident.detected_at.desc(), Incident.id.desc())  # type: ignore[union-attr]
            .limit(1))
    return session.execute(stmt).scalar_one_or_none()


def join(session: Session, inc: Incident, ev: PagerDutyEvent, *, source: str, quiet: bool,
         line_hold: timedelta) -> None:
    """Link a new PagerDuty incident to ``inc``: the link, a timeline row, detection, one coalesced line
    (held ``line_hold``, GROUP_LINE_HOLD, for the joins that follow)."""
    pd = ev.incident
    assert pd is not None and inc.id is not None
    repo.add_link(session, PagerDutyLink(pagerduty_incident_id=pd.id, incident_id=inc.id, primary=False,
                                         url=pd.html_url, service_name=pd.service_name, service_id=pd.service_id,
                                         title=pd.title, triggered_at=pd.created_at, status=pd.status or "triggered"))
    # Later deliveries of this PagerDuty incident in the same batch find it without a query (the link is
    # written with the batch; the fold's PagerDuty path runs without autoflush).
    session.info.setdefault("pd_incidents", {})[pd.id] = inc
    at = pd.created_at or ev.occurred_at or utcnow()
    # known_new: a PagerDuty incident joins only while it has no link at all, and a link is never gone
    # after a commit (merge moves it; unlink replaces it in its transaction), so no incident has this
    # "trigger:" row yet. Written with the batch's other rows, no round trip of its own.
    repo.add_timeline(session, incident_id=inc.id, occurred_at=at, source="pagerduty", kind="linked",
                      text=f"PagerDuty incident {pd.id} joined (same service, within the group window): "
                           f"{pd.title}", source_event_id=f"trigger:{pd.id}", known_new=True)
    if inc.detected_at is not None and at < inc.detected_at:
        # Detection is the earliest trigger of the group.
        inc.detected_at = at
        session.add(inc)
        refresh_metrics(session, inc)
    if not quiet and inc.slack_channel_wanted:
        storm_line(session, inc, service=pd.service_name, at=at, title=pd.title, hold=line_hold)


def storm_line(session: Session, inc: Incident, *, service: str | None, at: datetime, title: str,
               hold: timedelta) -> None:
    """One line per burst: a summary still waiting in the outbox is rewritten with the new count (the
    joins coalesce); once it has been sent, the next join starts a new one."""
    assert inc.id is not None
    key = order_key(inc.id)
    held: dict[int, OutboxMessage | repo.QueuedCall] = session.info.setdefault("storm_rows", {})
    row = held.get(inc.id)  # this transaction's line for the incident: found or queued by an earlier join
    if row is None:
        row = _pending_line(session, key, inc.id)
    if row is not None:
        held[inc.id] = row
        # A line queued before intents kept its counts at the top of the payload.
        storm = dict((row.payload.get("data") or row.payload).get("storm") or {})
        first = min(datetime.fromisoformat(storm["first"]), at)
        last = max(datetime.fromisoformat(storm["last"]), at)
        count = int(storm["count"]) + 1
        titles = [*storm.get("titles", []), title][:3]
        row.payload = _payload(count, service, first, last, titles)  # reassigned: JSON column saved
        return
    # Held a few seconds: the joins that follow are counted into it instead of each posting a line (the
    # incident's later messages do not wait for it: outbox.HELD). The dedup key is unique (a uuid):
    # the row is added to the session, written with the batch, and kept for the next join.
    held[inc.id] = repo.enqueue_row(session, order_key=key, method="chat.postMessage", incident_id=inc.id,
                                    payload=_payload(1, service, at, at, [title]), not_before=utcnow() + hold,
                                    dedup_key=f"{STORM_KEY}{inc.id}:{uuid.uuid4().hex}")


def _pending_line(session: Session, key: str, incident_id: int) -> OutboxMessage | None:
    stmt = (select(OutboxMessage)
            .where(OutboxMessage.order_key == key, OutboxMessage.status == outbox.PENDING,  # type: ignore[arg-type]
                   OutboxMessage.method == "chat.postMessage",  # type: ignore[arg-type]
                   OutboxMessage.dedup_key.like(f"{STORM_KEY}{incident_id}:%"))  # type: ignore[union-attr]
            .order_by(OutboxMessage.id.desc()).limit(1))  # type: ignore[union-attr]
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)  # a worker claiming it: leave it, start a new one
    return session.execute(stmt).scalar_one_or_none()


def _payload(count: int, service: str | None, first: datetime, last: datetime, titles: list[str]) -> dict:
    """The line's intent; the Slack job draws it when it sends (slack/intents.py ``storm_line``)."""
    return {"channel": "$incident", **outbox.intent("storm_line", service=service, storm={
        "count": count, "first": first.isoformat(), "last": last.isoformat(), "titles": titles})}


def is_joined(link: PagerDutyLink | None) -> bool:
    """A PagerDuty incident that joined by grouping (or merge): its events do not move the lifecycle."""
    return link is not None and not link.primary and link.triggered_at is not None


_LINK_STATUS = {"acknowledged": "acknowledged", "unacknowledged": "triggered", "resolved": "resolved",
                "reopened": "triggered"}


def linked_event(session: Session, inc: Incident, link: PagerDutyLink, ev: PagerDutyEvent, tr_in: Translation,
                 at: datetime, *, imported: bool) -> None:
    """An event of a joined PagerDuty incident: its status is tracked and a timeline row written, but the
    incident's lifecycle follows its primary only (a linked ack or resolve says nothing about the rest of
    the storm). The trigger is already on the timeline (the join row)."""
    assert inc.id is not None
    status = (ev.incident.status if ev.incident else None) or _LINK_STATUS.get(tr_in.kind)
    if status:
        link.status = status
        session.add(link)
    if tr_in.kind == "triggered":
        return
    text = f"[{link.pagerduty_incident_id}] {tr_in.text}"
    if imported and said_already(session, inc.id, tr_in.kind, at, ev.agent, text=text):
        return
    # Each delivery is applied once (the inbox): its row is new, written with the batch's other rows.
    repo.add_timeline(session, incident_id=inc.id, occurred_at=at, source="pagerduty", kind=tr_in.kind,
                      text=text, actor=ev.agent, source_event_id=ev.event_id, known_new=True)


def said_already(session: Session, incident_id: int | None, kind: str, at: datetime, actor: str | None, *,
                 text: str | None = None) -> bool:
    """A timeline row that says the same thing (same incident, kind, time to the second, actor) exists:
    a backfilled event that a live webhook already delivered (their event ids differ), or one this batch
    wrote already (the fold's PagerDuty path writes its rows at the end, without autoflush: those are
    looked at in memory)."""
    lo = at.replace(microsecond=0)
    return repo.timeline_says(session, incident_id, kind, lo, lo + timedelta(seconds=1), actor, text)
