"""CAPA (corrective and preventive action) rules: vocabulary, ordering, overdue, due dates. Pure.

Why ``today`` is always a parameter: "overdue" is a calendar question asked in the *team's* time
zone (an action due on the 26th is overdue on the 27th in Auckland hours before it is in Los
Angeles). The caller decides which day it is; this module never reads a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

TYPES: tuple[str, ...] = ("corrective", "preventive", "mitigation", "process")
PRIORITIES: tuple[str, ...] = ("high", "medium", "low")
STATUSES: tuple[str, ...] = ("open", "in_progress", "done", "wont_do")
OPEN_STATUSES: tuple[str, ...] = ("open", "in_progress")
CLOSED_STATUSES: tuple[str, ...] = ("done", "wont_do")
_STATUS_ALIASES = {"in-progress": "in_progress", "inprogress": "in_progress", "started": "in_progress",
                   "closed": "done", "wontdo": "wont_do", "won't_do": "wont_do", "wont-do": "wont_do",
                   "won't-do": "wont_do", "cancelled": "wont_do", "canceled": "wont_do"}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class CapaError(ValueError):
    """Input a person can fix: the message says what is accepted."""


def _pick(value: str | None, allowed: tuple[str, ...], what: str,
          aliases: dict[str, str] | None = None) -> str:
    v = (value or "").strip().lower().replace(" ", "_")
    v = (aliases or {}).get(v, v)
    if v not in allowed:
        raise CapaError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}")
    return v


def validate_type(value: str | None) -> str:
    return _pick(value, TYPES, "action type")


def validate_priority(value: str | None) -> str:
    return _pick(value, PRIORITIES, "priority")


def validate_status(value: str | None) -> str:
    return _pick(value, STATUSES, "status", _STATUS_ALIASES)


def is_open(status: str) -> bool:
    return status in OPEN_STATUSES


def is_overdue(status: str, due_date: date | None, today: date) -> bool:
    """Open (or in progress) and the due day has passed in the team's calendar. Due today is not late."""
    return is_open(status) and due_date is not None and due_date < today


def days_overdue(due_date: date | None, today: date) -> int:
    return max(0, (today - due_date).days) if due_date else 0


def today_in(zone: tzinfo, now: datetime) -> date:
    """The calendar day in the team's zone at the instant ``now`` (which must be aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(zone).date()


def action_sort_key(priority: str, due_date: date | None, action_id: int | None) -> tuple[int, date, int]:
    """high > medium > low, then the earliest due date (no date last), then the oldest first."""
    rank = PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)
    return rank, due_date or date.max, action_id if action_id is not None else 1 << 62


class DueTooFar(CapaError):
    """A date that reads as a date but lies beyond MAX_DUE_YEARS: refused, not taken as title words."""


MAX_DUE_YEARS = 10  # a due date further away is a typo (``in 99999999999 weeks``), not a plan


def parse_due(text: str, today: date) -> date:
    """A due date as people type it, relative to the team's ``today``, at most MAX_DUE_YEARS ahead."""
    if len(text) > 64:
        raise CapaError("the due date is too long; try 2026-12-01, friday, tomorrow or 'in 2 weeks'")
    try:
        due = _parse_due(text, today)
    except CapaError:
        raise
    except (OverflowError, ValueError):  # date arithmetic past year 9999
        due = date.max
    if due > today + timedelta(days=366 * MAX_DUE_YEARS):
        raise DueTooFar(f"the due date {text.strip()!r} is more than {MAX_DUE_YEARS} years away")
    return due


def _parse_due(text: str, today: date) -> date:
    """A due date as people type it, relative to the team's ``today``.

    Accepted: ``2026-12-01``, ``today``, ``tomorrow``, ``in 3 days`` / ``in 2 weeks`` / ``in 1 month``,
    ``+5d`` / ``+2w``, ``next week``, a weekday (``friday``, ``next fri``: the next one after today),
    and a day with a month name (``dec 1``, ``1 December``, ``1 Dec 2027``; without a year, the next
    such day). Slashed forms (``12/01``) are refused: month-first or day-first depends on the reader.
    """
    t = " ".join(text.strip().lower().split())
    if not t:
        raise CapaError("empty due date")
    if "/" in t:
        raise CapaError(f"ambiguous date {text!r}; write it as YYYY-MM-DD (e.g. 2026-12-01)")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
        try:
            return date.fromisoformat(t)
        except ValueError:
            raise CapaError(f"no such date {text!r}") from None
    if t == "today":
        return today
    if t == "tomorrow":
        return today + timedelta(days=1)
    if t == "next week":
        return today + timedelta(days=7)
    m = re.fullmatch(r"(?:in\s+(\d+)\s*|\+(\d+)\s*)(d|day|days|w|wk|week|weeks|m|mo|month|months)", t)
    if m:
        n = int(m.group(1) or m.group(2))
        unit = m.group(3)[0]
        if unit == "d":
            return today + timedelta(days=n)
        if unit == "w":
            return today + timedelta(weeks=n)
        # Imported here (as dateutil's parser below): only this parser needs them, and reports that load
        # this module (the digest) should not pay for them at start-up.
        from dateutil.relativedelta import relativedelta

        return today + relativedelta(months=n)
    m = re.fullmatch(r"(?:next\s+|this\s+)?([a-z]+)", t)
    if m:
        day = next((i for i, d in enumerate(_WEEKDAYS) if len(m.group(1)) >= 3 and d.startswith(m.group(1))),
                   None)
        if day is not None:
            return today + timedelta(days=(day - today.weekday() - 1) % 7 + 1)
    if re.search(r"[a-z]{3}", t) and re.search(r"\d", t):
        from dateutil import parser as dateparser  # ~20 ms to import, for "dec 1" and the like

        try:
            parsed = dateparser.parse(t, default=datetime(today.year, today.month, 1)).date()
        except (ValueError, OverflowError):
            parsed = None
        if parsed is not None:
            if not re.search(r"\d{4}", t) and parsed < today:
                parsed = parsed.replace(year=parsed.year + 1)
            return parsed
    raise CapaError(f"cannot read the due date {text!r}; try 2026-12-01, friday, tomorrow or 'in 2 weeks'")


@dataclass(frozen=True)
class ParsedAction:
    title: str
    owner_id: str | None = None
    due_date: date | None = None
    type: str = "corrective"
    priority: str = "medium"


_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,31})(?:\|[^>]*)?>")
_TAGGED = re.compile(r"\b(type|priority|prio)\s*[:=]\s*([a-z_]+)\b", re.IGNORECASE)


def parse_action_text(text: str, today: date) -> ParsedAction:
    """``/incident action <text> [@owner] [due <date>] [type] [priority]`` into its parts.

    Why bare keywords only after an owner or ``due``: a title such as "Document the deploy process"
    must keep its last word. Anywhere in the text, ``type:process`` and ``priority:high`` are explicit.
    """
    kind, prio = "corrective", "medium"
    for m in _TAGGED.finditer(text):
        if m.group(1).lower() == "type":
            kind = validate_type(m.group(2))
        else:
            prio = validate_priority(m.group(2))
    text = _TAGGED.sub(" ", text)
    owner = None
    mentions = list(_MENTION.finditer(text))
    due_match = None
    for m in re.finditer(r"\bdue\s+", text, flags=re.IGNORECASE):
        rest = text[m.end():]
        words = rest.split()
        # The longest run of words that reads as a date (so "due next friday high" stops before "high").
        for n in range(min(4, len(words)), 0, -1):
            try:
                due = parse_due(" ".join(words[:n]), today)
            except DueTooFar:
                raise
            except CapaError:
                continue
            due_match = (m.start(), due, " ".join(words[:n]))
            break
    tail_start = len(text)
    if mentions:
        owner = mentions[0].group(1)
        tail_start = mentions[0].start()
    due_date = None
    if due_match:
        due_date = due_match[1]
        tail_start = min(tail_start, due_match[0])
    title, tail = text[:tail_start], text[tail_start:]
    tail = _MENTION.sub(" ", tail)
    if due_match:
        tail = re.sub(r"\bdue\s+" + r"\s+".join(map(re.escape, due_match[2].split())), " ", tail,
                      count=1, flags=re.IGNORECASE)
    leftover = []
    for word in tail.split():
        w = word.lower().strip(",.;")
        if w in TYPES:
            kind = w
        elif w in PRIORITIES:
            prio = w
        else:
            leftover.append(word)
    title = " ".join((title + " " + " ".join(leftover)).split()).strip(" -–,")
    if not title:
        raise CapaError("an action needs a title: /incident action <what to do> [@owner] [due <date>] [type]")
    return ParsedAction(title=title, owner_id=owner, due_date=due_date, type=kind, priority=prio)


@dataclass(frozen=True)
class ActionEdit:
    """``/incident action #N ...``: what to change on action N (None: leave as it is)."""

    action_id: int
    owner_id: str | None = None
    clear_owner: bool = False
    due_date: date | None = None
    clear_due: bool = False
    priority: str | None = None
    status: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.owner_id or self.clear_owner or self.due_date or self.clear_due or self.priority
                    or self.status)


_EDIT = re.compile(r"\s*#(\d{1,9})\b(.*)", re.DOTALL)
_STATUS_WORDS = {"open": "open", "reopen": "open", "in_progress": "in_progress", "started": "in_progress",
                 "done": "done", "wont_do": "wont_do", "won't_do": "wont_do"}


def is_action_edit(text: str) -> bool:
    return bool(_EDIT.match(text))


def parse_action_edit(text: str, today: date) -> ActionEdit:
    """``#N [@owner | owner none] [due <date> | due none] [high|medium|low] [open|in progress|done|won't do]``.

    Every word must be understood: an edit that half applies is worse than a refusal that says why."""
    m = _EDIT.match(text)
    if not m:
        raise CapaError("an edit starts with the action's number, e.g. #3")
    rest = _TAGGED.sub(lambda t: t.group(0) if t.group(1).lower() == "type" else f" {t.group(2)} ", m.group(2))
    rest = re.sub(r"\b(in|won't|won’t|wont)[ _-](progress|do)\b",
                  lambda w: f"{w.group(1).replace('’', chr(39))}_{w.group(2)}", rest, flags=re.IGNORECASE)
    fields: dict[str, Any] = {}
    mentions = _MENTION.findall(rest)
    if len(mentions) > 1:
        raise CapaError("one owner at a time")
    if mentions:
        fields["owner_id"] = mentions[0]
    words = _MENTION.sub(" ", rest).split()
    i = 0
    while i < len(words):
        w = words[i].lower().strip(",.;")
        if w == "owner" and i + 1 < len(words) and words[i + 1].lower() in ("none", "nobody"):
            fields["clear_owner"], i = True, i + 2
        elif w == "owner" and mentions:
            i += 1
        elif w == "due" and i + 1 < len(words) and words[i + 1].lower() in ("none", "never"):
            fields["clear_due"], i = True, i + 2
        elif w == "due":
            for n in range(min(4, len(words) - i - 1), 0, -1):
                try:
                    fields["due_date"] = parse_due(" ".join(words[i + 1:i + 1 + n]), today)
                except DueTooFar:
                    raise
                except CapaError:
                    continue
                i += 1 + n
                break
            else:
                raise CapaError(f"{' '.join(words[i + 1:i + 3]) or 'nothing'!r} after due is not a date")
        elif w in PRIORITIES:
            fields["priority"], i = w, i + 1
        elif w in _STATUS_WORDS:
            fields["status"], i = _STATUS_WORDS[w], i + 1
        else:
            raise CapaError(f"{words[i]!r} is not something an action edit understands")
    return ActionEdit(int(m.group(1)), **fields)


_OPAQUE_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def ticket_label(key: str | None) -> str:
    """How a ticket is named in a link: its key (``OPS-7``, ``acme/ops#12``), or "ticket" for an opaque id
    (Linear's UUID) or a ticket linked by hand."""
    if not key or _OPAQUE_ID.fullmatch(key):
        return "ticket"
    return key
