"""What keeps breaking, read for a period: repeated services and MTBF, CAPA effectiveness, and the
incidents of the period that recur after CAPA. The rules are core/learning.py's and core/recurrence.py's;
the digest and the web view's metrics page both call :func:`keeps_breaking_doc`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlmodel import Session

from incident_bot.core import learning as rules
from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity
from incident_bot.usecases.similar import candidates
from storage import tables, text_rank, text_search
from storage.bulk import among, rows, utc

MAX_RECURRENCES = 50


def service_spans(session: Session, until: datetime) -> list[rules.ServiceSpan]:
    m = tables.incident_metrics.c
    recent = dict(session.execute(
        select(m.service, func.count()).where(m.detected_at >= until - rules.RECENT, m.detected_at < until,
                                              m.service.is_not(None)).group_by(m.service)).all())
    stmt = (select(m.service, func.count(), func.min(m.detected_at), func.max(m.detected_at))
            .where(m.detected_at >= until - rules.MTBF_SPAN, m.detected_at < until, m.service.in_(list(recent)))
            .group_by(m.service))
    return [rules.ServiceSpan(service=s, recent=int(recent.get(s, 0)), span_count=int(n), first_at=first, last_at=last)
            for s, n, first, last in session.execute(stmt)]


def capa_effectiveness(session: Session, until: datetime, now: datetime, window: timedelta, *,
                       limit: int | None = rules.MAX_CAPA_ITEMS) -> dict[str, Any]:
    """``core.learning.effectiveness`` of the CAPA done in the quarter before ``until``: every action judged by
    ``core.learning.capa_outcome``'s rule, the ``limit`` that did not hold and were done last listed.

    At 100,000 incidents that is 13,000 actions against the 26,000 incidents on their services. Each is
    judged from plain tuples (:class:`Detections`: a bisect into its service's detections); only the
    actions listed become objects, with their titles and refs read afterwards.
    """
    done = _done_in(session, until - rules.CAPA_SPAN, until)
    services = sorted({service for _, _, service, _ in done if service})
    m = tables.incident_metrics.c
    detections = Detections(())
    if services:
        first = min(done_at for *_, done_at in done)
        detections = Detections(rows(session, select(m.service, utc(m.detected_at), m.incident_id).where(
            m.service.in_(services), m.detected_at >= first, m.detected_at <= until + window)
            .order_by(m.service, m.detected_at)))  # the order of ix_incident_metrics_service_detected
    counts = dict.fromkeys(rules.STATUSES, 0)
    recurred: list[tuple[datetime, int, int]] = []
    pending_after = min(until, now) - window  # done later than this: its window is still open
    for action_id, incident_id, service, done_at in done:
        status = detections.status(service, done_at, incident_id, window=window, pending_after=pending_after)
        counts[status] += 1
        if status == "recurred":
            recurred.append((done_at, action_id, incident_id))
    listed = sorted(recurred, reverse=True)[:limit] if limit is not None else recurred
    return rules.effectiveness(counts, _recurred_outcomes(session, listed, detections), limit=limit)


def _done_in(session: Session, since: datetime, until: datetime) -> list[tuple[int, int, str | None, datetime]]:
    """``(action id, incident id, the incident's service, done at)`` of the CAPA done in ``[since, until)``.

    The service is read from ``incident_metrics``, the narrow copy every incident has (rewritten whenever its
    service changes), not from ``incidents``: half the reading at 13,000 actions. A merged incident has no
    copy; its service comes from ``incidents``."""
    a, i, m = tables.action_items.c, tables.incidents.c, tables.incident_metrics.c
    found = rows(session, select(a.id, a.incident_id, m.incident_id, m.service, utc(a.closed_at))
                 .join(tables.incident_metrics, m.incident_id == a.incident_id, isouter=True)
                 .where(a.status == "done", a.closed_at >= since, a.closed_at < until))
    merged = sorted({incident_id for _, incident_id, copied, _, _ in found if copied is None})
    services = dict(rows(session, select(i.id, i.service).where(among(session, i.id, merged)))) if merged else {}
    return [(action_id, incident_id, service if copied is not None else services.get(incident_id), done_at)
            for action_id, incident_id, copied, service, done_at in found]


def _recurred_outcomes(session: Session, listed: Sequence[tuple[datetime, int, int]], detections: Detections
                       ) -> list[rules.CapaOutcome]:
    """The listed actions that did not hold, as ``core.learning.capa_outcome`` names them: the first incident
    after each (detection, then ref) that is not its own."""
    if not listed:
        return []
    a, i = tables.action_items.c, tables.incidents.c
    found = rows(session, select(a.id, a.title, i.number, i.ref, i.service, utc(a.closed_at))
                 .join(tables.incidents, i.id == a.incident_id)
                 .where(among(session, a.id, [action_id for _, action_id, _ in listed])))
    capas = {r[0]: rules.DoneCapa(*r) for r in found}
    firsts = {action_id: detections.first_others(capas[action_id].service or "", done_at, own)
              for done_at, action_id, own in listed}
    refs = dict(rows(session, select(i.id, i.ref).where(
        among(session, i.id, sorted({n for ids in firsts.values() for n in ids})))))
    return [rules.CapaOutcome(capas[action_id], "recurred", min(refs[n] for n in firsts[action_id]))
            for _, action_id, _ in listed]


class Detections:
    """Incidents by service, as ``(service, detected_at, incident_id)`` rows, each service's in order of
    detection: for a CAPA action, the first incident detected at or after it was done that is not its own
    (``capa_outcome``'s rule needs no other: if that one is outside the window, every later one is too)."""

    def __init__(self, found: Iterable[tuple[str, datetime, int]]) -> None:
        self.times: dict[str, list[datetime]] = defaultdict(list)
        self.ids: dict[str, list[int]] = defaultdict(list)
        for service, at, incident_id in found:
            self.times[service].append(at)
            self.ids[service].append(incident_id)

    def status(self, service: str | None, done_at: datetime, own: int, *, window: timedelta,
               pending_after: datetime) -> str:
        """``core.learning.capa_outcome``'s status of an action done at ``done_at`` on ``own``'s ``service``
        (``pending_after``: the as-of instant minus the window)."""
        if not service:
            return "no_service"
        at = self.first_other(service, done_at, own)
        if at is not None and at - done_at <= window:
            return "recurred"
        return "pending" if done_at > pending_after else "held"

    def first_other(self, service: str, done_at: datetime, own: int) -> datetime | None:
        """When the first incident on ``service`` not ``own`` was detected at or after ``done_at``."""
        times, ids = self.times.get(service, ()), self.ids.get(service, ())
        k = bisect_left(times, done_at)
        if k < len(ids) and ids[k] == own:  # an incident is there once: one step past it is enough
            k += 1
        return times[k] if k < len(times) else None

    def first_others(self, service: str, done_at: datetime, own: int) -> list[int]:
        """The incidents (ids) detected at :meth:`first_other`'s instant, ``own`` left out."""
        at = self.first_other(service, done_at, own)
        if at is None:
            return []
        times, ids = self.times[service], self.ids[service]
        return [ids[k] for k in range(bisect_left(times, at), bisect_right(times, at)) if ids[k] != own]


def recurrences(session: Session, since: datetime, until: datetime, window: timedelta, *,
                limit: int = MAX_RECURRENCES) -> list[rules.FlaggedRecurrence]:
    """The first ``limit`` incidents detected in ``[since, until)`` (by detection, then number) that recur an
    earlier one after its CAPA (core/recurrence.py), in bulk: the same rule as
    ``usecases.similar.recurrence`` for one incident, each subject looking only at the earlier incidents it
    could name (:class:`FixedEarlier`).

    The period's incidents are read and judged a page at a time, and the reading stops at the ``limit``-th
    recurrence: at 100,000 incidents every one of a week's 1,900 recurs, and judging them all was most of
    the digest's time. The words' counts are asked for the words of the page (whether a word counts
    depends on that word alone, so the answers are those of one count over the whole period)."""
    a = tables.action_items.c
    fix_rows = rows(session, select(a.incident_id, a.id, a.title, utc(a.closed_at)).where(
        a.status == "done", a.closed_at >= since - window, a.closed_at < until))
    if not fix_rows or limit <= 0:
        return []
    fixes: dict[int, list[rec_rules.Fix]] = defaultdict(list)
    for incident_id, action_id, title, done_at in fix_rows:
        fixes[incident_id].append(rec_rules.Fix(action_id, title, done_at))
    earlier = FixedEarlier(fixes, lambda ids: candidates(session, ids))
    total, counted_at = text_rank.totals(session)
    asked: set[str] = set()
    counted: frozenset[str] = frozenset()
    out: list[rules.FlaggedRecurrence] = []
    for page in _subject_pages(session, since, until, first=limit):
        new = {s for _, _, subj in page for s in subj.stems} - asked
        if new:
            df = text_rank.doc_freq(session, new, cap=similarity.common_cap(total), total=total,
                                    counted_at=counted_at)
            counted |= similarity.informative(new, df, total)
            asked |= new
        for ref, title, subj in page:
            rec = earlier.find(subj, counted, window)
            if rec is not None:
                out.append(rules.FlaggedRecurrence(ref=ref, title=title, service=subj.service,
                                                   previous=rec.previous.ref, previous_title=rec.previous.title,
                                                   days_since=rec.days_since, reasons=rec.reasons))
                if len(out) == limit:
                    return out
    return out


SUBJECT_PAGE = 100


def _subject_pages(session: Session, since: datetime, until: datetime, *, first: int
                   ) -> Iterator[list[tuple[str, str, similarity.Subject]]]:
    """The incidents detected in ``[since, until)`` (merged ones left out), ``(ref, title, subject)`` in order
    of detection then number: ``first`` of them (what is wanted when every one recurs), then
    :data:`SUBJECT_PAGE` at a time (a keyset on that order). Each is read as words (stemmed) only here."""
    i, m = tables.incidents.c, tables.incident_metrics.c
    stmt = (select(i.number, i.ref, i.title, i.service, i.pagerduty_service_id, i.description, i.rca,
                   utc(i.detected_at))
            .join(tables.incident_metrics, m.incident_id == i.id)
            .where(i.detected_at >= since, i.detected_at < until)
            .order_by(i.detected_at, i.number))
    after, size = stmt, max(1, first)
    while True:
        found = rows(session, after.limit(size))
        page = []
        for number, ref, title, service, service_id, description, rca, detected in found:
            head, body = text_search.fields(title, service, description, rca)
            page.append((ref, title, similarity.Subject(number=number, detected_at=detected, service=service,
                                                        service_id=service_id, title_words=head, body_words=body)))
        if page:
            yield page
        if len(found) < size:
            return
        last_at, last_number = found[-1][-1], found[-1][0]
        size = SUBJECT_PAGE
        after = stmt.where(or_(i.detected_at > last_at, and_(i.detected_at == last_at, i.number > last_number)))


def _service_keys(name: str | None, service_id: str | None) -> frozenset[str]:
    return frozenset({(name or "").casefold(), service_id or ""} - {""})


class FixedEarlier:
    """The earlier incidents with a CAPA action done, read as the incidents of a period need them, so that
    each finds the one it recurs (``core.recurrence.find``) without scoring, or even reading, every earlier
    incident it could name.

    A subject's *pool* is the earlier incidents on its service (name or PagerDuty id) or sharing a counted
    word with it: no other can qualify (same service, or a score from shared words). ``find`` names the
    qualifying incident whose last fix inside the window was done last (then same service, the higher
    score, the higher number). So everyone's fixes are walked latest first, from the subject's detection
    back to the window's start; the first pool member that qualifies settles when, and only the members
    whose last fix was done at that same instant are left to choose from: ``core.recurrence.find`` chooses
    among them (tests/test_learning_bulk.py holds this to the rule over the whole pool).

    At scale a recurrence is found within a few fixes (a busy service's last fix is hours old), so an
    earlier incident is read (``load``: ids -> candidates with their words; merged ones are absent) only
    when the walk reaches one of its fixes, with those of the ``batch`` fixes before it: a week's first 50
    recurrences at 100,000 incidents read a few hundred of the 4,800 earlier incidents they could name.
    """

    def __init__(self, fixes: Mapping[int, Sequence[rec_rules.Fix]],
                 load: Callable[[list[int]], Mapping[int, similarity.Candidate]], *, batch: int = 200) -> None:
        self.fixes = {key: tuple(found) for key, found in fixes.items()}
        done = sorted((f.done_at, key) for key, found in self.fixes.items() for f in found)
        self.done_at = [at for at, _ in done]
        self.done_by = [key for _, key in done]
        self.load, self.batch = load, max(1, batch)
        # key -> (the incident with its fixes, its service keys, its words); None: merged away
        self.known: dict[int, tuple[rec_rules.Earlier, frozenset[str], frozenset[str]] | None] = {}

    @classmethod
    def of(cls, earlier: Sequence[rec_rules.Earlier], *, batch: int = 200) -> FixedEarlier:
        """Over incidents already in memory, keyed by number (the tests)."""
        by_number = {e.incident.number: e.incident for e in earlier}
        return cls({e.incident.number: e.fixes for e in earlier},
                   lambda keys: {k: by_number[k] for k in keys}, batch=batch)

    def _at(self, j: int) -> tuple[rec_rules.Earlier, frozenset[str], frozenset[str]] | None:
        """The incident of the ``j``-th fix; read with the unread ones of the ``batch`` fixes before it."""
        key = self.done_by[j]
        if key not in self.known:
            wanted = sorted({k for k in self.done_by[max(0, j - self.batch + 1):j + 1] if k not in self.known})
            found = self.load(wanted)
            for k in wanted:
                c = found.get(k)
                self.known[k] = None if c is None else (rec_rules.Earlier(c, self.fixes[k]),
                                                        _service_keys(c.service, c.service_id),
                                                        c.title_terms | c.body_terms)
        return self.known[key]

    def find(self, subject: similarity.Subject, counted: frozenset[str], window: timedelta
             ) -> rec_rules.Recurrence | None:
        """What ``core.recurrence.find(subject, <subject's pool>, counted, window=window)`` answers."""
        keys = _service_keys(subject.service, subject.service_id)
        words = subject.stems & counted
        found: rec_rules.Recurrence | None = None
        found_at: datetime | None = None
        tied: list[rec_rules.Earlier] = []
        seen: set[int] = set()
        stop = bisect_left(self.done_at, subject.detected_at - window)
        for j in range(bisect_right(self.done_at, subject.detected_at) - 1, stop - 1, -1):
            if found is not None and self.done_at[j] != found_at:
                break  # before the instant that settled it: nothing further back can tie
            key = self.done_by[j]
            if key in seen:
                continue
            seen.add(key)  # its first fix met is its last one in the window
            entry = self._at(j)
            if entry is None or (keys.isdisjoint(entry[1]) and words.isdisjoint(entry[2])):
                continue  # merged away, or not in the subject's pool
            if found is None:
                found = rec_rules.find(subject, [entry[0]], counted, window=window)
                if found is not None:
                    found_at, tied = self.done_at[j], [entry[0]]
            else:
                tied.append(entry[0])
        return rec_rules.find(subject, tied, counted, window=window) if len(tied) > 1 else found


def keeps_breaking_doc(session: Session, since: datetime, until: datetime, *, now: datetime,
                       window: timedelta, capa_items: int | None = rules.MAX_CAPA_ITEMS) -> dict[str, Any]:
    """The ``keeps_breaking`` JSON block of the digest (core/learning.py ``learning_json``); ``capa_items``:
    how many of the CAPA actions that did not hold are listed (None: all)."""
    return rules.learning_json(rules.keeps_breaking(service_spans(session, until)),
                               capa_effectiveness(session, until, now, window, limit=capa_items),
                               recurrences(session, since, until, window), window=window)
