"""What keeps breaking, read for a period: repeated services and MTBF, CAPA effectiveness, and the
incidents of the period that recur after CAPA. The rules are core/learning.py's and core/recurrence.py's;
the digest and the web view's metrics page both call :func:`keeps_breaking_doc`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.core import learning as rules
from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity
from incident_bot.usecases.similar import candidates
from storage import text_rank, text_search
from storage.bulk import rows, utc
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
    # A quarter's done actions and the incidents on their services: ~40,000 rows at 100,000 incidents,
    # read as plain rows (storage/bulk.py).
    stmt = (select(a.id, a.title, i.number, i.ref, i.service, utc(a.closed_at))
            .join(i, i.id == a.incident_id)  # type: ignore[arg-type]
            .where(a.status == "done", a.closed_at >= until - rules.CAPA_SPAN, a.closed_at < until))  # type: ignore[operator]
    done = [rules.DoneCapa(*r) for r in rows(session, stmt)]
    services = sorted({d.service for d in done if d.service})
    on_service: dict[str, list[tuple[datetime, str, int]]] = defaultdict(list)
    if services:
        first = min(d.done_at for d in done)
        m = IncidentMetrics
        found = rows(session,
            select(m.service, i.number, i.ref, utc(m.detected_at)).join(i, i.id == m.incident_id)  # type: ignore[arg-type]
            .where(m.service.in_(services), m.detected_at >= first, m.detected_at <= until + window))  # type: ignore[union-attr,operator]
        for service, number, ref, at in found:
            on_service[service].append((at, ref, number))
        for incidents in on_service.values():
            incidents.sort()
    as_of = min(until, now)
    return [rules.capa_outcome(d, first_detected_from(on_service.get(d.service or "", []), d.done_at),
                               window=window, now=as_of) for d in done]


def first_detected_from(incidents: Sequence[tuple[datetime, str, int]], done_at: datetime
                        ) -> list[tuple[int, str, datetime]]:
    """Of a service's incidents, sorted ``(detected_at, ref, number)``, the two first detected at or after
    ``done_at``, as ``core.learning.capa_outcome`` takes them.

    Why two: ``capa_outcome`` names the first incident after the action was done, by detection then
    ref, that is not the action's own incident and is inside the window. Among the incidents detected
    at or after ``done_at`` that is the first one, or the second when the first is the action's own
    (an incident appears once); if that one is outside the window, every later one is too. So the
    rule decides on these two exactly as on the service's whole list, and a quarter's 13,000 done
    actions no longer each walk a service's thousand incidents (that took 4 s of the digest at
    100,000 incidents).
    """
    at = bisect_left(incidents, (done_at,))
    return [(number, ref, detected) for detected, ref, number in incidents[at:at + 2]]


def recurrences(session: Session, since: datetime, until: datetime, window: timedelta) -> list[rules.FlaggedRecurrence]:
    """Incidents detected in ``[since, until)`` that recur an earlier one after its CAPA (core/recurrence.py),
    in bulk: the same rule as ``usecases.similar.recurrence`` for one incident, each subject looking only
    at the earlier incidents it could name (:class:`FixedEarlier`)."""
    a = ActionItem
    fix_rows = rows(session, select(a.incident_id, a.id, a.title, utc(a.closed_at)).where(
        a.status == "done", a.closed_at >= since - window, a.closed_at < until))  # type: ignore[operator]
    if not fix_rows:
        return []
    fixes: dict[int, list[rec_rules.Fix]] = defaultdict(list)
    for incident_id, action_id, title, done_at in fix_rows:
        fixes[incident_id].append(rec_rules.Fix(action_id, title, done_at))
    earlier = FixedEarlier([rec_rules.Earlier(c, tuple(fixes[iid])) for iid, c in candidates(session, fixes).items()])
    i = Incident
    stmt = (select(i.number, i.ref, i.title, i.service, i.pagerduty_service_id, i.description, i.rca,
                   utc(i.detected_at))
            .join(IncidentMetrics, IncidentMetrics.incident_id == i.id)  # type: ignore[arg-type]
            .where(i.detected_at >= since, i.detected_at < until).order_by(i.detected_at, i.number))  # type: ignore[operator]
    subjects = []
    for number, ref, title, service, service_id, description, rca, detected in rows(session, stmt):
        head, body = text_search.fields(title, service, description, rca)
        subjects.append((ref, title, similarity.Subject(number=number, detected_at=detected, service=service,
                                                        service_id=service_id, title_words=head, body_words=body)))
    shared = {s for _, _, subj in subjects for s in subj.stems} & earlier.words
    total, counted_at = text_rank.totals(session)
    df = text_rank.doc_freq(session, shared, cap=similarity.common_cap(total), total=total, counted_at=counted_at)
    counted = similarity.informative(shared, df, total)
    out = []
    for ref, title, subj in subjects:
        rec = earlier.find(subj, counted, window)
        if rec is not None:
            out.append(rules.FlaggedRecurrence(ref=ref, title=title, service=subj.service, previous=rec.previous.ref,
                                               previous_title=rec.previous.title, days_since=rec.days_since,
                                               reasons=rec.reasons))
    return out


def _service_keys(name: str | None, service_id: str | None) -> frozenset[str]:
    return frozenset({(name or "").casefold(), service_id or ""} - {""})


class FixedEarlier:
    """The earlier incidents with a CAPA action done, indexed so that each incident of a period finds the
    one it recurs (``core.recurrence.find``) without scoring every earlier incident it could name.

    A subject's *pool* is the earlier incidents on its service (name or PagerDuty id) or sharing a counted
    word with it: no other can qualify (same service, or a score from shared words). ``find`` names the
    qualifying incident whose last fix inside the window was done last (then same service, the higher
    score, the higher number). So the pool is looked at in that order, latest fix first, and the first
    incident that qualifies settles when: only the incidents whose last fix was done at that same instant
    are left to choose from, and ``core.recurrence.find`` chooses among them. Two ways to get that
    order, the cheaper first:
    - walk everyone's fixes, latest first (at scale a recurrence is usually found within a few: a busy
      service's last fix is hours old), for at most as many fixes as the pool can have members;
    - if still undecided, sort the pool itself by each member's last fix inside the window.
    ``core.recurrence.find`` decides every candidate either way, on the incidents the whole pool would
    give it (tests/test_learning_bulk.py holds the two to the same answers). At 100,000 incidents a
    week's 1,900 incidents took 7 s scored against their whole pools.
    """

    def __init__(self, earlier: Sequence[rec_rules.Earlier]) -> None:
        self.earlier = list(earlier)
        self.keys = [_service_keys(e.incident.service, e.incident.service_id) for e in self.earlier]
        self.terms = [e.incident.title_terms | e.incident.body_terms for e in self.earlier]
        self.by_key: dict[str, list[int]] = defaultdict(list)
        self.by_word: dict[str, list[int]] = defaultdict(list)
        for n, (keys, terms) in enumerate(zip(self.keys, self.terms, strict=True)):
            for key in keys:
                self.by_key[key].append(n)
            for stem in terms:
                self.by_word[stem].append(n)
        self.words = frozenset(self.by_word)
        self.fix_times = [sorted(f.done_at for f in e.fixes) for e in self.earlier]
        done = sorted((at, n) for n, times in enumerate(self.fix_times) for at in times)
        self.done_at = [at for at, _ in done]
        self.done_by = [n for _, n in done]

    def find(self, subject: similarity.Subject, counted: frozenset[str], window: timedelta
             ) -> rec_rules.Recurrence | None:
        """What ``core.recurrence.find(subject, <subject's pool>, counted, window=window)`` answers."""
        when, oldest = subject.detected_at, subject.detected_at - window
        keys = _service_keys(subject.service, subject.service_id)
        words = subject.stems & counted
        postings = [self.by_key[k] for k in keys if k in self.by_key]
        postings += [self.by_word[w] for w in words if w in self.by_word]
        budget = sum(len(p) for p in postings)
        try:
            return self._first(subject, counted, window, self._by_fix(when, oldest, keys, words, budget))
        except _LongWalk:
            return self._first(subject, counted, window, self._by_last_fix(postings, when, oldest))

    def _first(self, subject: similarity.Subject, counted: frozenset[str], window: timedelta,
               order: Iterable[tuple[datetime, int]]) -> rec_rules.Recurrence | None:
        """``core.recurrence.find`` over pool members given latest last fix first: the first that qualifies
        settles the instant, and ``find`` chooses among the members whose last fix was done then."""
        found: rec_rules.Recurrence | None = None
        found_at: datetime | None = None
        tied: list[rec_rules.Earlier] = []
        for at, n in order:
            if found is None:
                found = rec_rules.find(subject, [self.earlier[n]], counted, window=window)
                if found is not None:
                    found_at, tied = at, [self.earlier[n]]
            elif at == found_at:
                tied.append(self.earlier[n])
            else:
                break
        return rec_rules.find(subject, tied, counted, window=window) if len(tied) > 1 else found

    def _by_fix(self, when: datetime, oldest: datetime, keys: frozenset[str], words: frozenset[str],
                budget: int) -> Iterator[tuple[datetime, int]]:
        """Pool members at their last fix in ``[oldest, when]``, latest first, from everyone's fixes; raises
        :class:`_LongWalk` once ``budget`` fixes are walked (sorting the pool is cheaper from there)."""
        seen: set[int] = set()
        stop = bisect_left(self.done_at, oldest)
        for walked, j in enumerate(range(bisect_right(self.done_at, when) - 1, stop - 1, -1)):
            if walked >= budget:
                raise _LongWalk
            n = self.done_by[j]
            if n in seen:
                continue
            seen.add(n)  # its first fix met is its last one in the window
            if not keys.isdisjoint(self.keys[n]) or not words.isdisjoint(self.terms[n]):
                yield self.done_at[j], n

    def _by_last_fix(self, postings: list[list[int]], when: datetime, oldest: datetime
                     ) -> list[tuple[datetime, int]]:
        """Pool members with a fix in ``[oldest, when]``, at their last such fix, latest first."""
        ranked = []
        for n in {n for posting in postings for n in posting}:
            times = self.fix_times[n]
            k = bisect_right(times, when)
            if k and times[k - 1] >= oldest:
                ranked.append((times[k - 1], n))
        ranked.sort(reverse=True)
        return ranked


class _LongWalk(Exception):
    """The walk over everyone's fixes met as many fixes as the pool can have members, undecided."""


def keeps_breaking_doc(session: Session, since: datetime, until: datetime, *, now: datetime,
                       window: timedelta) -> dict[str, Any]:
    """The ``keeps_breaking`` JSON block of the digest (core/learning.py ``learning_json``)."""
    flagged = recurrences(session, since, until, window)
    return rules.learning_json(rules.keeps_breaking(service_spans(session, until)),
                               rules.effectiveness(capa_outcomes(session, until, now, window)),
                               flagged[:MAX_RECURRENCES], window=window)
