"""Period metrics (MTTD / MTTA / MTTM / MTTR) from ``incident_metrics``.

Why this shape: a year of a busy organisation is ~100,000 incidents and a million timeline rows;
loading ORM objects for them costs seconds and hundreds of MB. ``incident_metrics`` is a narrow copy of
the per-incident durations (kept current by :func:`incident_bot.services.incidents.refresh_metrics`), so
a period is two narrow queries: the incident counts by severity, and the four durations of every
incident resolved in the window (plain integers, no ORM objects). The figures are then
:func:`incident_bot.core.stats.summary` of those values: the definition itself (nearest rank, mean
rounded half to even), so SQL and the pure reference cannot drift apart. Sorting 100,000 integers in
Python is cheaper than the ordered window function (``ROW_NUMBER() OVER``) per metric this replaced:
measured at 100,000 incidents in bench/RESULTS.md (2026-12-01, "Read paths").

Membership:
- MTTx figures cover incidents **resolved** in the half-open window ``[since, until)``; an incident
  missing either end of a metric (its ``tt*_s`` is NULL) is left out of that metric only;
- incident counts cover incidents **detected** in the window.

:func:`periods_metrics` does the same for consecutive periods (the weeks of a chart or a digest's trend)
in one pass: each row's period is computed by the database (a ``CASE`` over the period ends), so a
52-week chart is two queries, not 104.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, select
from sqlmodel import Session

from incident_bot.core.durations import iso_utc
from incident_bot.core.severity import SEVERITIES
from incident_bot.core.stats import Summary, sorted_summary
from storage.models import IncidentMetrics

# Per-incident column -> period key in the JSON document.
METRIC_KEYS: dict[str, str] = {"ttd_s": "mttd_s", "tta_s": "mtta_s", "ttm_s": "mttm_s", "ttr_s": "mttr_s"}

_T = IncidentMetrics.__table__  # type: ignore[attr-defined]
_DURATIONS = [_T.c[column] for column in METRIC_KEYS]


def _check_window(since: datetime | None, until: datetime | None) -> None:
    for name, ts in (("since", since), ("until", until)):
        if ts is not None and ts.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware")
    if since is not None and until is not None and since >= until:
        raise ValueError("since must be before until")


def _conditions(
    time_col: Any, since: datetime | None, until: datetime | None,
    severities: Sequence[str] | None, services: Sequence[str] | None,
) -> list[ColumnElement[bool]]:
    """WHERE clauses: half-open window on ``time_col`` plus the optional severity/service filters."""
    conds: list[ColumnElement[bool]] = [time_col.is_not(None)]
    if since is not None:
        conds.append(time_col >= since)
    if until is not None:
        conds.append(time_col < until)
    if severities:
        conds.append(_T.c.severity.in_(list(severities)))
    if services:
        conds.append(_T.c.service.in_(list(services)))
    return conds


def _summaries(rows: Sequence[Sequence[Any]], first: int = 0) -> dict[str, Summary]:
    """``{"mttd_s": summary, ...}`` of rows whose columns from ``first`` on are
    ``(ttd_s, tta_s, ttm_s, ttr_s)`` (integer columns)."""
    columns = list(zip(*rows, strict=True))[first:] or [()] * len(METRIC_KEYS)
    out: dict[str, Summary] = {}
    for key, column in zip(METRIC_KEYS.values(), columns, strict=True):
        known = [v for v in column if v is not None]
        known.sort()
        out[key] = sorted_summary(known)
    return out


def _severity_counts(rows: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """``{"total", "by_severity"}`` from ``(severity, count)`` rows."""
    by_severity = dict.fromkeys(SEVERITIES, 0)
    total = 0
    for severity, count in rows:
        total += int(count)
        if severity in by_severity:
            by_severity[severity] += int(count)
    return {"total": total, "by_severity": by_severity}


def _check_filters(severities: Sequence[str] | None) -> None:
    unknown = [s for s in severities or () if s not in SEVERITIES]
    if unknown:
        raise ValueError(f"unknown severity {unknown[0]!r}; use one of {', '.join(SEVERITIES)}")


def period_metrics(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    severities: list[str] | None = None,
    services: list[str] | None = None,
) -> dict[str, Any]:
    """The ``incident-bot metrics --format json`` document for ``[since, until)``.

    ``None`` for ``since``/``until`` leaves that side open; ``None`` (or an empty list) for
    ``severities``/``services`` means no filter. Raises ValueError for a naive or empty window or an
    unknown severity. Shape::

        {"window": {"since", "until"}, "incidents": {"total", "by_severity": {"SEV1": n, ...}},
         "mttd_s": {"mean", "p50", "p90", "n"}, "mtta_s": {...}, "mttm_s": {...}, "mttr_s": {...}}
    """
    _check_window(since, until)
    _check_filters(severities)
    resolved = _conditions(_T.c.resolved_at, since, until, severities, services)
    detected = _conditions(_T.c.detected_at, since, until, severities, services)
    counts = session.execute(select(_T.c.severity, func.count()).where(*detected).group_by(_T.c.severity)).all()
    values = session.execute(select(*_DURATIONS).where(*resolved)).all()
    doc: dict[str, Any] = {
        "window": {"since": iso_utc(since), "until": iso_utc(until)},
        "incidents": _severity_counts(counts),  # type: ignore[arg-type]
    }
    doc.update(_summaries(values))
    return doc


def periods_metrics(
    session: Session,
    periods: Sequence[tuple[datetime, datetime]],
    *,
    severities: list[str] | None = None,
    services: list[str] | None = None,
) -> list[dict[str, Any]]:
    """``[period_metrics(since=s, until=u, ...) for s, u in periods]``, in two queries whatever the count.

    ``periods`` must be consecutive (each ``until`` the next ``since``), like the weeks of a chart.
    """
    if not periods:
        return []
    for (_, until), (since, _) in pairwise(periods):
        if until != since:
            raise ValueError("periods must be consecutive")
    for since, until in periods:
        _check_window(since, until)
    _check_filters(severities)
    first, last = periods[0][0], periods[-1][1]

    def bucket(col: Any) -> Any:
        """The index of the period ``col`` falls in (rows are already inside ``[first, last)``)."""
        if len(periods) == 1:
            return literal(0)
        return case(*[(col < until, n) for n, (_, until) in enumerate(periods[:-1])], else_=len(periods) - 1)

    counts: list[list[tuple[str, int]]] = [[] for _ in periods]
    b = bucket(_T.c.detected_at).label("b")
    for n, severity, count in session.execute(
            select(b, _T.c.severity, func.count())
            .where(*_conditions(_T.c.detected_at, first, last, severities, services)).group_by(b, _T.c.severity)):
        counts[int(n)].append((severity, count))
    values: list[list[Any]] = [[] for _ in periods]
    for row in session.execute(select(bucket(_T.c.resolved_at), *_DURATIONS)
                               .where(*_conditions(_T.c.resolved_at, first, last, severities, services))).all():
        values[row[0]].append(row)
    out = []
    for (since, until), period_counts, period_values in zip(periods, counts, values, strict=True):
        doc: dict[str, Any] = {"window": {"since": iso_utc(since), "until": iso_utc(until)},
                               "incidents": _severity_counts(period_counts)}
        doc.update(_summaries(period_values, first=1))
        out.append(doc)
    return out


def incident_metrics(session: Session, incident_id: int) -> dict[str, int | None] | None:
    """One incident's ``{"ttd_s", "tta_s", "ttm_s", "ttr_s"}``; None if the incident has no metrics row."""
    row = session.get(IncidentMetrics, incident_id)
    if row is None:
        return None
    return {column: getattr(row, column) for column in METRIC_KEYS}
