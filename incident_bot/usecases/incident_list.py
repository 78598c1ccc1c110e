"""The incident list (``/ui/incidents``): filters, search, pages, and the service names to filter by.

It has to stay fast at 100,000 incidents (bench/bench_web.py):
- it pages by ``number`` with a cursor (``?before=N`` / ``?after=N``, keyset pagination): every page,
  the 1st or the 2,000th, is one ordered range of an index that ends in ``number`` (migration 0009),
  where ``OFFSET`` read and threw away every row before the page;
- it counts with the same WHERE, up to :data:`COUNT_CAP`: beyond that "more than 10,000" says as much
  as an exact figure and costs nothing more, whatever the filters;
- the service choices come from a loose index scan (one index probe per service name), not a
  ``DISTINCT`` over every incident.
The search box is :func:`title_matches`: the text index of storage/text_search.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select
from sqlmodel import Session

from incident_bot.core.lifecycle import STATUSES
from incident_bot.core.severity import SEVERITIES
from storage import text_search
from storage.models import Incident, IncidentMetrics, utcnow

PAGE_SIZE = 50
COUNT_CAP = 10_000
MAX_SERVICES = 500
PERIODS: dict[str, timedelta | None] = {
    "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90),
    "365d": timedelta(days=365), "all": None,
}
_CURSOR = re.compile(r"[1-9][0-9]{0,9}")


class BadFilter(ValueError):
    """A query parameter the page does not accept; the message names it (shown with a 400)."""


@dataclass(frozen=True)
class IncidentFilter:
    status: str = ""
    severity: str = ""
    service: str = ""
    period: str = "all"
    q: str = ""
    before: int | None = None  # the page of incidents numbered below this one (older), newest first
    after: int | None = None  # the page of incidents numbered above this one (newer)

    @classmethod
    def parse(cls, params: dict[str, str]) -> IncidentFilter:
        status, severity = params.get("status", "").strip(), params.get("severity", "").strip().upper()
        period = params.get("period", "").strip() or "all"
        if status and status not in STATUSES:
            raise BadFilter(f"status must be one of {', '.join(STATUSES)}")
        if severity and severity not in SEVERITIES:
            raise BadFilter(f"severity must be one of {', '.join(SEVERITIES)}")
        if period not in PERIODS:
            raise BadFilter(f"period must be one of {', '.join(PERIODS)}")
        cursors: dict[str, int | None] = {}
        for name in ("before", "after"):
            raw = params.get(name, "").strip()
            if raw and not _CURSOR.fullmatch(raw):
                raise BadFilter(f"{name} must be an incident number")
            cursors[name] = int(raw) if raw else None
        if cursors["before"] is not None and cursors["after"] is not None:
            raise BadFilter("give before or after, not both")
        service, q = params.get("service", "").strip(), " ".join(params.get("q", "").split())
        if len(service) > 255 or len(q) > 200:
            raise BadFilter("service and search are limited to 255 and 200 characters")
        return cls(status=status, severity=severity, service=service, period=period, q=q, **cursors)

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (empty ones and the cursor left out), for links to other pages."""
        values = {"status": self.status, "severity": self.severity, "service": self.service,
                  "period": "" if self.period == "all" else self.period, "q": self.q}
        values.update({k: str(v) for k, v in changes.items()})
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class IncidentListRow:
    number: int
    ref: str
    title: str
    severity: str
    status: str
    service: str | None
    detected_at: datetime | None
    resolved_at: datetime | None
    ttr_s: int | None


@dataclass
class IncidentPage:
    rows: list[IncidentListRow]
    total: int  # exact up to COUNT_CAP; capped says it is more
    capped: bool
    newer: int | None  # ``after`` cursor for the newer page, None on the first one
    older: int | None  # ``before`` cursor for the older page, None on the last one
    services: list[str] = field(default_factory=list)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def title_matches(q: str, dialect: str) -> ColumnElement[bool]:
    """The search box: the text index (storage/text_search.py: words of the title, service, summary and
    root causes, the last word as a prefix). A search with no word in it ("5%") falls back to a
    case-insensitive substring of the titles (a scan)."""
    found = text_search.matching(dialect, q)
    return found if found is not None else func.lower(Incident.title).like(_like(q.lower()), escape="\\")


def _where(f: IncidentFilter, now: datetime, dialect: str) -> list[Any]:
    i = Incident
    where: list[Any] = []
    if f.status:
        where.append(i.status == f.status)
    if f.severity:
        where.append(i.severity == f.severity)
    if f.service:
        where.append(i.service == f.service)
    span = PERIODS[f.period]
    if span is not None:
        where.append(i.detected_at >= now - span)  # type: ignore[operator]
    if f.q:
        where.append(title_matches(f.q, dialect))
    return where


def list_incidents(session: Session, f: IncidentFilter, *, now: datetime | None = None, page_size: int = PAGE_SIZE,
                   count_cap: int = COUNT_CAP) -> IncidentPage:
    i, m = Incident, IncidentMetrics
    number: Any = i.number
    now = now or utcnow()
    where = _where(f, now, session.get_bind().dialect.name)
    matching = select(literal(1)).select_from(i).where(*where).limit(count_cap + 1).subquery()
    total = int(session.execute(select(func.count()).select_from(matching)).scalar_one())
    stmt = (select(i.number, i.ref, i.title, i.severity, i.status, i.service, i.detected_at, i.resolved_at, m.ttr_s)
            .join(m, m.incident_id == i.id, isouter=True)  # type: ignore[arg-type]
            .where(*where).limit(page_size + 1))
    def exists(*more: Any) -> bool:
        return session.execute(select(number).where(*where, *more).limit(1)).first() is not None

    if f.after is not None:  # the page just above the cursor, shown newest first
        rows = [IncidentListRow(*r) for r in session.execute(stmt.where(number > f.after).order_by(number))]
        more_newer, rows = len(rows) > page_size, rows[:page_size][::-1]
        more_older = exists(number <= f.after)
    else:
        if f.before is not None:
            stmt = stmt.where(number < f.before)
        rows = [IncidentListRow(*r) for r in session.execute(stmt.order_by(number.desc()))]
        more_older, rows = len(rows) > page_size, rows[:page_size]
        more_newer = f.before is not None and exists(number >= f.before)
    if not rows and (f.before or f.after):  # a cursor past either end (an edited link): the first page
        return list_incidents(session, replace(f, before=None, after=None), now=now, page_size=page_size,
                              count_cap=count_cap)
    return IncidentPage(rows=rows, total=min(total, count_cap), capped=total > count_cap,
                        newer=rows[0].number if rows and more_newer else None,
                        older=rows[-1].number if rows and more_older else None, services=services(session))


def services(session: Session) -> list[str]:
    """Service names for the filters, in order: a loose index scan (a recursive query that asks the
    service index for the next name, once per name), since ``SELECT DISTINCT`` reads every incident
    on PostgreSQL."""
    i = Incident.__table__  # type: ignore[attr-defined]
    names = select(func.min(i.c.service).label("service")).cte("names", recursive=True)
    following = select(func.min(i.c.service)).where(i.c.service > names.c.service).scalar_subquery()
    names = names.union_all(select(following).where(names.c.service.is_not(None)))
    found = session.execute(select(names.c.service).where(names.c.service.is_not(None)).limit(MAX_SERVICES))
    return sorted(s for s in found.scalars() if s)
