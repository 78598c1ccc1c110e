"""Which past incidents look like this one, in what order, and why. Pure: words in, ranked matches out.

The rules, as the README states them for a lead to check:

- Only incidents that are **resolved** and were **detected before** this one are candidates.
- **Same service** (the same PagerDuty service id, or the same service name ignoring case) ranks first.
- Then the **text score**: 2 points for each word both titles share, 1 point for each other shared word
  (a word of one incident's title, service, description, RCA summary or root causes found in the
  other's). Words are stems (``timeouts`` = ``timeout``) as storage/text_search.py reads them.
- A word found in more than :data:`COMMON_SHARE` of all incidents (and more than :data:`COMMON_MIN`) is
  too common to say anything ("svc", "error" in many teams) and scores nothing.
- An incident on another service is similar only with a score of at least :data:`MIN_SCORE`.
- Ties: the more recent first, then the higher number. Nothing else (no model, no randomness), so the
  same history gives the same answer on SQLite and PostgreSQL, every time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

COMMON_SHARE = 0.05
COMMON_MIN = 20
MIN_SCORE = 2  # one word shared by both titles, or two other shared words
TITLE_POINTS = 2
OTHER_POINTS = 1


@dataclass(frozen=True)
class Subject:
    """The incident we look from. Words map a stem to its spelling here (explanations show spellings)."""

    number: int
    detected_at: datetime
    service: str | None = None
    service_id: str | None = None
    title_words: Mapping[str, str] = field(default_factory=dict)
    body_words: Mapping[str, str] = field(default_factory=dict)

    @property
    def stems(self) -> frozenset[str]:
        return frozenset(self.title_words) | frozenset(self.body_words)


@dataclass(frozen=True)
class Candidate:
    """A past incident as the index holds it."""

    number: int
    ref: str
    title: str
    detected_at: datetime
    resolved_at: datetime | None = None
    service: str | None = None
    service_id: str | None = None
    title_terms: frozenset[str] = frozenset()
    body_terms: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Match:
    candidate: Candidate
    score: int
    same_service: bool
    shared: tuple[str, ...]  # spellings of the shared words: both titles' first, then the others

    @property
    def reasons(self) -> tuple[str, ...]:
        out = []
        if self.same_service:
            out.append(f"same service ({self.candidate.service or self.candidate.service_id})")
        if self.shared:
            out.append("shared words: " + ", ".join(self.shared))
        return tuple(out)


def same_service(a_name: str | None, a_id: str | None, b_name: str | None, b_id: str | None) -> bool:
    if a_id and b_id and a_id == b_id:
        return True
    a, b = (a_name or "").strip().casefold(), (b_name or "").strip().casefold()
    return bool(a) and a == b


def common_cap(total_incidents: int) -> int:
    """A word in more incidents than this is too common to count."""
    return max(COMMON_MIN, math.ceil(COMMON_SHARE * max(0, total_incidents)))


def informative(stems: Iterable[str], doc_freq: Mapping[str, int], total_incidents: int) -> frozenset[str]:
    """The words that can count: those in at most :func:`common_cap` incidents (unknown: they can)."""
    cap = common_cap(total_incidents)
    return frozenset(s for s in stems if doc_freq.get(s, 0) <= cap)


def match(subject: Subject, cand: Candidate, counted: frozenset[str]) -> Match:
    """Score one candidate (no threshold, no eligibility: see :func:`rank`)."""
    both_titles = frozenset(subject.title_words) & cand.title_terms & counted
    other = (subject.stems & (cand.title_terms | cand.body_terms) & counted) - both_titles
    spell = {**subject.body_words, **subject.title_words}
    shared = tuple(spell[s] for s in _ordered(subject, both_titles)) + tuple(spell[s] for s in _ordered(subject, other))
    return Match(candidate=cand, score=TITLE_POINTS * len(both_titles) + OTHER_POINTS * len(other),
                 same_service=same_service(subject.service, subject.service_id, cand.service, cand.service_id),
                 shared=shared)


def _ordered(subject: Subject, stems: frozenset[str]) -> list[str]:
    """In the order the words appear in the subject (title first): explanations read naturally."""
    order = {s: n for n, s in enumerate([*subject.title_words, *subject.body_words])}
    return sorted(stems, key=lambda s: (order.get(s, len(order)), s))


def eligible(subject: Subject, cand: Candidate) -> bool:
    return (cand.number != subject.number and cand.resolved_at is not None
            and (cand.detected_at, cand.number) < (subject.detected_at, subject.number))


def qualifies(m: Match, min_score: int = MIN_SCORE) -> bool:
    return m.same_service or m.score >= min_score


def sort_key(m: Match) -> tuple[bool, int, float, int]:
    return (not m.same_service, -m.score, -m.candidate.detected_at.timestamp(), -m.candidate.number)


def rank(subject: Subject, candidates: Iterable[Candidate], counted: frozenset[str], *,
         limit: int = 3) -> list[Match]:
    """The ``limit`` most similar past incidents, best first (rules in the module docstring)."""
    seen: set[int] = set()
    found = []
    for cand in candidates:
        if cand.number in seen or not eligible(subject, cand):
            continue
        seen.add(cand.number)
        m = match(subject, cand, counted)
        if qualifies(m):
            found.append(m)
    found.sort(key=sort_key)
    return found[:max(0, limit)]
