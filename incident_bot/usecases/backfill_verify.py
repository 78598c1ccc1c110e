"""``backfill pagerduty --verify``: our per-incident TTA and TTR against PagerDuty's own analytics.

Our definitions (DESIGN.md §5, ``core.durations``): TTA = first acknowledgement − detection; TTR = last
resolution − impact start (impact start = detection unless someone set it earlier in Slack). PagerDuty's
raw analytics: ``seconds_to_first_ack`` and ``seconds_to_resolve`` from the PagerDuty incident's creation.
Every difference is listed with its cause:

- ``grouped``: the PagerDuty incident joined an alert-storm group; the Slack incident follows its primary;
- ``detected earlier``: the group's detection is its earliest trigger, before this incident's creation;
- ``impact start``: TTR counts from an impact start set in Slack, before detection;
- ``reopened``: resolved more than once; we count to the last resolution;
- ``not acknowledged`` / ``not resolved`` on one side only;
- ``not imported``: PagerDuty has it, we do not (outside --service, or the run did not reach it);
- ``unexplained``: none of the above (a bug to report).

Differences of one second or less are rounding (we count whole seconds) and are not listed. PagerDuty's
figures come from the PagerDuty adapter (an :class:`Analytics`: ``pagerduty/backfill.py``'s
``RestHistory``), passed in by the entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, select
from sqlmodel import Session

from incident_bot.usecases import runner
from storage.models import Incident, IncidentMetrics, PagerDutyLink


@dataclass(frozen=True)
class Reported:
    """PagerDuty's own figures for one of its incidents (raw analytics), in whole seconds."""

    pagerduty_id: str
    tta_s: int | None  # seconds_to_first_ack
    ttr_s: int | None  # seconds_to_resolve


class Analytics(Protocol):
    def reported(self, since: datetime, until: datetime, services: list[str]) -> Iterator[Reported]:
        """PagerDuty's figures for its incidents created in [since, until) (of ``services``, when given)."""
        ...


@dataclass(frozen=True)
class Difference:
    pagerduty_id: str
    ref: str | None
    metric: str  # tta | ttr
    ours_s: int | None
    theirs_s: int | None
    cause: str


@dataclass
class Verification:
    compared: int = 0
    matching: int = 0
    differences: list[Difference] | None = None


def verify(engine: Engine, analytics: Analytics, since: datetime, until: datetime,
           services: list[str]) -> Verification:
    result = Verification(differences=[])
    assert result.differences is not None
    by_id = {r.pagerduty_id: r for r in analytics.reported(since, until, services)}
    found = runner.read(engine, _ours, list(by_id))
    for pd_id, row in by_id.items():
        result.compared += 1
        diffs = _compare(pd_id, row, found.get(pd_id))
        if diffs:
            result.differences.extend(diffs)
        else:
            result.matching += 1
    return result


def _ours(s: Session, ids: list[str]) -> dict[str, tuple[PagerDutyLink, Incident, IncidentMetrics | None]]:
    """Our link, incident and metrics of each of these PagerDuty incidents that we hold."""
    found: dict[str, tuple[PagerDutyLink, Incident, IncidentMetrics | None]] = {}
    for k in range(0, len(ids), 500):
        stmt = (select(PagerDutyLink, Incident, IncidentMetrics)
                .join(Incident, Incident.id == PagerDutyLink.incident_id)  # type: ignore[arg-type]
                .join(IncidentMetrics, IncidentMetrics.incident_id == Incident.id, isouter=True)  # type: ignore[arg-type]
                .where(PagerDutyLink.pagerduty_incident_id.in_(ids[k:k + 500])))  # type: ignore[attr-defined]
        for link, inc, metrics in s.execute(stmt).all():
            found[link.pagerduty_incident_id] = (link, inc, metrics)
    return found


def _compare(pd_id: str, row: Reported, ours: tuple[Any, Any, Any] | None) -> list[Difference]:
    theirs = {"tta": row.tta_s, "ttr": row.ttr_s}
    if ours is None:
        return [Difference(pd_id, None, m, None, v, "not imported") for m, v in theirs.items() if v is not None][:1] \
            or [Difference(pd_id, None, "tta", None, None, "not imported")]
    link, inc, metrics = ours
    mine = {"tta": metrics.tta_s if metrics else None, "ttr": metrics.ttr_s if metrics else None}
    out = []
    for metric in ("tta", "ttr"):
        a, b = mine[metric], theirs[metric]
        if a is not None and b is not None and abs(a - b) <= 1:
            continue
        if a is None and b is None:
            continue
        out.append(Difference(pd_id, inc.ref, metric, a, b, _cause(metric, a, b, link, inc)))
    return out


def _cause(metric: str, ours: int | None, theirs: int | None, link: PagerDutyLink, inc: Incident) -> str:
    if not link.primary:
        return f"grouped: joined {inc.ref}, whose lifecycle follows its primary PagerDuty incident"
    if link.triggered_at and inc.detected_at and inc.detected_at < link.triggered_at:
        return "detected earlier: the group's detection is its earliest trigger"
    if metric == "ttr" and inc.impact_started_at and inc.detected_at and inc.impact_started_at < inc.detected_at:
        return "impact start: our TTR counts from the impact start set in Slack, before detection"
    if metric == "ttr" and len(inc.resolve_times or []) > 1:
        return "reopened: resolved more than once; our TTR ends at the last resolution"
    if ours is None:
        return "not acknowledged here" if metric == "tta" else "not resolved here"
    if theirs is None:
        return f"not {'acknowledged' if metric == 'tta' else 'resolved'} in PagerDuty's analytics"
    return "unexplained"
