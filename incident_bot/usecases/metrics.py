"""Period metrics (MTTD / MTTA / MTTM / MTTR) from ``incident_metrics``.

Why this shape: a year of a busy organisation is ~100,000 incidents and a million timeline rows;
loading ORM objects for them costs seconds and hundreds of MB. ``incident_metrics`` is a narrow copy of
the per-incident durations (kept current by :func:`incident_bot.usecases.incidents.refresh_metrics`), so
a period is two narrow queries: the incident counts by severity, and the durations of the incidents
resolved in the window, ranked:
- on SQLite, each duration's known values come back as one JSON array (``json_group_array``) and are
  ranked by :func:`incident_bot.core.stats.sorted_summary` (the definitions themselves: nearest rank, mean
  rounded half to even). One C-level sort per metric is cheaper than the ordered window function
  (``ROW_NUMBER() OVER``, one per metric) this replaced, and one array cheaper than a row per incident;
- on PostgreSQL, fetching 100,000 rows costs more than sorting them, so the database sorts each metric
  into an array and sends back the count, the sum and the values at the nearest ranks, computed in
  integers exactly as :func:`incident_bot.core.stats.nearest_rank` does.
Both give the same document; tests/test_metrics_property.py checks each database against a reference
that shares no code with this module. Figures: bench/RESULTS.md ("Read paths", 2026-12-01).

Membership:
- MTTx figures cover incidents **resolved** in the half-open window ``[since, until)``; an incident
  missing either end of a metric (its ``tt*_s`` is NULL) is left out of that metric only;
- incident counts cover incidents **detected** in the window.

:func:`periods_metrics` does the same for consecutive periods (the weeks of a chart or a digest's trend)
in two queries whatever their number: each is one ``SELECT`` per period, over that period's own range of
the index, glued with ``UNION ALL``. (A single range with each row's period computed by a ``CASE`` over
the period ends cost SQLite up to one comparison per period per row: twice the time for a digest's 8
weeks, more for a 52-week chart.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column, select, union_all
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlmodel import Session

from incident_bot.core.durations import iso_utc
from incident_bot.core.severity import SEVERITIES
from incident_bot.core.stats import Summary, empty_summary, rounded_mean, sorted_summary
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


def _per_period(wheres: Sequence[list[Any]], columns: Sequence[Any], group_by: Sequence[Any] = ()) -> Any:
    """``SELECT <period index> AS b, columns`` for each period's WHERE, as one statement (see the module
    docstring). The index is a literal, so the rows of period ``n`` come back with ``b == n``."""
    selects = [select(literal_column(str(n)).label("b"), *columns).where(*where).group_by(*group_by)
               for n, where in enumerate(wheres)]
    return selects[0] if len(selects) == 1 else union_all(*selects)


def _ranked_in_python(session: Session, wheres: Sequence[list[Any]]) -> list[dict[str, Summary]]:
    """SQLite: each period's known values of each duration as one JSON array (``json_group_array``), ranked
    by :func:`sorted_summary`. One string a metric instead of a row an incident: SQLite builds it in C and
    ``json.loads`` reads it in C, where 100,000 rows of four values cost ~0.2 s of Python objects."""
    arrays = [func.json_group_array(column).filter(column.is_not(None)) for column in _DURATIONS]
    out: list[dict[str, Summary]] = [{key: empty_summary() for key in METRIC_KEYS.values()} for _ in wheres]
    for b, *texts in session.execute(_per_period(wheres, arrays)):  # one row a period ('[]': no values)
        for key, text in zip(METRIC_KEYS.values(), texts, strict=True):
            known = json.loads(text) if text else []
            known.sort()
            out[b][key] = sorted_summary(known)
    return out


def _ranked_in_postgres(session: Session, wheres: Sequence[list[Any]]) -> list[dict[str, Summary]]:
    """PostgreSQL: each period's values sorted into an array by the database, and only the count, the sum
    and the two values at the nearest ranks sent back (a fetch of 100,000 rows costs more than the sort)."""
    aggregates = []
    for column in _DURATIONS:
        aggregates += [func.count(column), func.sum(column),
                       func.array_agg(aggregate_order_by(column, column)).filter(column.is_not(None))]
    per = _per_period(wheres, aggregates).subquery()
    picks: list[Any] = []
    for m in range(len(METRIC_KEYS)):
        n, total, values = per.c[1 + 3 * m], per.c[2 + 3 * m], per.c[3 + 3 * m]
        # core.stats.nearest_rank in integers: ceil(pct * n / 100), 1-based like PostgreSQL's arrays.
        picks += [n, total, values[(50 * n + 99) // 100], values[(90 * n + 99) // 100]]
    out: list[dict[str, Summary]] = [{key: empty_summary() for key in METRIC_KEYS.values()} for _ in wheres]
    for b, *row in session.execute(select(per.c.b, *picks)):
        for m, key in enumerate(METRIC_KEYS.values()):
            n, total, p50, p90 = row[4 * m:4 * m + 4]
            if n:
                out[b][key] = {"mean": rounded_mean(int(total), int(n)), "p50": p50, "p90": p90, "n": int(n)}
    return out


def _durations(session: Session, wheres: Sequence[list[Any]]) -> list[dict[str, Summary]]:
    """Each period's MTTx figures, the same either way (tests/test_metrics_property.py, both databases)."""
    if session.get_bind().dialect.name == "postgresql":
        return _ranked_in_postgres(session, wheres)
    return _ranked_in_python(session, wheres)


def _counts(session: Session, wheres: Sequence[list[Any]]) -> list[dict[str, Any]]:
    """Each period's ``{"total", "by_severity"}``."""
    rows: list[list[tuple[str, int]]] = [[] for _ in wheres]
    for b, severity, count in session.execute(_per_period(wheres, [_T.c.severity, func.count()], [_T.c.severity])):
        rows[b].append((severity, count))
    return [_severity_counts(r) for r in rows]


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
    doc: dict[str, Any] = {
        "window": {"since": iso_utc(since), "until": iso_utc(until)},
        "incidents": _counts(session, [_conditions(_T.c.detected_at, since, until, severities, services)])[0],
    }
    doc.update(_durations(session, [_conditions(_T.c.resolved_at, since, until, severities, services)])[0])
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
    counts = _counts(session, [_conditions(_T.c.detected_at, s, u, severities, services) for s, u in periods])
    figures = _durations(session, [_conditions(_T.c.resolved_at, s, u, severities, services) for s, u in periods])
    out = []
    for (since, until), period_counts, period_figures in zip(periods, counts, figures, strict=True):
        out.append({"window": {"since": iso_utc(since), "until": iso_utc(until)}, "incidents": period_counts,
                    **period_figures})
    return out


def incident_metrics(session: Session, incident_id: int) -> dict[str, int | None] | None:
    """One incident's ``{"ttd_s", "tta_s", "ttm_s", "ttr_s"}``; None if the incident has no metrics row."""
    row = session.get(IncidentMetrics, incident_id)
    if row is None:
        return None
    return {column: getattr(row, column) for column in METRIC_KEYS}
