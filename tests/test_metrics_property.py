"""Property tests: every figure of ``period_metrics`` equals a straightforward Python reference.

Random incident sets (milestones random but ordered, some missing, sub-second parts included) are
stored as Incident rows with their ``incident_metrics`` row written by the production
``refresh_metrics``; the reference works from the generated milestones alone, with its own nearest-rank
and rounding code, so it shares nothing with the implementation but the definitions in DESIGN.md §5.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete

from incident_bot.core import stats
from incident_bot.usecases.incidents import refresh_metrics
from incident_bot.usecases.metrics import period_metrics, periods_metrics
from storage import migrate
from storage.db import make_engine, session_scope
from storage.models import Incident, IncidentMetrics
from tests.conftest import PG_URL, pg_schema_url

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
SERVICES = ("api", "web", None)
BASE = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = 10 * 86400  # incidents detected within ten days, so windows cut through the set
METRICS = {"ttd_s": ("impact_started_at", "detected_at"), "tta_s": ("detected_at", "acknowledged_at"),
           "ttm_s": ("impact_started_at", "mitigated_at"), "ttr_s": ("impact_started_at", "resolved_at")}


# -- reference ------------------------------------------------------------------------------------

def ref_nearest_rank(values: list[int], pct: int) -> int | None:
    """The smallest value with at least pct% of the values at or below it (textbook nearest rank)."""
    for x in sorted(values):
        if sum(1 for y in values if y <= x) * 100 >= pct * len(values):
            return x
    return None


def ref_mean(values: list[int]) -> int | None:
    """The integer m closest to the mean; on an exact tie (x.5) the even one."""
    if not values:
        return None
    total, n = sum(values), len(values)
    lo = total // n
    for m in (lo, lo + 1):
        twice_err = abs(2 * (total - m * n))
        if twice_err < n or (twice_err == n and m % 2 == 0):
            return m
    raise AssertionError("unreachable")


def ref_summary(values: list[int]) -> dict[str, int | None]:
    return {"mean": ref_mean(values), "p50": ref_nearest_rank(values, 50),
            "p90": ref_nearest_rank(values, 90), "n": len(values)}


def ref_period(incidents: list[dict[str, Any]], since: datetime | None, until: datetime | None,
               severities: list[str] | None, services: list[str | None] | None) -> dict[str, Any]:
    def in_window(ts: datetime | None) -> bool:
        return ts is not None and (since is None or ts >= since) and (until is None or ts < until)

    chosen = [i for i in incidents if (not severities or i["severity"] in severities)
              and (not services or i["service"] in services)]
    detected = [i for i in chosen if in_window(i["detected_at"])]
    resolved = [i for i in chosen if in_window(i["resolved_at"])]
    doc: dict[str, Any] = {
        "window": {"since": since.strftime("%Y-%m-%dT%H:%M:%SZ") if since else None,
                   "until": until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None},
        "incidents": {"total": len(detected),
                      "by_severity": {s: sum(1 for i in detected if i["severity"] == s) for s in SEVERITIES}},
    }
    for column, (start, end) in METRICS.items():
        values = [(i[end] - i[start]) // timedelta(seconds=1) for i in resolved
                  if i[start] is not None and i[end] is not None]
        doc["m" + column] = ref_summary(values)
    return doc


# -- generated incident sets ----------------------------------------------------------------------

def _at(seconds: int, micros: int) -> datetime:
    return BASE + timedelta(seconds=seconds, microseconds=micros)


@st.composite
def incidents(draw: st.DrawFn) -> dict[str, Any]:
    """Ordered milestones: impact <= detected <= acknowledged; mitigated, resolved >= impact."""
    micros = st.integers(0, 999_999)
    delay = st.integers(0, 6 * 3600)
    impact = _at(draw(st.integers(0, SPAN)), draw(micros))
    detected = impact + timedelta(seconds=draw(st.sampled_from([0, 0, 1, 59, 60, 3599])) or draw(delay))
    def maybe_after(t: datetime) -> datetime | None:
        if draw(st.booleans()) and draw(st.booleans()):
            return None
        return t + timedelta(seconds=draw(delay), microseconds=draw(micros))
    ack = maybe_after(detected)
    mitigated = maybe_after(impact)
    resolved = maybe_after(mitigated or impact)
    return {"severity": draw(st.sampled_from(SEVERITIES)), "service": draw(st.sampled_from(SERVICES)),
            "impact_started_at": impact, "detected_at": detected, "acknowledged_at": ack,
            "mitigated_at": mitigated, "resolved_at": resolved}


def _bound(draw: st.DrawFn, points: list[datetime]) -> datetime | None:
    """A window edge: open, exactly an incident's timestamp (to probe the half-open rule), or anywhere."""
    kind = draw(st.sampled_from(["open", "point", "any"]))
    if kind == "open":
        return None
    if kind == "point" and points:
        return draw(st.sampled_from(points))
    return _at(draw(st.integers(-86400, SPAN + 2 * 86400)), 0)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def prop_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'prop.db'}"
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = pg_schema_url(schema)
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    if schema:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def store(engine: Engine, items: list[dict[str, Any]]) -> None:
    """Replace the database's incidents with ``items``; metrics rows come from ``refresh_metrics``."""
    with session_scope(engine) as s:
        s.execute(delete(IncidentMetrics))
        s.execute(delete(Incident))
        for n, item in enumerate(items, start=1):
            inc = Incident(number=n, ref=f"INC-{n}", title=f"t{n}", status="triggered", rca={}, **item)
            s.add(inc)
            s.flush()
            refresh_metrics(s, inc)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), items=st.lists(incidents(), max_size=25))
def test_period_metrics_match_reference(prop_engine: Engine, data: st.DataObject,
                                        items: list[dict[str, Any]]) -> None:
    store(prop_engine, items)
    points = [ts for i in items for ts in (i["detected_at"], i["resolved_at"]) if ts is not None]
    since = _bound(data.draw, points)
    until = _bound(data.draw, points)
    if since is not None and until is not None and since >= until:
        since, until = (until, since) if until < since else (since, None)
    severities = data.draw(st.none() | st.lists(st.sampled_from(SEVERITIES), unique=True, max_size=3))
    services = data.draw(st.none() | st.lists(st.sampled_from(["api", "web"]), unique=True, max_size=2))
    with session_scope(prop_engine) as s:
        got = period_metrics(s, since=since, until=until, severities=severities,
                             services=services)  # type: ignore[arg-type]
    assert got == ref_period(items, since, until, severities, services)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), items=st.lists(incidents(), max_size=25))
def test_periods_metrics_match_reference(prop_engine: Engine, data: st.DataObject,
                                         items: list[dict[str, Any]]) -> None:
    """Consecutive periods in one pass (the weeks of a chart, a digest's trend): each period's figures are
    the reference's for that period alone, whatever the cut points (exactly at a timestamp included)."""
    store(prop_engine, items)
    points = sorted({ts for i in items for ts in (i["detected_at"], i["resolved_at"]) if ts is not None})
    at_points = data.draw(st.lists(st.sampled_from(points), max_size=4)) if points else []
    cuts = sorted({*at_points, _at(-86400, 0), _at(SPAN + 2 * 86400, 0), _at(data.draw(st.integers(0, SPAN)), 0)})
    periods = list(pairwise(cuts))
    severities = data.draw(st.none() | st.lists(st.sampled_from(SEVERITIES), unique=True, min_size=1, max_size=3))
    with session_scope(prop_engine) as s:
        got = periods_metrics(s, periods, severities=severities)
    assert got == [ref_period(items, a, b, severities, None) for a, b in periods]


# -- the pure statistics ----------------------------------------------------------------------------

values_with_gaps = st.lists(st.none() | st.integers(0, 10**9), max_size=60)


@settings(max_examples=300)
@given(values_with_gaps)
def test_summary_matches_reference(values: list[int | None]) -> None:
    known = [v for v in values if v is not None]
    assert stats.summary(values) == ref_summary(known)


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=200))
def test_mean_agrees_with_exact_statistics(values: list[int]) -> None:
    exact = Fraction(statistics.mean(Fraction(v) for v in values))
    assert abs(stats.rounded_mean(sum(values), len(values)) - exact) <= Fraction(1, 2)  # type: ignore[operator]


def test_nearest_rank_by_hand() -> None:
    # n=10: p50 is the 5th value, p90 the 9th; n=1: both are the only value; n=4: p90 rank ceil(3.6) = 4.
    assert [stats.nearest_rank(50, 10), stats.nearest_rank(90, 10)] == [5, 9]
    assert [stats.nearest_rank(50, 1), stats.nearest_rank(90, 1)] == [1, 1]
    assert [stats.nearest_rank(50, 4), stats.nearest_rank(90, 4)] == [2, 4]
    assert stats.summary([7, None, 1, 3]) == {"mean": 4, "p50": 3, "p90": 7, "n": 3}
    assert stats.summary([1, 2]) == {"mean": 2, "p50": 1, "p90": 2, "n": 2}  # 1.5 -> 2 (even)
    assert stats.summary([2, 3]) == {"mean": 2, "p50": 2, "p90": 3, "n": 2}  # 2.5 -> 2 (even)
    assert stats.summary([None]) == {"mean": None, "p50": None, "p90": None, "n": 0}
    with pytest.raises(ValueError):
        stats.nearest_rank(50, 0)
