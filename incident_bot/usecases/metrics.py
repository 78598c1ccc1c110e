"""Period metrics (MTTD / MTTA / MTTM / MTTR) computed in the database from ``incident_metrics``.

Why SQL and not Python: a year of a busy organisation is ~100,000 incidents and a million timeline rows;
loading ORM objects for them costs seconds and hundreds of MB. ``incident_metrics`` is a narrow copy of
the per-incident durations (kept current by :func:`incident_bot.usecases.incidents.refresh_metrics`), so
a period is one aggregate query plus one ordered scan per metric for the percentiles, whatever the size.

Membership (issue 4):
- MTTx figures cover incidents **resolved** in the half-open window ``[since, until)``; an incident
  missing either end of a metric (its ``tt*_s`` is NULL) is left out of that metric only;
- incident counts cover incidents **detected** in the window.

Mean and percentile definitions live in :mod:`incident_bot.core.stats` (nearest-rank, mean rounded
half to even); the SQL here only supplies ``SUM``, ``COUNT`` and the values at the ranks that module
names, so SQL and the pure reference cannot drift apart. Portable: SQLite >= 3.25 and PostgreSQL
(``ROW_NUMBER() OVER``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlmodel import Session

from incident_bot.core.severity import SEVERITIES
from incident_bot.core.stats import PERCENTILES, Summary, empty_summary, nearest_rank, rounded_mean
from incident_bot.usecases.json_shapes import iso
from storage.models import IncidentMetrics

# Per-incident column -> period key in the JSON document.
METRIC_KEYS: dict[str, str] = {"ttd_s": "mttd_s", "tta_s": "mtta_s", "ttm_s": "mttm_s", "ttr_s": "mttr_s"}

_T = IncidentMetrics.__table__  # type: ignore[attr-defined]


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


def _ranked_values(session: Session, column: str, where: list[ColumnElement[bool]],
                   ranks: set[int]) -> dict[int, int]:
    """Values at the given 1-based ranks of ``column`` sorted ascending (NULLs excluded).

    One ordered pass in the database; only the requested rows come back to Python.
    """
    col = _T.c[column]
    inner = (
        select(col.label("v"), func.row_number().over(order_by=col).label("rn"))
        .where(*where, col.is_not(None))
        .subquery()
    )
    rows = session.execute(select(inner.c.rn, inner.c.v).where(inner.c.rn.in_(sorted(ranks))))
    return {int(rn): int(v) for rn, v in rows}


def _metric_summaries(session: Session, where: list[ColumnElement[bool]]) -> dict[str, Summary]:
    aggregates = []
    for column in METRIC_KEYS:
        aggregates += [func.count(_T.c[column]), func.sum(_T.c[column])]
    row = session.execute(select(*aggregates).where(*where)).one()
    out: dict[str, Summary] = {}
    for i, (column, key) in enumerate(METRIC_KEYS.items()):
        n, total = int(row[2 * i] or 0), int(row[2 * i + 1] or 0)
        if n == 0:
            out[key] = empty_summary()
            continue
        ranks = {p: nearest_rank(p, n) for p in PERCENTILES}
        values = _ranked_values(session, column, where, set(ranks.values()))
        out[key] = {"mean": rounded_mean(total, n), "p50": values[ranks[50]], "p90": values[ranks[90]],
                    "n": n}
    return out


def _severity_counts(session: Session, where: list[ColumnElement[bool]]) -> dict[str, Any]:
    stmt = select(_T.c.severity, func.count()).where(*where).group_by(_T.c.severity)
    by_severity = dict.fromkeys(SEVERITIES, 0)
    total = 0
    for severity, count in session.execute(stmt):
        total += int(count)
        if severity in by_severity:
            by_severity[severity] = int(count)
    return {"total": total, "by_severity": by_severity}


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
    unknown = [s for s in severities or () if s not in SEVERITIES]
    if unknown:
        raise ValueError(f"unknown severity {unknown[0]!r}; use one of {', '.join(SEVERITIES)}")
    resolved = _conditions(_T.c.resolved_at, since, until, severities, services)
    detected = _conditions(_T.c.detected_at, since, until, severities, services)
    doc: dict[str, Any] = {
        "window": {"since": iso(since), "until": iso(until)},
        "incidents": _severity_counts(session, detected),
    }
    doc.update(_metric_summaries(session, resolved))
    return doc


def incident_metrics(session: Session, incident_id: int) -> dict[str, int | None] | None:
    """One incident's ``{"ttd_s", "tta_s", "ttm_s", "ttr_s"}``; None if the incident has no metrics row."""
    row = session.get(IncidentMetrics, incident_id)
    if row is None:
        return None
    return {column: getattr(row, column) for column in METRIC_KEYS}
