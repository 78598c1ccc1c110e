"""Similar past incidents and recurrence after CAPA: the database side of core/similarity.py and
core/recurrence.py.

Candidates come from the text index (storage/text_search.py: the database's best text matches) and from
the same service (its most recent resolved incidents); the core ranks them with the rules a lead can
check. Reads only, a handful of indexed queries, in the caller's transaction. The intro message of a new
incident gets them from the outbox (``IntroLookup``), never from the accept path or the fold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, case, func, select, text
from sqlmodel import Session

from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity as rules
from incident_bot.core.durations import iso_utc
from storage import text_rank, text_search
from storage.db import session_scope
from storage.models import ActionItem, Incident, IncidentMetrics, IncidentSearch

log = logging.getLogger(__name__)
QUERY_WORDS = 32  # the rarest counted words of an incident the database ranks with
WIDER = 20  # rows the core ranks again when an incident has more counted words than that
ROOT_CAUSE_LINE = 160


def subject_of(inc: Incident) -> rules.Subject:
    head, body = text_search.fields(inc.title, inc.service, inc.description, inc.rca)
    assert inc.detected_at is not None
    return rules.Subject(number=inc.number, detected_at=inc.detected_at, service=inc.service,
                         service_id=inc.pagerduty_service_id, title_words=head, body_words=body)


@dataclass(frozen=True)
class Words:
    """The subject's words that count (core/similarity.py ``informative``) and what the database is asked:
    the :data:`QUERY_WORDS` rarest of them."""

    counted: frozenset[str]
    probe: text_rank.Probe

    @property
    def complete(self) -> bool:
        """The database scores with every counted word (its order is then exactly the rules' order)."""
        return len(self.probe.title_words) + len(self.probe.other_words) == len(self.counted)


def words_of(session: Session, subject: rules.Subject) -> Words:
    total = text_search.indexed_total(session)
    df = text_rank.doc_freq(session, subject.stems, cap=rules.common_cap(total), total=total)
    counted = rules.informative(subject.stems, df, total)
    asked = sorted(counted, key=lambda w: (df.get(w, 0), w))[:QUERY_WORDS]
    probe = text_rank.Probe(
        number=subject.number, detected_at=subject.detected_at,
        title_words=tuple(w for w in asked if w in subject.title_words),
        other_words=tuple(w for w in asked if w not in subject.title_words),
        service_key=text_search.service_key(subject.service), service_id=subject.service_id or None,
        title_points=rules.TITLE_POINTS, other_points=rules.OTHER_POINTS)
    return Words(counted, probe)


def counted_words(session: Session, subject: rules.Subject) -> frozenset[str]:
    """The subject's words that are not too common to count (core/similarity.py ``informative``)."""
    return words_of(session, subject).counted


def candidates(session: Session, ids: Iterable[int]) -> dict[int, rules.Candidate]:
    """Candidates by incident id, with their indexed words; merged incidents (no metrics row) are left out."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    i, s = Incident, IncidentSearch
    stmt = (select(i.id, i.number, i.ref, i.title, i.detected_at, i.resolved_at, i.service, i.pagerduty_service_id,
                   s.title_terms, s.body_terms)
            .join(s, s.incident_id == i.id).join(IncidentMetrics, IncidentMetrics.incident_id == i.id)  # type: ignore[arg-type]
            .where(i.id.in_(ids)))  # type: ignore[union-attr]
    return {r[0]: rules.Candidate(number=r[1], ref=r[2], title=r[3], detected_at=r[4], resolved_at=r[5],
                                  service=r[6], service_id=r[7], title_terms=frozenset((r[8] or "").split()),
                                  body_terms=frozenset((r[9] or "").split()))
            for r in session.execute(stmt)}


def similar(session: Session, inc: Incident, *, limit: int = 3, words: Words | None = None) -> list[rules.Match]:
    """The ``limit`` most similar past incidents of ``inc``, best first (core/similarity.py).

    The database ranks by the same rules (storage/text_rank.py) and returns the best rows; the core scores
    them again for the explanation. With more than :data:`QUERY_WORDS` counted words the database ranks
    by the rarest ones: it then returns :data:`WIDER` rows for the core to rank with all of them."""
    subject = subject_of(inc)
    words = words_of(session, subject) if words is None else words
    asked = limit if words.complete else max(limit, WIDER)
    ranked = text_rank.best(session, words.probe, limit=asked, min_score=rules.MIN_SCORE)
    found = candidates(session, [r.incident_id for r in ranked])
    return rules.rank(subject, found.values(), words.counted, limit=limit)


def recurrence(session: Session, inc: Incident, *, window: timedelta,
               words: Words | None = None) -> rec_rules.Recurrence | None:
    """The earlier incident ``inc`` recurs after its CAPA was marked done (core/recurrence.py), or None.

    The database walks the CAPA actions done in the window before ``inc`` was detected, newest first, and
    stops at the first whose incident is on its service or scores :data:`core.recurrence.MIN_SCORE`
    (storage/text_rank.py); the core checks the rule on it and lists its fixes."""
    assert inc.detected_at is not None
    subject = subject_of(inc)
    words = words_of(session, subject) if words is None else words
    since = inc.detected_at - window
    found = text_rank.recurring(session, words.probe, since=since, min_score=rec_rules.MIN_SCORE)
    if found is None:
        return None
    a = ActionItem
    stmt = (select(a.id, a.title, a.closed_at)
            .where(a.incident_id == found[0], a.status == "done", a.closed_at >= since,  # type: ignore[operator]
                   a.closed_at <= inc.detected_at))  # type: ignore[operator]
    fixes = tuple(rec_rules.Fix(action_id, title, done_at) for action_id, title, done_at in session.execute(stmt))
    earlier = [rec_rules.Earlier(c, fixes) for c in candidates(session, [found[0]]).values()]
    return rec_rules.find(subject, earlier, words.counted, window=window)


# -- what people read ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PastIncident:
    """A similar past incident as the intro message, the CLI and the JSON show it."""

    ref: str
    title: str
    score: int
    reasons: tuple[str, ...]
    shared_words: tuple[str, ...]
    same_service: bool
    service: str | None
    detected_at: datetime
    ttr_s: int | None
    root_cause: str | None  # the first line of its root causes
    capa_done: int
    capa_total: int
    channel_id: str | None
    channel_name: str | None


def first_line(value: Any) -> str | None:
    lines = value if isinstance(value, (list, tuple)) else str(value or "").splitlines()
    for line in (str(x).strip().lstrip("-*• ").strip() for x in lines):
        if line:
            return line if len(line) <= ROOT_CAUSE_LINE else line[:ROOT_CAUSE_LINE - 1].rstrip() + "…"
    return None


def describe(session: Session, matches: list[rules.Match]) -> list[PastIncident]:
    if not matches:
        return []
    numbers = [m.candidate.number for m in matches]
    i, a = Incident, ActionItem
    rows = {r[0]: r for r in session.execute(
        select(i.number, i.id, i.rca, i.slack_channel_id, i.slack_channel_name, IncidentMetrics.ttr_s)
        .join(IncidentMetrics, IncidentMetrics.incident_id == i.id, isouter=True)  # type: ignore[arg-type]
        .where(i.number.in_(numbers)))}  # type: ignore[attr-defined]
    ids = [r[1] for r in rows.values()]
    capa: dict[int, list[int]] = {}
    stmt = (select(a.incident_id, func.count(), func.sum(case((a.status == "done", 1), else_=0)))
            .where(a.incident_id.in_(ids), a.status != "wont_do").group_by(a.incident_id))  # type: ignore[attr-defined]
    for incident_id, total, done in session.execute(stmt):
        capa[incident_id] = [int(total), int(done or 0)]
    out = []
    for m in matches:
        c, r = m.candidate, rows[m.candidate.number]
        total, done = capa.get(r[1], [0, 0])
        out.append(PastIncident(ref=c.ref, title=c.title, score=m.score, reasons=m.reasons, shared_words=m.shared,
                                same_service=m.same_service, service=c.service, detected_at=c.detected_at,
                                ttr_s=r[5], root_cause=first_line((r[2] or {}).get("root_causes")),
                                capa_done=done, capa_total=total, channel_id=r[3], channel_name=r[4]))
    return out


def past_json(p: PastIncident) -> dict[str, Any]:
    return {"ref": p.ref, "title": p.title, "score": p.score, "reasons": list(p.reasons),
            "same_service": p.same_service, "shared_words": list(p.shared_words), "service": p.service,
            "detected_at": iso_utc(p.detected_at), "ttr_s": p.ttr_s, "root_cause": p.root_cause,
            "capa": {"done": p.capa_done, "total": p.capa_total}}


def recurrence_json(r: rec_rules.Recurrence | None) -> dict[str, Any] | None:
    """``null``, or ``{previous, capa_done, days_since}`` and what explains it."""
    if r is None:
        return None
    return {"previous": r.previous.ref, "previous_title": r.previous.title, "capa_done": iso_utc(r.capa_done),
            "days_since": r.days_since, "actions": [f.action_id for f in r.fixes], "reasons": list(r.reasons)}


@dataclass(frozen=True)
class Learned:
    similar: list[PastIncident]
    recurrence: rec_rules.Recurrence | None


def learn(session: Session, inc: Incident, *, window: timedelta, limit: int = 3) -> Learned:
    """Both answers for one incident, its words looked up once."""
    words = words_of(session, subject_of(inc))
    return Learned(similar=describe(session, similar(session, inc, limit=limit, words=words)),
                   recurrence=recurrence(session, inc, window=window, words=words))


class IntroLookup:
    """What the outbox asks when it posts a new incident's intro message: similar past incidents and a
    recurrence, in a read transaction of its own. A failure is logged and the intro goes out without them:
    the first message must never wait on history."""

    def __init__(self, engine: Engine, window: timedelta, *, limit: int = 3) -> None:
        self.engine, self.window, self.limit = engine, window, limit

    def __call__(self, incident_id: int) -> Learned | None:
        try:
            with session_scope(self.engine) as s:
                if s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SET LOCAL statement_timeout = 5000"))  # a slow lookup gives up, the intro goes
                inc = s.get(Incident, incident_id)
                if inc is None or inc.detected_at is None:
                    return None
                return learn(s, inc, window=self.window, limit=self.limit)
        except Exception:
            log.exception("similar past incidents for incident %s: lookup failed; intro posted without them",
                          incident_id)
            return None

