"""The incident page's timeline: a window of it read by index, and the database's figures for the rest.

An incident can hold thousands of timeline rows (a long outage, a chatty channel): rendering them all
made the page ~1 MB and its cost grow with the incident (bench/bench_web.py). The page shows a window
of :data:`DEFAULT_ROWS` rows of the curated timeline (the RCA's, bookkeeping left to the appendix),
the latest by default, with plain links to the older and newer windows:

- the cursor is the (``occurred_at``, ``id``) key of the row at the window's edge (keyset pagination:
  ``?before=KEY`` is the window just older than that row, ``?after=KEY`` the one just newer), so every
  window is one ordered range of ``ix_timeline_incident_occurred`` (incident, time; SQLite appends the
  rowid, PostgreSQL sorts the few rows of one timestamp incrementally), never an ``OFFSET``;
- the rest of the page (participants, counts, every actor for the language check) comes from one
  ``GROUP BY actor`` over the incident's rows, and the few rows that mark a milestone or a role change;
- status updates and bookkeeping rows are shown up to :data:`LATEST_ROWS`, the latest ones.
The RCA export (Markdown, HTML) still has every row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlmodel import Session

from incident_bot.core.rca_parts import BOOKKEEPING_KINDS, COMMUNICATION_KINDS, Activity, TimelineRow
from storage.models import TimelineEvent

DEFAULT_ROWS = 300
MAX_ROWS = 1000
LATEST_ROWS = 200  # status updates, bookkeeping rows
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY = re.compile(r"(-?[0-9]{1,17})_([0-9]{1,18})")
_T = TimelineEvent
_COLUMNS = (_T.id, _T.occurred_at, _T.source, _T.kind, _T.text, _T.actor, _T.milestone)
_BOOKKEEPING = _T.kind.in_(sorted(BOOKKEEPING_KINDS))  # type: ignore[attr-defined]
_CURATED = or_(~_BOOKKEEPING, _T.milestone.is_not(None))  # type: ignore[union-attr]


class BadCursor(ValueError):
    """A ``before`` / ``after`` / ``rows`` parameter the page does not accept (a 400 naming it)."""


@dataclass(frozen=True, order=True)
class Key:
    """A row's place in the timeline: its time, then its id (rows of the same time keep their order)."""

    at: datetime
    id: int

    @property
    def token(self) -> str:
        """``<microseconds since 1970>_<id>``: the cursor in a link."""
        return f"{(self.at - EPOCH) // timedelta(microseconds=1)}_{self.id}"

    @classmethod
    def parse(cls, text: str, name: str) -> Key:
        m = _KEY.fullmatch(text.strip())
        try:
            if m is None:
                raise ValueError(text)
            return cls(EPOCH + timedelta(microseconds=int(m.group(1))), int(m.group(2)))
        except (ValueError, OverflowError):
            raise BadCursor(f"{name} must be a timeline cursor from this page's links") from None


START = Key(EPOCH, 0)  # ``?after=0_0``: the oldest window


@dataclass(frozen=True)
class WindowRequest:
    before: Key | None = None
    after: Key | None = None
    rows: int = DEFAULT_ROWS

    @classmethod
    def parse(cls, params: dict[str, str]) -> WindowRequest:
        before, after = (Key.parse(params[n], n) if params.get(n, "").strip() else None for n in ("before", "after"))
        if before is not None and after is not None:
            raise BadCursor("give before or after, not both")
        raw = params.get("rows", "").strip()
        if raw and not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_ROWS):
            raise BadCursor(f"rows must be a number from 1 to {MAX_ROWS}")
        return cls(before=before, after=after, rows=int(raw) if raw else DEFAULT_ROWS)


@dataclass(frozen=True)
class Window:
    """Rows of the curated timeline, oldest first. ``lower``: the key of the row just older than the
    window (None: nothing older); ``upper``: the key of the window's last row when newer rows exist."""

    rows: list[tuple[Key, TimelineRow]]
    lower: Key | None
    upper: Key | None

    @property
    def older(self) -> Key | None:
        """The ``before`` cursor of the older window."""
        return self.rows[0][0] if self.rows and self.lower else None

    @property
    def newer(self) -> Key | None:
        """The ``after`` cursor of the newer window."""
        return self.rows[-1][0] if self.rows and self.upper else None

    def holds(self, at: datetime) -> bool:
        """Whether a milestone that no row marks, at ``at``, is shown in this window: it is placed
        before the first row of its time (its key is (``at``, 0)), so each window of a walk shows it once."""
        key = Key(at, 0)
        return (self.lower is None or key > self.lower) and (self.upper is None or key <= self.upper)


def _row(r: Any) -> tuple[Key, TimelineRow]:
    return Key(r[1], r[0]), TimelineRow(r[1], r[2], r[3], r[4], r[5], r[6])


def _older_than(k: Key) -> Any:
    # The time bound alone is what the index range uses; the id settles rows of the same time.
    return and_(_T.occurred_at <= k.at, or_(_T.occurred_at < k.at, _T.id < k.id))  # type: ignore[arg-type]


def _newer_than(k: Key, *, or_equal: bool = False) -> Any:
    later = _T.id >= k.id if or_equal else _T.id > k.id  # type: ignore[operator]
    return and_(_T.occurred_at >= k.at, or_(_T.occurred_at > k.at, later))  # type: ignore[arg-type]


def window(session: Session, incident_id: int, req: WindowRequest) -> Window:
    """The window ``req`` asks for; a cursor past either end (an edited link) gives the window at that end."""
    base = select(*_COLUMNS).where(_T.incident_id == incident_id, _CURATED)  # type: ignore[arg-type]
    newest_first = (_T.occurred_at.desc(), _T.id.desc())  # type: ignore[attr-defined, union-attr]
    oldest_first = (_T.occurred_at, _T.id)
    n = req.rows

    def first(*where: Any) -> Key | None:
        found = session.execute(base.where(*where).order_by(*newest_first).limit(1)).first()
        return _row(found)[0] if found else None

    if req.after is not None:
        got = [_row(r) for r in session.execute(base.where(_newer_than(req.after)).order_by(*oldest_first)
                                                .limit(n + 1))]
        rows = got[:n]
        if rows:
            upper = rows[-1][0] if len(got) > n else None
            return Window(rows, first(_older_than(rows[0][0])), upper)
        return window(session, incident_id, WindowRequest(rows=n))  # past the newest row: the latest
    stmt = base.where(_older_than(req.before)) if req.before is not None else base
    got = [_row(r) for r in session.execute(stmt.order_by(*newest_first).limit(n + 1))]
    rows = got[:n][::-1]
    if not rows and req.before is not None:
        return window(session, incident_id, WindowRequest(after=START, rows=n))  # before the oldest: the oldest
    lower = got[n][0] if len(got) > n else None
    newer = req.before is not None and session.execute(
        base.with_only_columns(_T.id).where(_newer_than(req.before, or_equal=True)).limit(1)).first() is not None  # type: ignore[arg-type]
    return Window(rows, lower, rows[-1][0] if rows and newer else None)


@dataclass(frozen=True)
class Summary:
    """The incident's whole timeline, counted by the database."""

    curated: int  # rows of the curated timeline (milestones that no row marks not included)
    bookkeeping: int  # rows of the appendix
    communications: int  # status updates
    actors: list[str]  # everyone with a row, bookkeeping included (the language check knows them all)
    spans: dict[str, Activity]  # each actor's first and last row and count, bookkeeping left out


def summary(session: Session, incident_id: int) -> Summary:
    """One pass over the incident's rows (its index range), grouped by actor."""
    appendix = and_(_BOOKKEEPING, _T.milestone.is_(None))  # type: ignore[union-attr]
    story = ~_BOOKKEEPING
    stmt = (select(_T.actor, func.count(), func.sum(case((appendix, 1), else_=0)),
                   func.sum(case((_T.kind.in_(sorted(COMMUNICATION_KINDS)), 1), else_=0)),  # type: ignore[attr-defined]
                   func.sum(case((story, 1), else_=0)), func.min(case((story, _T.occurred_at))),
                   func.max(case((story, _T.occurred_at))), func.min(case((story, _T.id))))
            .where(_T.incident_id == incident_id).group_by(_T.actor))  # type: ignore[arg-type]
    groups = session.execute(stmt).all()
    total = sum(g[1] for g in groups)
    bookkeeping = sum(int(g[2] or 0) for g in groups)
    active = sorted((g for g in groups if g[0] and g[4]), key=lambda g: (g[5], g[7]))  # first appearance
    return Summary(curated=total - bookkeeping, bookkeeping=bookkeeping,
                   communications=sum(int(g[3] or 0) for g in groups),
                   actors=[g[0] for g in groups if g[0]],
                   spans={g[0]: Activity(_aware(g[5]), _aware(g[6]), int(g[4])) for g in active})


def _aware(ts: datetime) -> datetime:
    # min()/max() of a CASE come back through the column's type on both databases; this keeps the
    # promise of UTC-aware times even if a driver hands back a naive one.
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def marking_rows(session: Session, incident_id: int) -> list[TimelineRow]:
    """Rows that mark a milestone or change a role, in time order: few per incident, and what the page
    needs of the whole timeline (which milestones no row marks, who acknowledged, who held a role)."""
    stmt = (select(*_COLUMNS).where(_T.incident_id == incident_id,  # type: ignore[arg-type]
                                    or_(_T.milestone.is_not(None), _T.kind == "role"))  # type: ignore[union-attr]
            .order_by(_T.occurred_at, _T.id))
    return [_row(r)[1] for r in session.execute(stmt)]


def latest(session: Session, incident_id: int, kinds: Sequence[str] | frozenset[str], *, bookkeeping: bool = False,
           limit: int = LATEST_ROWS) -> list[TimelineRow]:
    """The latest ``limit`` rows of these kinds, oldest first (status updates; with ``bookkeeping``,
    the appendix's rows: those kinds when they mark no milestone)."""
    where = [_T.incident_id == incident_id, _T.kind.in_(kinds)]  # type: ignore[attr-defined]
    if bookkeeping:
        where.append(_T.milestone.is_(None))  # type: ignore[union-attr]
    stmt = select(*_COLUMNS).where(*where).order_by(_T.occurred_at.desc(), _T.id.desc()).limit(limit)  # type: ignore[attr-defined, union-attr]
    return [_row(r)[1] for r in session.execute(stmt)][::-1]
