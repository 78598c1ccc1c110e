"""Similar past incidents and recurrence after CAPA: the database side of core/similarity.py and
core/recurrence.py.

The database ranks with the rules (storage/text_rank.py) and returns only the best rows; the core scores
those again to explain them (which words, same service) and decides the recurrence. A lookup is a few
indexed reads in the caller's transaction: the incident counter, the counts of words not seen lately,
the ranking, the recurrence walk, and one read of the rows shown. The intro message of a new incident
gets it from the outbox (``IntroLookup``), never from the accept path or the fold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, text
from sqlmodel import Session

from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity as rules
from incident_bot.core.durations import iso_utc
from incident_bot.usecases import runner
from incident_bot.usecases.incidents import NoSuchIncident
from storage import repo, tables, text_rank, text_search
from storage.bulk import among, rows, utc
from storage.models import ActionItem, Incident, IncidentMetrics, IncidentSearch, utcnow

log = logging.getLogger(__name__)
QUERY_WORDS = 48  # counted words of an incident the database ranks with (title words first, then the rarest)
WIDER = 20  # rows the core ranks again when an incident has more counted words than that
ROOT_CAUSE_LINE = 160


def subject_of(inc: Incident) -> rules.Subject:
    head, body = text_search.fields(inc.title, inc.service, inc.description, inc.rca)
    assert inc.detected_at is not None
    return rules.Subject(number=inc.number, detected_at=inc.detected_at, service=inc.service,
                         service_id=inc.pagerduty_service_id, title_words=head, body_words=body)


@dataclass(frozen=True)
class Words:
    """The subject's words that count (core/similarity.py ``informative``), and the database's probe of
    them: every one (``probe``), or for ranking the :data:`QUERY_WORDS` that weigh most (``ranking``)."""

    counted: frozenset[str]
    probe: text_rank.Probe

    @property
    def ranking(self) -> text_rank.Probe:
        """Title words first (they are worth more), then the rarest: at most :data:`QUERY_WORDS`."""
        title = self.probe.title_words[:QUERY_WORDS]
        return replace(self.probe, title_words=title, other_words=self.probe.other_words[:QUERY_WORDS - len(title)])

    @property
    def complete(self) -> bool:
        """The database ranks with every counted word: its order is exactly the rules' order."""
        return len(self.counted) <= QUERY_WORDS


def words_of(session: Session, subject: rules.Subject) -> Words:
    total, counted_at = text_rank.totals(session)
    df = text_rank.doc_freq(session, subject.stems, cap=rules.common_cap(total), total=total, counted_at=counted_at)
    counted = rules.informative(subject.stems, df, total)
    rarest = sorted(counted, key=lambda w: (df.get(w, 0), w))
    probe = text_rank.Probe(
        number=subject.number, detected_at=subject.detected_at,
        title_words=tuple(w for w in rarest if w in subject.title_words),
        other_words=tuple(w for w in rarest if w not in subject.title_words),
        service_key=text_search.service_key(subject.service), service_id=subject.service_id or None,
        title_points=rules.TITLE_POINTS, other_points=rules.OTHER_POINTS)
    return Words(counted, probe)


_i, _w = tables.incidents.c, tables.incident_search.c
_CANDIDATE = (_i.id, _i.number, _i.ref, _i.title, utc(_i.detected_at), utc(_i.resolved_at), _i.service,
              _i.pagerduty_service_id, _w.title_terms, _w.body_terms)


def _candidate(r: Any) -> rules.Candidate:
    return rules.Candidate(number=r[1], ref=r[2], title=r[3], detected_at=r[4], resolved_at=r[5], service=r[6],
                           service_id=r[7], title_terms=frozenset((r[8] or "").split()),
                           body_terms=frozenset((r[9] or "").split()))


def candidates(session: Session, ids: Iterable[int]) -> dict[int, rules.Candidate]:
    """Candidates by incident id, with their indexed words; merged incidents (no metrics row) are left out."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    stmt = (select(*_CANDIDATE).join(tables.incident_search, _w.incident_id == _i.id)
            .join(tables.incident_metrics, tables.incident_metrics.c.incident_id == _i.id)
            .where(among(session, _i.id, ids)))
    return {r[0]: _candidate(r) for r in rows(session, stmt)}


@dataclass(frozen=True)
class _Shown:
    """A past incident as one read gives it: the candidate, and what the answer shows of it."""

    candidate: rules.Candidate
    rca: dict[str, Any]
    channel_id: str | None
    channel_name: str | None
    ttr_s: int | None
    capa_total: int  # CAPA actions, won't-do ones aside
    capa_done: int


_a = ActionItem
_SHOWN = (
    select(*_CANDIDATE, Incident.rca, Incident.slack_channel_id, Incident.slack_channel_name, IncidentMetrics.ttr_s,
           select(func.count()).where(_a.incident_id == Incident.id, _a.status != "wont_do")  # type: ignore[arg-type]
           .scalar_subquery(),
           select(func.count()).where(_a.incident_id == Incident.id, _a.status == "done")  # type: ignore[arg-type]
           .scalar_subquery())
    .join(IncidentSearch, IncidentSearch.incident_id == Incident.id)  # type: ignore[arg-type]
    .join(IncidentMetrics, IncidentMetrics.incident_id == Incident.id)  # type: ignore[arg-type]
    .where(Incident.id.in_(bindparam("ids", expanding=True))))  # type: ignore[union-attr]


def _read(session: Session, ids: Iterable[int]) -> dict[int, _Shown]:
    """The rows shown, by incident id, in one read (merged incidents left out)."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    return {r[0]: _Shown(_candidate(r), dict(r[10] or {}), r[11], r[12], r[13], int(r[14]), int(r[15]))
            for r in session.execute(_SHOWN, {"ids": ids})}


def _matches(subject: rules.Subject, words: Words, ranked: list[text_rank.Ranked], shown: dict[int, _Shown],
             limit: int) -> list[rules.Match]:
    found = [shown[r.incident_id].candidate for r in ranked if r.incident_id in shown]
    return rules.rank(subject, found, words.counted, limit=limit)


def _ranked(session: Session, words: Words, limit: int) -> list[text_rank.Ranked]:
    """The database's best rows: exactly the rules' top ``limit`` when it ranks with every counted word;
    otherwise :data:`WIDER` rows for the core to rank with all of them."""
    asked = limit if words.complete else max(limit, WIDER)
    return text_rank.best(session, words.ranking, limit=asked, min_score=rules.MIN_SCORE)


def _recurrence(session: Session, subject: rules.Subject, words: Words, window: timedelta,
                pick: tuple[int, bool, int] | None, shown: dict[int, _Shown]) -> rec_rules.Recurrence | None:
    if pick is None or pick[0] not in shown:
        return None
    since, a = subject.detected_at - window, ActionItem
    stmt = select(a.id, a.title, a.closed_at).where(a.incident_id == pick[0], a.status == "done",  # type: ignore[arg-type]
                                                    a.closed_at >= since, a.closed_at <= subject.detected_at)  # type: ignore[operator]
    fixes = tuple(rec_rules.Fix(action_id, title, done_at) for action_id, title, done_at in session.execute(stmt))
    return rec_rules.find(subject, [rec_rules.Earlier(shown[pick[0]].candidate, fixes)], words.counted, window=window)


def _pick(session: Session, subject: rules.Subject, words: Words, window: timedelta) -> tuple[int, bool, int] | None:
    return text_rank.recurring(session, words.probe, since=subject.detected_at - window,
                               min_score=rec_rules.MIN_SCORE)


def similar(session: Session, inc: Incident, *, limit: int = 3) -> list[rules.Match]:
    """The ``limit`` most similar past incidents of ``inc``, best first (core/similarity.py)."""
    subject = subject_of(inc)
    words = words_of(session, subject)
    ranked = _ranked(session, words, limit)
    return _matches(subject, words, ranked, _read(session, [r.incident_id for r in ranked]), limit)


def recurrence(session: Session, inc: Incident, *, window: timedelta) -> rec_rules.Recurrence | None:
    """The earlier incident ``inc`` recurs after its CAPA was marked done (core/recurrence.py), or None.

    The database walks the CAPA actions done in the window before ``inc`` was detected, newest first, and
    stops at the first whose incident is on its service or scores :data:`core.recurrence.MIN_SCORE`
    (storage/text_rank.py); the core checks the rule on it and lists its fixes."""
    subject = subject_of(inc)
    words = words_of(session, subject)
    pick = _pick(session, subject, words, window)
    return _recurrence(session, subject, words, window, pick, _read(session, [pick[0]] if pick else []))


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


def _past(m: rules.Match, r: _Shown) -> PastIncident:
    c = m.candidate
    return PastIncident(ref=c.ref, title=c.title, score=m.score, reasons=m.reasons, shared_words=m.shared,
                        same_service=m.same_service, service=c.service, detected_at=c.detected_at, ttr_s=r.ttr_s,
                        root_cause=first_line(r.rca.get("root_causes")), capa_done=r.capa_done,
                        capa_total=r.capa_total, channel_id=r.channel_id, channel_name=r.channel_name)


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
    """Both answers for one incident: its words looked up once, the rows shown read once."""
    subject = subject_of(inc)
    words = words_of(session, subject)
    ranked = _ranked(session, words, limit)
    pick = _pick(session, subject, words, window)
    shown = _read(session, [r.incident_id for r in ranked] + ([pick[0]] if pick else []))
    by_number = {r.candidate.number: r for r in shown.values()}
    matches = _matches(subject, words, ranked, shown, limit)
    return Learned(similar=[_past(m, by_number[m.candidate.number]) for m in matches],
                   recurrence=_recurrence(session, subject, words, window, pick, shown))


def count_words(session: Session) -> int:
    """Count again in how many incidents each word appears (``storage.text_rank``; the scheduler, every 15
    minutes: a lookup counts again only the words new incidents may have changed). Words kept."""
    return text_rank.refresh_word_counts(session.connection())


def record_recurrence(session: Session, incident_id: int, rec: rec_rules.Recurrence) -> None:
    """Put on the incident's timeline that it was flagged as a recurrence of ``rec.previous`` (once: a
    repeated call with the same previous incident adds nothing), so its RCA and web page say when and why."""
    repo.add_timeline(session, incident_id=incident_id, occurred_at=utcnow(), source="bot", kind="recurrence",
                      text=rec_rules.timeline_text(rec), source_event_id=f"recurrence:{rec.previous.ref}")


def similar_doc(session: Session, ref: str, *, window: timedelta, limit: int = 3) -> dict[str, Any]:
    """``incidents similar REF``: the incident's similar past incidents and its recurrence."""
    inc = repo.incident_by_ref(session, ref)
    if inc is None:
        raise NoSuchIncident(ref)
    learned = learn(session, inc, window=window, limit=limit)
    return {"ref": inc.ref, "similar": [past_json(p) for p in learned.similar],
            "recurrence": recurrence_json(learned.recurrence)}


class IntroLookup:
    """What the outbox asks when it posts a new incident's intro message: similar past incidents and a
    recurrence, in a read transaction of its own. A failure is logged and the intro goes out without them:
    the first message must never wait on history."""

    def __init__(self, engine: Engine, window: timedelta, *, limit: int = 3, budget_s: float = 5.0) -> None:
        self.engine, self.window, self.limit = engine, window, limit
        self.budget_s = budget_s  # PostgreSQL: a statement (or a wait for a lock) longer than this gives up

    def __call__(self, incident: Incident | int) -> Learned | None:
        """``incident``: the one the outbox loaded with its row (saves reading it again: a wide row, a
        third of the lookup), or its id."""
        incident_id = incident if isinstance(incident, int) else incident.id
        try:
            # A read transaction: on SQLite no write lock, so the fold and accept path go on meanwhile.
            return runner.read(self.engine, self._learn, incident)
        except Exception:
            log.exception("similar past incidents for incident %s: lookup failed; intro posted without them",
                          incident_id)
            return None

    def _learn(self, s: Session, incident: Incident | int) -> Learned | None:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text(f"SET LOCAL statement_timeout = {max(1, int(self.budget_s * 1000))}"))
        inc = s.get(Incident, incident) if isinstance(incident, int) else incident
        if inc is None or inc.detected_at is None:
            return None
        return learn(s, inc, window=self.window, limit=self.limit)
