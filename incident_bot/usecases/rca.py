"""RCA export and narrative edits: the database side of :mod:`incident_bot.core.rca`.

Reads are column selects, not ORM objects, because an RCA of a long incident has thousands of
timeline rows and must still export in well under a second (bench/bench_rca.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core import blameless, capa, rca_review, recurrence
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.core.markup import row_plain
from incident_bot.core.people import Directory, looks_like_slack_id, name_variants
from incident_bot.core.rca import (
    NARRATIVE_KEYS,
    ActionRow,
    IncidentFacts,
    RcaDocument,
    ReviewInfo,
    TimelineRow,
    apply_narrative,
    build_rca,
)
from incident_bot.core.rca_review import QualityFinding, ReviewError
from incident_bot.rendering import RenderResult, render
from incident_bot.usecases import similar
from incident_bot.usecases.directory import directory, display_names
from storage import repo
from storage.models import ActionItem, Incident, TimelineEvent, utcnow
from storage.models import RcaDocument as RcaRow

FORMATS: dict[str, str] = {"md": "rca.md.j2", "markdown": "rca.md.j2", "html": "rca.html.j2"}


class RcaError(LookupError):
    """The incident does not exist, or an edit names an unknown field. The message says which."""


def get_incident(session: Session, ref: str, *, lock: bool = False) -> Incident:
    inc = repo.incident_by_ref(session, ref, lock=lock)
    if inc is None:
        raise RcaError(f"no incident {ref}")
    return inc


def _timeline_rows(session: Session, incident_id: int) -> list[TimelineRow]:
    t = TimelineEvent
    stmt = (
        select(t.occurred_at, t.source, t.kind, t.text, t.actor, t.milestone)
        .where(t.incident_id == incident_id)  # type: ignore[arg-type]
        .order_by(t.occurred_at, t.id)  # type: ignore[arg-type]
    )
    return [TimelineRow(*row) for row in session.execute(stmt).all()]


def actions_of(session: Session, incident_id: int) -> list[ActionItem]:
    """The incident's CAPA items (the export's RCA and the incident page's)."""
    stmt = select(ActionItem).where(ActionItem.incident_id == incident_id)  # type: ignore[arg-type]
    return list(session.execute(stmt).scalars())


def review_info(session: Session, inc: Incident) -> ReviewInfo:
    row = session.get(RcaRow, inc.id)
    if row is None:
        return ReviewInfo()
    return ReviewInfo(status=row.status, authors=tuple(row.authors or ()), reviewers=tuple(row.reviewers or ()),
                      changed_at=row.status_changed_at, changed_by=row.status_changed_by,
                      override_reason=row.final_override_reason)


def _people(session: Session, inc: Incident, rows: list[TimelineRow], items: list[ActionItem],
            review: ReviewInfo) -> Directory:
    ids = [inc.commander_id, inc.reporter_id, inc.scribe_id, inc.comms_id, *review.authors, *review.reviewers,
           *(a.owner_id for a in items), *{r.actor for r in rows}]
    # Ids mentioned inside texts ("Commander: U0ADA") are looked up too.
    ids += [m for r in rows for m in _ID_IN_TEXT.findall(r.text or "")]
    return directory(session, ids)


_ID_IN_TEXT = re.compile(r"\b([UW][A-Z0-9]{2,})\b")


def quality(session: Session, inc: Incident, *, items: list[ActionItem] | None = None,
            people: Directory | None = None, actors: Iterable[str | None] | None = None) -> list[QualityFinding]:
    """What is missing before this RCA can be final (core/rca_review.py). ``actors``: the timeline's
    actors when the caller has read them already (an RCA of 5,000 rows need not read them twice)."""
    assert inc.id is not None
    items = actions_of(session, inc.id) if items is None else items
    found, _problems = language_findings(session, inc, people=people, actors=actors,
                                         owners=[a.owner_id for a in items])
    facts = [rca_review.ActionFacts(a.id, a.type, a.status, a.owner_id, a.due_date) for a in items]
    return rca_review.quality_findings(inc.rca or {}, facts, incident_status=inc.status,
                                       blameless_count=len(found))


def rca_document(session: Session, inc: Incident, *, today: date | None = None,
                 generated_at: datetime | None = None, window: timedelta = recurrence.DEFAULT_WINDOW) -> RcaDocument:
    """Load everything the RCA shows and build its content. ``today`` (team zone) marks overdue actions."""
    assert inc.id is not None
    today = today or datetime.now(UTC).date()
    rows = _timeline_rows(session, inc.id)
    items = actions_of(session, inc.id)
    review = review_info(session, inc)
    people = _people(session, inc, rows, items, review)
    # Rows typed in Slack hold mrkdwn: the RCA (Markdown, HTML) shows what people meant, once escaped.
    names = dict(people.names)
    rows = [r._replace(text=row_plain(r.source, r.text, names)) for r in rows]
    facts = incident_facts(inc)
    actions = action_rows(items, people, today)
    findings = quality(session, inc, items=items, people=people, actors={r.actor for r in rows})
    doc = build_rca(facts, {m: getattr(inc, m) for m in MILESTONES}, rows, actions, dict(inc.rca or {}),
                    people=people, review=review, findings=findings, generated_at=generated_at)
    rec = similar.recurrence(session, inc, window=window) if inc.detected_at else None
    if rec is None:
        return doc
    prev = session.execute(select(Incident.rca).where(Incident.number == rec.previous.number)).scalar_one_or_none()
    cause = similar.first_line((prev or {}).get("root_causes"))
    section = recurrence.rca_section(rec, inc.ref, previous_root_cause=cause)
    return recurrence.with_section(doc, section)


def rca_context(session: Session, ref: str, *, today: date | None = None,
                window: timedelta = recurrence.DEFAULT_WINDOW) -> dict[str, Any]:
    """The template variables for an incident's RCA (see the docstring of core/rca.py)."""
    return rca_document(session, get_incident(session, ref), today=today, window=window).context()


def template_for(fmt: str) -> str:
    try:
        return FORMATS[fmt.lower()]
    except KeyError:
        raise RcaError(f"unknown RCA format {fmt!r}; use md or html") from None


def export_rca(session: Session, ref: str, fmt: str = "md", templates_dir: str | None = None, *,
               today: date | None = None, window: timedelta = recurrence.DEFAULT_WINDOW) -> RenderResult:
    """Render the RCA; a broken team template falls back to the default and says so in ``warnings``."""
    template = template_for(fmt)
    return render(template, rca_context(session, ref, today=today, window=window), templates_dir=templates_dir)


def export_checked(session: Session, ref: str, fmt: str, templates_dir: str | None, *, today: date | None,
                   window: timedelta, words_file: str | None, check: bool = True
                   ) -> tuple[RenderResult, list[blameless.Finding], list[str]]:
    """``incident-bot rca REF``: :func:`export_rca`, and :func:`check_language` unless ``check`` is off."""
    result = export_rca(session, ref, fmt, templates_dir, today=today, window=window)
    findings, problems = check_language(session, ref, words_file=words_file) if check else ([], [])
    return result, findings, problems


def set_narrative(session: Session, ref: str, updates: dict[str, Any]) -> list[str]:
    """Edit narrative fields (blank clears one); returns the fields that changed. Unknown keys raise."""
    inc = get_incident(session, ref, lock=True)
    row = session.get(RcaRow, inc.id)
    if row is not None and row.status == "final":
        raise RcaError(f"the RCA of {inc.ref} is final; reopen it first: incident-bot rca {inc.ref} --status draft")
    try:
        narrative, changed = apply_narrative(inc.rca or {}, updates)
    except ValueError as exc:
        raise RcaError(str(exc)) from None
    if changed:
        inc.rca = narrative  # reassigned, so the JSON column is saved on both databases
        inc.updated_at = utcnow()
        session.add(inc)
    return changed


def edit_narrative(session: Session, inc: Incident, updates: dict[str, Any], *, actor: str,
                   source: str = "slack") -> list[str]:
    """:func:`set_narrative` from a form (Slack's ``/incident rca edit``), the edit on the timeline: which
    fields, by whom. Returns the fields that changed."""
    changed = set_narrative(session, inc.ref, updates)
    if changed:
        repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=utcnow(), source=source, kind="rca_edited",
                          actor=actor, text=f"RCA edited: {', '.join(changed)}")
    return changed


def share_rca(session: Session, inc: Incident, *, content: str, comment: str, actor: str) -> None:
    """Queue the rendered RCA's upload to the incident channel (``files.upload_v2``, with ``comment`` as its
    message), and the export on the timeline."""
    repo.enqueue(session, order_key=f"incident:{inc.id}", method="files.upload_v2", incident_id=inc.id,
                 payload={"channel": "$incident", "content": content, "filename": f"{inc.ref}-rca.md",
                          "title": f"{inc.ref} RCA", "initial_comment": comment})
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=utcnow(), source="slack", kind="rca_exported",
                      actor=actor, text="RCA exported to the channel")


def check_language(session: Session, ref: str, *, words_file: str | None = None,
                   people: Directory | None = None) -> tuple[list[blameless.Finding], list[str]]:
    """Blameful phrasing in the incident's narrative, and problems reading the word lists.

    The incident's people (responders, owners, timeline actors: Slack names from the cache, PagerDuty
    names as stored) are passed to the checker, so "Bob made a human error" flags Bob too.
    """
    return language_findings(session, get_incident(session, ref), words_file=words_file, people=people)


def language_findings(session: Session, inc: Incident, *, words_file: str | None = None,
                      people: Directory | None = None, actors: Iterable[str | None] | None = None,
                      owners: Iterable[str | None] | None = None,
                      ) -> tuple[list[blameless.Finding], list[str]]:
    """:func:`check_language` for an incident already loaded; ``actors`` (timeline) and ``owners``
    (CAPA) are read from the database when the caller does not pass them."""
    assert inc.id is not None
    if actors is None:
        actors = session.execute(select(TimelineEvent.actor).where(  # type: ignore[call-overload]
            TimelineEvent.incident_id == inc.id).distinct()).scalars()
    if owners is None:
        owners = session.execute(select(ActionItem.owner_id).where(  # type: ignore[call-overload]
            ActionItem.incident_id == inc.id).distinct()).scalars()
    ids = [inc.commander_id, inc.reporter_id, inc.scribe_id, inc.comms_id, *actors, *owners]
    names = dict(people.names) if people else display_names(session, ids)
    # PagerDuty actors are stored by name ("Ada Oncall"): they are people too.
    written = [i for i in ids if i and not looks_like_slack_id(i) and i.lower() not in ("bot", "incident-bot")]
    rules = blameless.load_rules(words_file)
    known = name_variants([*names.values(), *written])
    return blameless.check(inc.rca or {}, rules=rules, people=known), list(rules.problems)


def set_status(session: Session, ref: str, status: str, *, actor: str | None = None,
               reviewers: Iterable[str] = (), authors: Iterable[str] = (), override: str | None = None,
               now: datetime | None = None) -> tuple[str, list[QualityFinding]]:
    """Move the RCA document to ``status`` (draft | review | final); returns (status, open findings).

    ``final`` is refused while the quality check finds something, unless ``override`` gives a reason;
    the reason is stored and recorded on the timeline. Raises :class:`RcaError` with the reason.
    """
    inc = get_incident(session, ref, lock=True)
    assert inc.id is not None
    row = session.get(RcaRow, inc.id) or RcaRow(incident_id=inc.id)
    reviewers_now = list(dict.fromkeys([*(row.reviewers or []), *(r for r in reviewers if r)]))
    findings = quality(session, inc) if status == "final" else []
    try:
        new = rca_review.next_status(row.status, status.strip().lower(), reviewers=reviewers_now,
                                     findings=findings, override=override)
    except ReviewError as exc:
        raise RcaError(f"{inc.ref}: {exc}") from None
    now = now or utcnow()
    row.status, row.reviewers = new, reviewers_now
    row.authors = list(dict.fromkeys([*(row.authors or []), *(a for a in authors if a)]))
    row.status_changed_at, row.status_changed_by, row.updated_at = now, actor, now
    row.final_override_reason = (override or "").strip() or None if new == "final" and findings else None
    session.add(row)
    text = f"RCA status: {rca_review.LABELS[new].lower()}"
    if new == "review":
        text += " (reviewers: " + ", ".join(reviewers_now) + ")"
    if row.final_override_reason:
        text += f"; signed off with {len(findings)} open finding(s), reason: {row.final_override_reason}"
    repo.add_timeline(session, incident_id=inc.id, occurred_at=now, source="cli" if actor is None else "slack",
                      kind="rca_status", actor=actor, text=text)
    return new, findings


__all__ = ["FORMATS", "NARRATIVE_KEYS", "RcaError", "check_language", "display_names", "edit_narrative",
           "export_rca", "get_incident", "quality", "rca_context", "rca_document", "review_info", "set_narrative",
           "set_status", "share_rca"]


def incident_facts(inc: Incident) -> IncidentFacts:
    """The incident's header facts as the RCA (export and web page) shows them."""
    return IncidentFacts(
        ref=inc.ref, title=inc.title, severity=inc.severity, status=inc.status, service=inc.service,
        origin=inc.origin, commander=inc.commander_id, reporter=inc.reporter_id, scribe=inc.scribe_id,
        pagerduty_url=inc.pagerduty_url, slack_channel_name=inc.slack_channel_name,
        slack_channel_id=inc.slack_channel_id, close_override_reason=inc.close_override_reason,
    )


def action_rows(items: list[ActionItem], people: Directory, today: date) -> list[ActionRow]:
    """The CAPA rows of the RCA, owners named and overdue ones marked as of ``today``."""
    return [
        ActionRow(id=a.id, title=a.title, type=a.type, priority=a.priority, status=a.status,
                  owner=people.name(a.owner_id) or None, due_date=a.due_date, ticket_url=a.ticket_url,
                  overdue=capa.is_overdue(a.status, a.due_date, today), ticket_key=a.ticket_key)
        for a in items
    ]
