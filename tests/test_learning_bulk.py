"""The digest's bulk reads of what keeps breaking (usecases/learning.py) give the answers of the rules applied
the plain way: ``FixedEarlier.find`` as ``core.recurrence.find`` over the subject's whole pool, and
``Detections`` as ``core.learning.capa_outcome`` over the service's whole list of incidents.

Pure data, no database: coarse clocks and a few services and words, so that ties (fixes done at the same
instant, incidents detected at the same instant), the window's edges, an incident that is its own
earlier one and services spelled in another case all come up often.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from incident_bot.core import learning as rules
from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity
from incident_bot.usecases.learning import Detections, FixedEarlier

T0 = datetime(2026, 10, 1, tzinfo=UTC)
WINDOW = timedelta(days=3)
WORDS = ["disk", "full", "slow", "cpu", "dns", "cache"]
SERVICES = ["db", "DB", "web", None]

hours = st.integers(0, 48).map(lambda k: T0 + timedelta(hours=6 * k))  # 12 days, 6-hour steps: ties, edges


@st.composite
def earlier_incident(draw: st.DrawFn, number: int) -> rec_rules.Earlier:
    cand = similarity.Candidate(
        number=number, ref=f"INC-{number}", title=f"incident {number}", detected_at=draw(hours), resolved_at=T0,
        service=draw(st.sampled_from(SERVICES)), service_id=draw(st.sampled_from([None, "P1", "P2"])),
        title_terms=frozenset(draw(st.sets(st.sampled_from(WORDS), max_size=4))),
        body_terms=frozenset(draw(st.sets(st.sampled_from(WORDS), max_size=3))))
    fixes = draw(st.lists(st.builds(rec_rules.Fix, st.integers(1, 10_000), st.just("fix"), hours),
                          min_size=1, max_size=3))
    return rec_rules.Earlier(cand, tuple(fixes))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[rec_rules.Earlier], list[similarity.Subject], frozenset[str]]:
    numbers = draw(st.lists(st.integers(1, 60), unique=True, max_size=30))
    earlier = [draw(earlier_incident(n)) for n in numbers]
    subjects = []
    for _ in range(draw(st.integers(1, 8))):
        subjects.append(similarity.Subject(
            number=draw(st.integers(1, 70)), detected_at=draw(hours), service=draw(st.sampled_from(SERVICES)),
            service_id=draw(st.sampled_from([None, "P1", "P2"])),
            title_words={w: w.upper() for w in draw(st.sets(st.sampled_from(WORDS), max_size=4))},
            body_words={w: w for w in draw(st.sets(st.sampled_from(WORDS), max_size=3))}))
    counted = frozenset(draw(st.sets(st.sampled_from(WORDS))))
    return earlier, subjects, counted


def pool_of(subject: similarity.Subject, earlier: list[rec_rules.Earlier], counted: frozenset[str]
            ) -> list[rec_rules.Earlier]:
    """The pool as the digest built it before the index: same service key, or a counted word shared."""
    by_service: dict[str, list[rec_rules.Earlier]] = defaultdict(list)
    by_word: dict[str, list[rec_rules.Earlier]] = defaultdict(list)
    for e in earlier:
        for key in {(e.incident.service or "").casefold(), e.incident.service_id or ""} - {""}:
            by_service[key].append(e)
        for stem in e.incident.title_terms | e.incident.body_terms:
            by_word[stem].append(e)
    pool = {id(e): e for key in {(subject.service or "").casefold(), subject.service_id or ""} - {""}
            for e in by_service.get(key, [])}
    pool.update({id(e): e for s in subject.stems & counted for e in by_word.get(s, [])})
    return list(pool.values())


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(1, 8))
def test_recurrence_found_from_the_index_is_the_rule_over_the_whole_pool(history, batch) -> None:  # type: ignore[no-untyped-def]
    earlier, subjects, counted = history
    index = FixedEarlier.of(earlier, batch=batch)  # incidents read a few fixes at a time, as the walk needs them
    for subject in subjects:
        expected = rec_rules.find(subject, pool_of(subject, earlier, counted), counted, window=WINDOW)
        assert index.find(subject, counted, WINDOW) == expected


def test_earlier_incidents_are_read_only_as_far_as_the_walk_goes() -> None:
    """The walk reads an earlier incident when it reaches one of its fixes (with those of the batch before
    it): a recurrence on a service fixed last is found having read that batch only; one whose only match
    was fixed long before reads back to it; the answers are the rule's."""
    def incident(n: int, service: str, done_hours: list[int]) -> rec_rules.Earlier:
        cand = similarity.Candidate(number=n, ref=f"INC-{n}", title="t", detected_at=T0, service=service)
        return rec_rules.Earlier(cand, tuple(rec_rules.Fix(n * 10 + k, "fix", T0 + timedelta(hours=h))
                                            for k, h in enumerate(done_hours)))

    earlier = [incident(1, "db", [1]), *(incident(n, f"svc{n}", [10 + n]) for n in range(2, 42))]
    by_number = {e.incident.number: e.incident for e in earlier}
    read: list[int] = []

    def load(keys: list[int]) -> dict[int, similarity.Candidate]:
        read.extend(keys)
        return {k: by_number[k] for k in keys}

    index = FixedEarlier({e.incident.number: e.fixes for e in earlier}, load, batch=5)
    subject = similarity.Subject(number=100, detected_at=T0 + timedelta(hours=60), service="svc41")
    found = index.find(subject, frozenset(), timedelta(days=3))
    assert found is not None and found.previous.ref == "INC-41" and sorted(read) == [37, 38, 39, 40, 41]
    subject = similarity.Subject(number=101, detected_at=T0 + timedelta(hours=60), service="db")
    found = index.find(subject, frozenset(), timedelta(days=3))
    assert found is not None and found.previous.ref == "INC-1" and sorted(read) == list(range(1, 42))
    assert found == rec_rules.find(subject, pool_of(subject, earlier, frozenset()), frozenset(),
                                   window=timedelta(days=3))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(hours, st.integers(1, 30)), max_size=25, unique_by=lambda x: x[1]), hours,
       st.integers(1, 30), hours)
def test_capa_outcome_from_the_detections_is_the_rule_over_the_whole_service(incidents, done_at, own, now) -> None:  # type: ignore[no-untyped-def]
    """What ``capa_effectiveness`` decides for one action (recurred, and by which incidents; else pending or
    held) from the first incident after it that is not its own, against the rule over every incident."""
    on_service = [(number, f"INC-{number}", at) for at, number in incidents]
    capa = rules.DoneCapa(action_id=1, title="fix", incident_number=own, incident_ref=f"INC-{own}", service="db",
                          done_at=done_at)
    detections = Detections(sorted((("db", at, number) for at, number in incidents), key=lambda r: r[1]))
    expected = rules.capa_outcome(capa, on_service, window=WINDOW, now=now)
    assert detections.status("db", done_at, own, window=WINDOW, pending_after=now - WINDOW) == expected.status
    if expected.status == "recurred":
        assert min(f"INC-{n}" for n in detections.first_others("db", done_at, own)) == expected.recurred_by
    assert detections.status("web", done_at, own, window=WINDOW, pending_after=now - WINDOW) != "recurred"
    assert detections.status(None, done_at, own, window=WINDOW, pending_after=now - WINDOW) == "no_service"
