"""RCA export and narrative edits: the database side of :mod:`incident_bot.core.rca`.

Reads are column selects, not ORM objects, because an RCA of a long incident has thousands of
timeline rows and must still export in well under a second (bench/bench_rca.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core import blameless, capa
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.core.rca import (
    NARRATIVE_KEYS,
    ActionRow,
    IncidentFacts,
    RcaDocument,
    TimelineRow,
    apply_narrative,
    build_rca,
)
from incident_bot.rendering import RenderResult, render
from incident_bot.slack.mrkdwn import row_plain
from storage import repo
from storage.models import ActionItem, Incident, SlackUser, TimelineEvent, utcnow

FORMATS: dict[str, str] = {"md": "rca.md.j2", "markdown": "rca.md.j2", "html": "rca.html.j2"}


class RcaError(LookupError):
    """The incident does not exist, or an edit names an unknown field. The message says which."""


def get_incident(session: Session, ref: str, *, lock: bool = False) -> Incident:
    inc = repo.incident_by_ref(session, ref, lock=lock)
    if inc is None:
        raise RcaError(f"no incident {ref}")
    return inc


def display_names(session: Session, user_ids: Iterable[str | None]) -> dict[str, str]:
    """Slack ids -> display names from the users cache; ids with no cached name are left out."""
    ids = sorted({u for u in user_ids if u})
    if not ids:
        return {}
    stmt = select(SlackUser.user_id, SlackUser.name).where(SlackUser.user_id.in_(ids))  # type: ignore[attr-defined]
    return {uid: name for uid, name in session.execute(stmt).all() if name}


def _timeline_rows(session: Session, incident_id: int) -> list[TimelineRow]:
    t = TimelineEvent
    stmt = (
        select(t.occurred_at, t.source, t.kind, t.text, t.actor, t.milestone)
        .where(t.incident_id == incident_id)  # type: ignore[arg-type]
        .order_by(t.occurred_at, t.id)  # type: ignore[arg-type]
    )
    return [TimelineRow(*row) for row in session.execute(stmt).all()]


def _actions(session: Session, incident_id: int) -> list[ActionItem]:
    stmt = select(ActionItem).where(ActionItem.incident_id == incident_id)  # type: ignore[arg-type]
    return list(session.execute(stmt).scalars())


def rca_document(session: Session, inc: Incident, *, today: date | None = None,
                 generated_at: datetime | None = None) -> RcaDocument:
    """Load everything the RCA shows and build its content. ``today`` (team zone) marks overdue actions."""
    assert inc.id is not None
    today = today or datetime.now(UTC).date()
    rows = _timeline_rows(session, inc.id)
    items = _actions(session, inc.id)
    people = [inc.commander_id, inc.reporter_id, inc.scribe_id, inc.comms_id,
              *(a.owner_id for a in items), *{r.actor for r in rows}]
    names = display_names(session, people)
    # Rows typed in Slack hold mrkdwn: the RCA (Markdown, HTML) shows what people meant, once escaped.
    rows = [r._replace(text=row_plain(r.source, r.text, names)) for r in rows]
    facts = IncidentFacts(
        ref=inc.ref, title=inc.title, severity=inc.severity, status=inc.status, service=inc.service,
        origin=inc.origin, commander=inc.commander_id, reporter=inc.reporter_id, scribe=inc.scribe_id,
        pagerduty_url=inc.pagerduty_url, slack_channel_name=inc.slack_channel_name,
        slack_channel_id=inc.slack_channel_id, close_override_reason=inc.close_override_reason,
    )
    actions = [
        ActionRow(id=a.id, title=a.title, type=a.type, priority=a.priority, status=a.status,
                  owner=names.get(a.owner_id or "", a.owner_id), due_date=a.due_date, ticket_url=a.ticket_url,
                  overdue=capa.is_overdue(a.status, a.due_date, today))
        for a in items
    ]
    return build_rca(facts, {m: getattr(inc, m) for m in MILESTONES}, rows, actions, dict(inc.rca or {}),
                     names=names, generated_at=generated_at)


def rca_context(session: Session, ref: str, *, today: date | None = None) -> dict[str, Any]:
    """The template variables for an incident's RCA (see the docstring of core/rca.py)."""
    return rca_document(session, get_incident(session, ref), today=today).context()


def template_for(fmt: str) -> str:
    try:
        return FORMATS[fmt.lower()]
    except KeyError:
        raise RcaError(f"unknown RCA format {fmt!r}; use md or html") from None


def export_rca(session: Session, ref: str, fmt: str = "md", templates_dir: str | None = None, *,
               today: date | None = None) -> RenderResult:
    """Render the RCA; a broken team template falls back to the default and says so in ``warnings``."""
    template = template_for(fmt)
    return render(template, rca_context(session, ref, today=today), templates_dir=templates_dir)


def set_narrative(session: Session, ref: str, updates: dict[str, Any]) -> list[str]:
    """Edit narrative fields (blank clears one); returns the fields that changed. Unknown keys raise."""
    inc = get_incident(session, ref, lock=True)
    try:
        narrative, changed = apply_narrative(inc.rca or {}, updates)
    except ValueError as exc:
        raise RcaError(str(exc)) from None
    if changed:
        inc.rca = narrative  # reassigned, so the JSON column is saved on both databases
        inc.updated_at = utcnow()
        session.add(inc)
    return changed


def check_language(session: Session, ref: str, *, words_file: str | None = None
                   ) -> tuple[list[blameless.Finding], list[str]]:
    """Blameful phrasing in the incident's narrative, and problems reading the word lists.

    The incident's people (responders, owners, timeline actors with cached Slack names) are passed
    to the checker, so "because Alex pushed..." is caught whatever the name.
    """
    inc = get_incident(session, ref)
    assert inc.id is not None
    actors = select(TimelineEvent.actor).where(TimelineEvent.incident_id == inc.id).distinct()  # type: ignore[arg-type]
    owners = select(ActionItem.owner_id).where(ActionItem.incident_id == inc.id).distinct()  # type: ignore[arg-type]
    ids = [inc.commander_id, inc.reporter_id, inc.scribe_id, inc.comms_id,
           *session.execute(actors).scalars(), *session.execute(owners).scalars()]
    people: set[str] = set()
    for name in display_names(session, ids).values():
        people.add(name)
        first = name.split()[0] if name.split() else ""
        if len(first) > 2:
            people.add(first)
    rules = blameless.load_rules(words_file)
    return blameless.check(inc.rca or {}, rules=rules, people=people), list(rules.problems)


__all__ = ["FORMATS", "NARRATIVE_KEYS", "RcaError", "check_language", "export_rca", "get_incident",
           "rca_context", "rca_document", "set_narrative"]
