"""What keeps breaking, read for a period: repeated services and MTBF, CAPA effectiveness, and the
incidents of the period that recur after CAPA. The rules are core/learning.py's and core/recurrence.py's;
the digest and the web view's metrics page both call :func:`keeps_breaking_doc`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.core import learning as rules
from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity
from incident_bot.usecases.similar import candidates
from storage import text_rank, text_search
from storage.models import ActionItem, Incident, IncidentMetrics

MAX_RECURRENCES = 50


def service_spans(session: Session, until: datetime) -> list[rules.ServiceSpan]:
    m = IncidentMetrics
    recent = dict(session.execute(
        select(m.service, func.count()).where(m.detected_at >= until - rules.RECENT, m.detected_at < until,  # type: ignore[operator]
                                              m.service.is_not(None)).group_by(m.service)).all())  # type: ignore[union-attr]
    stmt = (select(m.service, func.count(), func.min(m.detected_at), func.max(m.detected_at))
            .where(m.detected_at >= until - rules.MTBF_SPAN, m.detected_at < until, m.service.in_(list(recent)))  # type: ignore[operator,union-attr]
            .group_by(m.service))
    return [rules.ServiceSpan(service=s, recent=int(recent.get(s, 0)), span_count=int(n), first_at=first, last_at=last)
            for s, n, first, last in session.execute(stmt)]


def capa_outcomes(session: Session, until: datetime, now: datetime, window: timedelta) -> list[rules.CapaOutcome]:
    a, i = ActionItem, Incident
    stmt = (select(a.id, a.title, i.number, i.ref, i.service, a.closed_at)
            .join(i, i.id == a.incident_id)  # type: ignore[arg-type]
            .where(a.status == "done", a.closed_at >= until - rules.CAPA_SPAN, a.closed_at < until))  # type: ignore[operator]
    done = [rules.DoneCapa(*r) for r in session.execute(stmt)]
    services = sorted({d.service for d in done if d.service})
    on_service: dict[str, list[tuple[int, str, datetime]]] = defaultdict(list)
    if services:
        first = min(d.done_at for d in done)
        m = IncidentMetrics
        rows = session.execute(
            select(m.service, i.number, i.ref, m.detected_at).join(i, i.id == m.incident_id)  # type: ignore[arg-type]
            .where(m.service.in_(services), m.detected_at >= first, m.detected_at <= until + window))  # type: ignore[union-attr,operator]
        for service, number, ref, at in rows:
            on_service[service].append((number, ref, at))
    as_of = min(until, now)
    return [rules.capa_outcome(d, on_service.get(d.service or "", []), window=window, now=as_of) for d in done]


def recurrences(session: Session, since: datetime, until: datetime, window: timedelta) -> list[rules.FlaggedRecurrence]:
    """Incidents detected in ``[since, until)`` that recur an earlier one after its CAPA (core/recurrence.py),
    in bulk: the same rule as ``usecases.similar.recurrence`` for one incident, with an inverted index so a
    busy week does not compare every pair."""
    a = ActionItem
    fix_rows = session.execute(select(a.incident_id, a.id, a.title, a.closed_at).where(
        a.status == "done", a.closed_at >= since - window, a.closed_at < until)).all()  # type: ignore[operator]
    if not fix_rows:
        return []
    fixes: dict[int, list[rec_rules.Fix]] = defaultdict(list)
    for incident_id, action_id, title, done_at in fix_rows:
        fixes[incident_id].append(rec_rules.Fix(action_id, title, done_at))
    earlier = [rec_rules.Earlier(c, tuple(fixes[iid])) for iid, c in candidates(session, fixes).items()]
    i = Incident
    stmt = (select(i.number, i.ref, i.title, i.service, i.pagerduty_service_id, i.description, i.rca, i.detected_at)
            .join(IncidentMetrics, IncidentMetrics.incident_id == i.id)  # type: ignore[arg-type]
            .where(i.detected_at >= since, i.detected_at < until).order_by(i.detected_at, i.number))  # type: ignore[operator]
    subjects = []
    for number, ref, title, service, service_id, description, rca, detected in session.execute(stmt):
        head, body = text_search.fields(title, service, description, rca)
        subjects.append((ref, title, similarity.Subject(number=number, detected_at=detected, service=service,
                                                        service_id=service_id, title_words=head, body_words=body)))
    by_service: dict[str, list[rec_rules.Earlier]] = defaultdict(list)
    by_word: dict[str, list[rec_rules.Earlier]] = defaultdict(list)
    for e in earlier:
        for key in {(e.incident.service or "").casefold(), e.incident.service_id or ""} - {""}:
            by_service[key].append(e)
        for stem in e.incident.title_terms | e.incident.body_terms:
            by_word[stem].append(e)
    shared = {s for _, _, subj in subjects for s in subj.stems} & set(by_word)
    total, counted_at = text_rank.totals(session)
    df = text_rank.doc_freq(session, shared, cap=similarity.common_cap(total), total=total, counted_at=counted_at)
    counted = similarity.informative(shared, df, total)
    out = []
    for ref, title, subj in subjects:
        pool = {id(e): e for key in {(subj.service or "").casefold(), subj.service_id or ""} - {""}
                for e in by_service.get(key, [])}
        pool.update({id(e): e for s in subj.stems & counted for e in by_word.get(s, [])})
        rec = rec_rules.find(subj, pool.values(), counted, window=window)
        if rec is not None:
            out.append(rules.FlaggedRecurrence(ref=ref, title=title, service=subj.service, previous=rec.previous.ref,
                                               previous_title=rec.previous.title, days_since=rec.days_since,
                                               reasons=rec.reasons))
    return out


def keeps_breaking_doc(session: Session, since: datetime, until: datetime, *, now: datetime,
                       window: timedelta) -> dict[str, Any]:
    """The ``keeps_breaking`` JSON block of the digest (core/learning.py ``learning_json``)."""
    flagged = recurrences(session, since, until, window)
    return rules.learning_json(rules.keeps_breaking(service_spans(session, until)),
                               rules.effectiveness(capa_outcomes(session, until, now, window)),
                               flagged[:MAX_RECURRENCES], window=window)
