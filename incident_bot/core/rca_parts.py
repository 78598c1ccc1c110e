"""Parts of the RCA derived from the timeline: the curated timeline and its appendix, participants
with their roles, and the communications log. Pure: plain rows in, plain rows out.

Why curate: a reader signs the timeline of what happened to users and responders (milestones, notes,
pins, status updates, severity and role changes). Rows that record the bot's own bookkeeping (a CAPA
added, responders invited, the RCA exported) are kept, but in an appendix, so they neither pad the
story nor appear to happen "after the resolve".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from incident_bot.core.durations import format_duration, utc_clock, utc_text
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.core.people import Directory, looks_like_slack_id

MILESTONE_LABELS: dict[str, str] = {
    "impact_started_at": "Impact started", "detected_at": "Detected", "acknowledged_at": "Acknowledged",
    "mitigated_at": "Mitigated", "resolved_at": "Resolved", "closed_at": "Closed",
}
# Bookkeeping: true and kept, but not part of the story (appendix).
BOOKKEEPING_KINDS = frozenset({
    "action_added", "action_status", "responders", "rca_exported", "rca_edited", "rca_status",
    "status_nudge", "nudge_snoozed", "incident.responder.added", "responder_added", "reassigned", "delegated",
})
# What counts as a communication to stakeholders.
COMMUNICATION_KINDS = frozenset({"status_update", "status_update_published", "incident.status_update_published"})
_MILESTONE_RANK = {m: n for n, m in enumerate(MILESTONES)}  # same-time rows: milestones in their order
_ROLE_TEXT = re.compile(r"^(?P<role>commander|comms|scribe)\s*:\s*(?P<who>\S+)", re.IGNORECASE)


class TimelineRow(NamedTuple):
    """One stored timeline row. A NamedTuple: an RCA may hold thousands."""

    occurred_at: datetime
    source: str
    kind: str
    text: str = ""
    actor: str | None = None
    milestone: str | None = None


class TimelineEntry(NamedTuple):
    time: str  # "2026-11-26 14:54:12Z"
    iso: str  # "2026-11-26T14:54:12Z"
    since_impact: str  # "+4m 12s" from the start of impact, "" before it or when unknown
    milestone: str | None  # label ("Detected") when this row marks a milestone
    text: str
    source: str
    actor: str


class Participant(NamedTuple):
    id: str | None
    name: str
    roles: str  # "Commander from 09:41:07Z; reporter"
    first_seen: str
    last_seen: str
    entries: int


class Communication(NamedTuple):
    time: str
    since_impact: str
    by: str
    channel: str
    text: str


def humanize(text: str, people: Directory) -> str:
    """Slack mentions and known Slack ids in stored text become names (unknown ids stay as they are)."""
    return people.humanize(text)


def since(start: datetime | None, ts: datetime) -> str:
    if start is None or ts < start:
        return ""
    return "+" + format_duration(int((ts - start).total_seconds()))


def unmarked_milestones(rows: Iterable[TimelineRow],
                        milestones: Mapping[str, datetime | None]) -> list[TimelineRow]:
    """A row for each milestone that no row of ``rows`` marks (the timeline shows every milestone).
    ``rows`` need only hold the rows that mark a milestone."""
    present = {(r.milestone, r.occurred_at.replace(microsecond=0)) for r in rows if r.milestone}
    return [TimelineRow(occurred_at=ts, source="milestone", kind=m, milestone=m, text=MILESTONE_LABELS[m])
            for m in MILESTONES
            if (ts := milestones.get(m)) is not None and (m, ts.replace(microsecond=0)) not in present]


def in_time_order(rows: Iterable[TimelineRow]) -> list[TimelineRow]:
    """Stored rows (already in (time, id) order) and milestone rows: same-time milestones first, in
    their order (a stable sort keeps the stored order otherwise)."""
    rank, last = _MILESTONE_RANK, len(MILESTONES)
    return sorted(rows, key=lambda r: (r.occurred_at, rank.get(r.milestone, last)))  # type: ignore[arg-type]


def with_milestones(rows: Iterable[TimelineRow], milestones: Mapping[str, datetime | None]) -> list[TimelineRow]:
    """Rows in time order, plus a row for each milestone that no row marks."""
    rows = list(rows)
    return in_time_order([*rows, *unmarked_milestones(rows, milestones)])


def is_bookkeeping(r: TimelineRow) -> bool:
    """A row of the appendix rather than of the curated timeline."""
    return r.kind in BOOKKEEPING_KINDS and not r.milestone


def entry(r: TimelineRow, start: datetime | None, people: Directory) -> TimelineEntry:
    stamp = utc_text(r.occurred_at)
    return TimelineEntry(
        time=stamp, iso=stamp.replace(" ", "T"), since_impact=since(start, r.occurred_at),
        milestone=MILESTONE_LABELS.get(r.milestone) if r.milestone else None,
        text=humanize(r.text or r.kind, people), source=r.source, actor=people.name(r.actor),
    )


def split_timeline(rows: Iterable[TimelineRow], milestones: Mapping[str, datetime | None],
                   people: Directory) -> tuple[list[TimelineEntry], list[TimelineEntry]]:
    """(the curated timeline, the bookkeeping appendix), both in time order."""
    start = milestones.get("impact_started_at")
    main: list[TimelineEntry] = []
    appendix: list[TimelineEntry] = []
    for r in with_milestones(rows, milestones):
        (appendix if is_bookkeeping(r) else main).append(entry(r, start, people))
    return main, appendix


def communications(rows: Sequence[TimelineRow], start: datetime | None, people: Directory,
                   channel: str | None) -> list[Communication]:
    """Every status update posted, in time order: when, by whom, where."""
    out = []
    for r in rows:
        if r.kind not in COMMUNICATION_KINDS:
            continue
        where = ("PagerDuty status update" if r.source == "pagerduty"
                 else f"#{channel} and the announcement thread" if channel else "incident channel")
        out.append(Communication(utc_text(r.occurred_at), since(start, r.occurred_at), people.name(r.actor),
                                 where, humanize(r.text, people)))
    return out


class Activity(NamedTuple):
    """One person's part of the timeline (bookkeeping rows left out)."""

    first: datetime
    last: datetime
    entries: int


def activity(rows: Iterable[TimelineRow]) -> dict[str, Activity]:
    """Each actor's first and last row and row count, in the order they first appear."""
    seen: dict[str, Activity] = {}
    for r in rows:
        if r.actor and r.kind not in BOOKKEEPING_KINDS:
            a = seen.get(r.actor)
            seen[r.actor] = (Activity(r.occurred_at, r.occurred_at, 1) if a is None else
                             Activity(min(a.first, r.occurred_at), max(a.last, r.occurred_at), a.entries + 1))
    return seen


def participants(rows: Sequence[TimelineRow], people: Directory, *, roles_now: Mapping[str, str | None],
                 opened_at: datetime | None, spans: Mapping[str, Activity] | None = None) -> list[Participant]:
    """Who took part: each person's roles (with the time they took them) and their activity span.

    Roles come from role changes on the timeline; a current holder with no role row (the declarer is
    commander from the start) held it from the opening. Bookkeeping rows do not make a participant.
    ``spans``: each actor's :class:`Activity` when the caller counted it already (the web page has the
    database count it); ``rows`` then need only hold the role changes.
    """
    held: dict[str, list[str]] = {}
    has_row: set[tuple[str, str]] = set()
    for r in rows:
        m = _ROLE_TEXT.match(r.text or "") if r.kind == "role" else None
        if m:
            role, who = m.group("role").lower(), m.group("who")
            held.setdefault(who, []).append(f"{role} from {utc_clock(r.occurred_at)}")
            has_row.add((role, who))
    for role, who in roles_now.items():
        if who and (role, who) not in has_row:
            label = role if role == "reporter" or opened_at is None else f"{role} from {utc_clock(opened_at)}"
            held.setdefault(who, []).insert(0, label)
    seen = activity(rows) if spans is None else spans
    everyone = list(dict.fromkeys([*held, *seen]))
    out = []
    for who in everyone:
        span = seen.get(who)
        out.append((span.first if span else None, Participant(
            id=who if looks_like_slack_id(who) else None,
            name=people.name(who), roles="; ".join(held.get(who, [])) or "responder",
            first_seen=utc_text(span.first) if span else "—", last_seen=utc_text(span.last) if span else "—",
            entries=span.entries if span else 0)))
    # Role holders first (commander at the top), then by first activity.
    rank = {"commander": 0, "comms": 1, "scribe": 2, "reporter": 3}
    out.sort(key=lambda p: (min(rank.get(x.split()[0], 9) for x in p[1].roles.split("; ")),
                            p[0].timestamp() if p[0] else float("inf")))
    return [p for _, p in out]


class TimelineParts(NamedTuple):
    """What the RCA derives from the timeline, when the caller built it from its own reads (the web
    page shows a window of the timeline and has the database count the rest): see ``build_rca``."""

    main: Sequence[TimelineEntry]
    appendix: Sequence[TimelineEntry]
    participants: Sequence[Participant]
    communications: Sequence[Communication]
