"""The pure rules of core/similarity.py, core/recurrence.py and core/learning.py: order, explanation and the
window's edges, with property tests for what must hold whatever the history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from incident_bot.core import learning, recurrence, similarity

T = datetime(2026, 12, 1, tzinfo=UTC)
WINDOW = timedelta(days=30)
SUBJECT = similarity.Subject(number=100, detected_at=T, service="db", title_words={"disk": "disk", "full": "full"})


def cand(n: int, service: str | None, words: set[str], days: int = 1) -> similarity.Candidate:
    return similarity.Candidate(number=n, ref=f"INC-{n}", title="t", detected_at=T - timedelta(days=days),
                                resolved_at=T, service=service, title_terms=frozenset(words))


candidates = st.lists(st.builds(cand, st.integers(1, 99), st.sampled_from(["db", "web", None]),
                                st.sets(st.sampled_from(["disk", "full", "slow", "cpu"])), st.integers(1, 400)),
                      max_size=25)


@given(candidates, st.randoms())
def test_rank_ignores_the_order_candidates_come_in(cands, rnd) -> None:  # type: ignore[no-untyped-def]
    counted = frozenset({"disk", "full", "slow", "cpu"})
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    first = {c.number: c for c in cands}  # one candidate per number: the database gives one row per incident
    again = {c.number: c for c in shuffled if first[c.number] is c}
    assert similarity.rank(SUBJECT, first.values(), counted, limit=5) == \
        similarity.rank(SUBJECT, again.values(), counted, limit=5)


@given(candidates)
def test_same_service_first_then_score_and_every_one_qualifies(cands) -> None:  # type: ignore[no-untyped-def]
    got = similarity.rank(SUBJECT, cands, frozenset({"disk", "full", "slow", "cpu"}), limit=50)
    assert [similarity.sort_key(m) for m in got] == sorted(similarity.sort_key(m) for m in got)
    assert all(m.same_service or m.score >= similarity.MIN_SCORE for m in got)
    assert len({m.candidate.number for m in got}) == len(got)


def test_common_words_do_not_count() -> None:
    c = cand(1, "web", {"disk", "full"})
    assert similarity.rank(SUBJECT, [c], frozenset({"disk", "full"}))[0].score == 4
    assert similarity.rank(SUBJECT, [c], frozenset({"full"}))[0].shared == ("full",)  # "disk" is too common
    assert similarity.informative(["disk", "full"], {"disk": 21, "full": 20}, total_incidents=100) == {"full"}


def test_recurrence_window_edges() -> None:
    prev = cand(1, "db", set(), days=60)
    for done, expected in ((T - WINDOW, 30), (T, 0), (T - WINDOW - timedelta(microseconds=1), None),
                           (T + timedelta(seconds=1), None)):
        found = recurrence.find(SUBJECT, [recurrence.Earlier(prev, (recurrence.Fix(1, "fix", done),))], frozenset(),
                                window=WINDOW)
        assert (found.days_since if found else None) == expected, done


def test_capa_outcome_and_mtbf() -> None:
    capa = learning.DoneCapa(1, "fix", 1, "INC-1", "db", T)
    assert learning.capa_outcome(capa, [(2, "INC-2", T + WINDOW)], window=WINDOW, now=T).status == "recurred"
    assert learning.capa_outcome(capa, [(2, "INC-2", T + WINDOW + timedelta(seconds=1))], window=WINDOW,
                                 now=T + WINDOW).status == "held"
    assert learning.capa_outcome(capa, [], window=WINDOW, now=T + timedelta(days=1)).status == "pending"
    assert learning.mtbf_seconds(3, T, T + timedelta(hours=4)) == 7200
    assert learning.mtbf_seconds(1, T, T) is None
