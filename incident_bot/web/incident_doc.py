"""The incident page's RCA: the export's content (core/rca.py) with a window of the timeline.

:func:`incident_bot.usecases.rca.rca_document` reads every timeline row, which the export needs and
a page does not (web/timeline.py says why and how the page reads less). This module loads the same
things as that function, in the same way, except the timeline: the window asked for, the rows that
mark a milestone or a role, the latest status updates and bookkeeping rows, and the database's
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
from incident_bot.core.rca import RcaDocument, build_rca
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
from incident_bot.usecases import similar
from incident_bot.usecases.directory import directory
from incident_bot.usecases.rca import action_rows, incident_facts, quality, review_info
from incident_bot.web import timeline
from incident_bot.web.timeline import DEFAULT_ROWS, START, Key, WindowRequest
from storage.models import ActionItem, Incident

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
    summary = timeline.summary(session, inc.id)
    marks = timeline.marking_rows(session, inc.id)
    win = timeline.window(session, inc.id, req)
    comm_rows = timeline.latest(session, inc.id, sorted(COMMUNICATION_KINDS))
    book_rows = timeline.latest(session, inc.id, sorted(BOOKKEEPING_KINDS), bookkeeping=True)
    items = list(session.execute(select(ActionItem).where(ActionItem.incident_id == inc.id)).scalars())  # type: ignore[arg-type]
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

