"""Recurrence after CAPA: did this incident happen again although the earlier one's fix was marked done?

The rule, as the README states it:

An incident is a **recurrence** of an earlier incident when
1. the earlier one was detected before it, and
2. a CAPA action of the earlier one was marked **done** at most ``RECURRENCE_WINDOW`` (default 30 days)
   before this one was detected — done at or before the detection, and the detection at most the
   window after it (both edges count: exactly 30 days later is a recurrence, a second more is not), and
3. both are on the **same service**, or the earlier one is **similar** with a text score of at least
   :data:`MIN_SCORE` (two words both titles share: core/similarity.py counts the points).

When several earlier incidents qualify, the one whose fix was marked done last is named (then same service
first, then the higher score, then the higher number). ``wont_do`` actions are not fixes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from incident_bot.core.durations import utc_text
from incident_bot.core.rca import RcaDocument, Section
from incident_bot.core.similarity import Candidate, Match, Subject, match

MIN_SCORE = 4
DEFAULT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class Fix:
    """A CAPA action marked done."""

    action_id: int
    title: str
    done_at: datetime


@dataclass(frozen=True)
class Earlier:
    """An earlier incident and the CAPA actions of it that are done."""

    incident: Candidate
    fixes: tuple[Fix, ...]


@dataclass(frozen=True)
class Recurrence:
    previous: Candidate
    capa_done: datetime  # when the last of its fixes inside the window was marked done
    days_since: int  # whole days from that to this incident's detection
    fixes: tuple[Fix, ...]  # its fixes done inside the window, last done first
    match: Match

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.match.reasons


def within(detected_at: datetime, done_at: datetime, window: timedelta) -> bool:
    """Done at or before the detection, and the detection at most ``window`` later (inclusive)."""
    return done_at <= detected_at and detected_at - done_at <= window


def find(subject: Subject, earlier: Iterable[Earlier], counted: frozenset[str], *,
         window: timedelta = DEFAULT_WINDOW) -> Recurrence | None:
    """The earlier incident this one recurs, or None (rules in the module docstring)."""
    best: tuple[tuple[datetime, bool, int, int], Recurrence] | None = None
    for e in earlier:
        inc = e.incident
        if inc.number == subject.number or (inc.detected_at, inc.number) >= (subject.detected_at, subject.number):
            continue
        fixes = sorted((f for f in e.fixes if within(subject.detected_at, f.done_at, window)),
                       key=lambda f: (f.done_at, f.action_id), reverse=True)
        if not fixes:
            continue
        m = match(subject, inc, counted)
        if not (m.same_service or m.score >= MIN_SCORE):
            continue
        days = int((subject.detected_at - fixes[0].done_at) // timedelta(days=1))
        rec = Recurrence(previous=inc, capa_done=fixes[0].done_at, days_since=days, fixes=tuple(fixes), match=m)
        key = (fixes[0].done_at, m.same_service, m.score, inc.number)
        if best is None or key > best[0]:
            best = (key, rec)
    return best[1] if best else None


def timeline_text(rec: Recurrence) -> str:
    """The timeline row of an incident flagged as a recurrence (plain text): when it was said, and why."""
    n = rec.days_since
    when = "the day it was detected" if n == 0 else f"{n} day{'s' if n != 1 else ''} before it was detected"
    fixes = "; ".join(f"#{f.action_id} {f.title}" for f in rec.fixes[:3])
    return (f"Flagged as a recurrence after CAPA: {rec.previous.ref} ({rec.previous.title}) had a CAPA action "
            f"marked done {when} ({fixes}); {'; '.join(rec.reasons)}")


SECTION_KEY = "previous_incident"
SECTION_TITLE = "Previous incident and its actions"


def rca_section(rec: Recurrence, ref: str, *, previous_root_cause: str | None = None) -> Section:
    """The RCA's "previous incident and its actions" section of a recurrence: plain text and facts, so every
    template (a team's own too) shows it with the layout of a text section."""
    n = rec.days_since
    when = "the day" if n == 0 else f"{n} day{'s' if n != 1 else ''}"
    body = (f"{ref} opened {when} after a CAPA action of {rec.previous.ref} ({rec.previous.title}) was marked done "
            f"({'; '.join(rec.reasons)}). Say in the root causes whether that fix was incomplete, did not reach "
            "this failure, or this is another failure.")
    facts = [f"{rec.previous.ref} detected {utc_text(rec.previous.detected_at, seconds=False)}"
             + (f"; root cause: {previous_root_cause}" if previous_root_cause else "")]
    facts += [f"Action #{f.action_id} {f.title}: done {utc_text(f.done_at, seconds=False)}" for f in rec.fixes]
    return Section(key=SECTION_KEY, title=SECTION_TITLE, kind="previous", body=body, facts=tuple(facts))


def with_section(doc: RcaDocument, section: Section, *, before: str = "links") -> RcaDocument:
    """The document with ``section`` placed before the section keyed ``before`` (at the end without it)."""
    keys = [s.key for s in doc.sections]
    at = keys.index(before) if before in keys else len(keys)
    return replace(doc, sections=(*doc.sections[:at], section, *doc.sections[at:]))
