"""The incident page's content (``/ui/incidents/INC-n``): its RCA with a window of the timeline, its
PagerDuty links, metrics and review state.

:func:`incident_bot.usecases.rca.rca_document` reads every timeline row, which the export needs and
a page does not (usecases/timeline_window.py says why and how the page reads less). :func:`page_document`
loads the same things as that function, in the same way, except the timeline: the window asked for, the
rows that mark a milestone or a role, the latest status updates and bookkeeping rows, and the database's
counts for the rest. tests/test_web_timeline.py checks that for an incident whose timeline fits one
window the page's document equals the export's, so a change to one that the other misses fails there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core import recurrence
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.core.markup import row_plain
from incident_bot.core.rca import RcaDocument, build_rca, safe_url
from incident_bot.core.rca_parts import (
    BOOKKEEPING_KINDS,
    COMMUNICATION_KINDS,
    MILESTONE_LABELS,
    TimelineParts,
    TimelineRow,
    communications,
    entry,
    in_time_order,
    participants,
    unmarked_milestones,
)
from incident_bot.usecases import similar, timeline_window
from incident_bot.usecases.directory import directory, display_names
from incident_bot.usecases.metrics import METRIC_KEYS, incident_metrics
from incident_bot.usecases.rca import action_rows, actions_of, incident_facts, quality, review_info
from incident_bot.usecases.timeline_window import DEFAULT_ROWS, START, Key, WindowRequest
from storage import repo
from storage.models import Incident, PagerDutyLink


def incident_by_ref(session: Session, ref: str) -> Incident | None:
    """The incident the page's address names, or None (the page answers 404)."""
    return repo.incident_by_ref(session, ref)


_ID_IN_TEXT = re.compile(r"\b([UW][A-Z0-9]{2,})\b")  # as usecases/rca.py: ids named in a text


@dataclass(frozen=True)
class TimelinePage:
    """What the page says about its window (rca_templates/web/timeline_nav.html.j2)."""

    shown: int  # entries in this window (milestones that no row marks included)
    total: int  # entries of the whole curated timeline
    first: str | None  # the window's first and last times
    last: str | None
    older: str | None  # ``before`` cursor of the older window, None at the oldest
    newer: str | None  # ``after`` cursor of the newer window, None at the latest
    oldest: str  # ``after`` cursor of the oldest window
    rows: int | None  # the window's size when not the default (carried in the links)
    jumps: list[tuple[str, str]] = field(default_factory=list)  # (milestone, ``after`` cursor)
    communications: tuple[int, int] = (0, 0)  # (shown, total) status updates
    appendix: tuple[int, int] = (0, 0)  # (shown, total) bookkeeping rows

    @property
    def paged(self) -> bool:
        return self.older is not None or self.newer is not None


def page_document(session: Session, inc: Incident, req: WindowRequest, *, today: date,
                  window: timedelta = recurrence.DEFAULT_WINDOW) -> tuple[RcaDocument, TimelinePage]:
    """The RCA as the page shows it, and the window's facts for its links."""
    assert inc.id is not None
    summary = timeline_window.summary(session, inc.id)
    marks = timeline_window.marking_rows(session, inc.id)
    win = timeline_window.window(session, inc.id, req)
    comm_rows = timeline_window.latest(session, inc.id, sorted(COMMUNICATION_KINDS))
    book_rows = timeline_window.latest(session, inc.id, sorted(BOOKKEEPING_KINDS), bookkeeping=True)
    items = actions_of(session, inc.id)
    review = review_info(session, inc)
    shown = [*marks, *(r for _, r in win.rows), *comm_rows, *book_rows]
    people = directory(session, [
        inc.commander_id, inc.reporter_id, inc.scribe_id, inc.comms_id, *review.authors, *review.reviewers,
        *(a.owner_id for a in items), *summary.actors, *(m for r in shown for m in _ID_IN_TEXT.findall(r.text or ""))])
    names = dict(people.names)

    def plain(rows: list[TimelineRow]) -> list[TimelineRow]:
        # Rows typed in Slack hold mrkdwn: the RCA shows what people meant, once escaped (as the export).
        return [r._replace(text=row_plain(r.source, r.text, names)) for r in rows]

    milestones = {m: getattr(inc, m) for m in MILESTONES}
    start = milestones.get("impact_started_at")
    marks = plain(marks)
    unmarked = unmarked_milestones(marks, milestones)
    in_window = [r for r in unmarked if win.holds(r.occurred_at)]
    main = [entry(r, start, people) for r in in_time_order([*plain([r for _, r in win.rows]), *in_window])]
    crew = participants(marks, people, opened_at=milestones.get("detected_at"), spans=summary.spans,
                        roles_now={"commander": inc.commander_id, "scribe": inc.scribe_id,
                                   "reporter": inc.reporter_id})
    parts = TimelineParts(main=main, appendix=[entry(r, start, people) for r in plain(book_rows)],
                          participants=crew,
                          communications=communications(plain(comm_rows), start, people, inc.slack_channel_name))
    facts = incident_facts(inc)
    actions = action_rows(items, people, today)
    findings = quality(session, inc, items=items, people=people, actors=summary.actors)
    doc = build_rca(facts, milestones, marks, actions, dict(inc.rca or {}), people=people, review=review,
                    findings=findings, parts=parts)
    rec = similar.recurrence(session, inc, window=window) if inc.detected_at else None
    if rec is not None:
        prev = session.execute(select(Incident.rca).where(Incident.number == rec.previous.number)).scalar_one_or_none()
        cause = similar.first_line((prev or {}).get("root_causes"))
        doc = recurrence.with_section(doc, recurrence.rca_section(rec, inc.ref, previous_root_cause=cause))
    return doc, TimelinePage(
        shown=len(main), total=summary.curated + len(unmarked),
        first=main[0].time if main else None, last=main[-1].time if main else None,
        older=win.older.token if win.older else None, newer=win.newer.token if win.newer else None,
        oldest=START.token, rows=None if req.rows == DEFAULT_ROWS else req.rows,
        jumps=[(MILESTONE_LABELS[m], Key(ts.replace(microsecond=0), 0).token)
               for m in MILESTONES if (ts := milestones.get(m)) is not None],
        communications=(len(parts.communications), summary.communications),
        appendix=(len(parts.appendix), summary.bookkeeping))



@dataclass(frozen=True)
class PagerDutyRef:
    incident_id: str
    url: str | None
    service: str | None
    primary: bool


@dataclass
class IncidentView:
    incident: Incident
    doc: RcaDocument
    pagerduty: list[PagerDutyRef]
    commander: str | None
    metrics: dict[str, int | None]
    review: str  # the RCA's state, in words
    timeline: TimelinePage  # the window of the timeline shown, and the links to the others


def incident_view(session: Session, inc: Incident, *, today: date, window: timedelta = timedelta(days=30),
                  timeline: WindowRequest | None = None) -> IncidentView:
    """The page's content; its RCA shows the window ``timeline`` of the timeline (usecases/timeline_window.py)."""
    assert inc.id is not None
    doc, page = page_document(session, inc, timeline or WindowRequest(), today=today, window=window)
    links = session.execute(select(PagerDutyLink).where(PagerDutyLink.incident_id == inc.id)  # type: ignore[arg-type]
                            .order_by(PagerDutyLink.primary.desc(), PagerDutyLink.created_at)).scalars()  # type: ignore[attr-defined]
    pd = [PagerDutyRef(p.pagerduty_incident_id, safe_url(p.url), p.service_name, p.primary) for p in links]
    if inc.pagerduty_incident_id and not any(p.incident_id == inc.pagerduty_incident_id for p in pd):
        pd.insert(0, PagerDutyRef(inc.pagerduty_incident_id, safe_url(inc.pagerduty_url), None, True))
    metrics = incident_metrics(session, inc.id) or dict.fromkeys(METRIC_KEYS, None)
    names = display_names(session, [inc.commander_id])
    return IncidentView(incident=inc, doc=doc, pagerduty=pd, commander=names.get(inc.commander_id or "",
                        inc.commander_id), metrics=metrics, review=review_state(inc, doc), timeline=page)


def review_state(inc: Incident, doc: RcaDocument) -> str:
    """Published once the incident is closed (closing is publishing the RCA); a draft before, with
    how many of its written sections are still to fill."""
    written = [s for s in doc.sections if s.kind in ("text", "lessons")]
    todo = sum(1 for s in written if s.empty)
    if inc.status == "closed":
        note = f" (closed without a complete RCA: {inc.close_override_reason})" if inc.close_override_reason else ""
        return f"Published{note}"
    if todo:
        return f"Draft: {todo} of {len(written)} sections still to fill"
    return "Draft: every section written, ready for review"
