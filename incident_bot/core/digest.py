"""The weekly SEV digest as content: plain data in, the JSON document out. Pure.

The service layer (:mod:`incident_bot.usecases.digest`) does the SQL and hands over a
:class:`DigestInput`; which incidents are "major" and when a response target is met or missed are
decided here, and :mod:`incident_bot.core.digest_view` builds the template context from the same
document (changes, trend, texts), so the Slack message, the Markdown, the HTML and the JSON cannot
disagree.

Response targets (:mod:`incident_bot.core.targets`) apply to the incidents of that severity detected in
the period. The share within target is ``met / (met + missed)``: pending incidents (still open, still
within target) are not counted either way yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from incident_bot.core.durations import iso_utc
from incident_bot.core.severity import SEVERITIES
from incident_bot.core.targets import Target, TargetResult, evaluate_target

MAJOR_SEVERITIES: tuple[str, ...] = ("SEV1", "SEV2")
METRIC_KEYS: tuple[str, ...] = ("mttd_s", "mtta_s", "mttm_s", "mttr_s")
METRIC_LABELS: dict[str, str] = {"mttd_s": "MTTD", "mtta_s": "MTTA", "mttm_s": "MTTM", "mttr_s": "MTTR"}

# -- input -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IncidentRow:
    """An incident detected in the period whose severity is major or has a target."""

    ref: str
    title: str
    severity: str
    status: str
    detected_at: datetime
    impact_started_at: datetime | None = None
    resolved_at: datetime | None = None
    ttd_s: int | None = None
    ttr_s: int | None = None
    commander_id: str | None = None
    channel_id: str | None = None
    channel_name: str | None = None
    service: str | None = None
    pagerduty_count: int = 0  # PagerDuty incidents linked (an alert storm folded into one incident)


@dataclass(frozen=True)
class TargetSample:
    """The minimum to judge one incident against its targets (for the 8-week trend)."""

    severity: str
    impact_started_at: datetime | None
    ttd_s: int | None
    ttr_s: int | None


@dataclass(frozen=True)
class OverdueItem:
    id: int
    title: str
    owner_id: str | None
    due: date
    incident_ref: str | None = None
    ticket_url: str | None = None  # its ticket in the team's tracker (docs/trackers.md), or linked by hand
    ticket_key: str | None = None


@dataclass(frozen=True)
class CapaInput:
    opened: int = 0
    done: int = 0
    overdue_items: tuple[OverdueItem, ...] = ()
    as_of: date | None = None


@dataclass(frozen=True)
class TrendWeek:
    since: datetime
    until: datetime
    label: str
    metrics: Mapping[str, Any]  # a period_metrics document
    samples: tuple[TargetSample, ...] = ()


@dataclass
class DigestInput:
    since: datetime
    until: datetime
    timezone: str
    zone: tzinfo
    now: datetime
    label: str  # "2026-W47" or "2026-11-01..2026-12-01"
    current: Mapping[str, Any]  # period_metrics for [since, until)
    previous: Mapping[str, Any]  # period_metrics for the period before
    incidents: Sequence[IncidentRow] = ()
    capa: CapaInput = field(default_factory=CapaInput)
    top_services: Sequence[tuple[str, int]] = ()
    missing_rca: Sequence[str] = ()
    targets: Mapping[str, Target] = field(default_factory=dict)
    trend: Sequence[TrendWeek] = ()
    names: Mapping[str, str] = field(default_factory=dict)  # Slack user id -> display name
    open_incidents: Sequence[IncidentRow] = ()  # still open at ``now``, whenever detected
    no_service: int = 0  # incidents detected in the period with no service
    rca_base_url: str | None = None  # WEB_BASE_URL: RCA links go to {base}/ui/incidents/{ref}
    keeps_breaking: Mapping[str, Any] | None = None  # core/learning.py learning_json


# -- the JSON document -------------------------------------------------------------------------------

def iso(ts: datetime | None) -> str | None:
    return iso_utc(ts)


def person(names: Mapping[str, str], uid: str | None) -> dict[str, Any] | None:
    """A person in JSON: ``{"id": "U0ADA", "name": "Ada"}`` (name null when unknown), null for nobody."""
    return None if not uid else {"id": uid, "name": names.get(uid)}


def rca_url(inp: DigestInput, ref: str) -> str | None:
    return f"{inp.rca_base_url.rstrip('/')}/ui/incidents/{ref}" if inp.rca_base_url else None


def partial(inp: DigestInput) -> bool:
    """A period still in progress (a digest asked for mid-week) is labelled, so no one reads it as final."""
    return inp.since <= inp.now < inp.until


def metric_summary(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    s = doc.get(key) or {}
    return {"mean": s.get("mean"), "p50": s.get("p50"), "p90": s.get("p90"), "n": int(s.get("n") or 0)}


def major_incidents(inp: DigestInput) -> list[IncidentRow]:
    rows = [i for i in inp.incidents if i.severity in MAJOR_SEVERITIES]
    return sorted(rows, key=lambda i: (SEVERITIES.index(i.severity), i.detected_at, i.ref))


def target_results(inp: DigestInput) -> dict[str, TargetResult]:
    """Per incident ref, for incidents whose severity has a target."""
    out = {}
    for inc in inp.incidents:
        target = inp.targets.get(inc.severity)
        if target is not None:
            out[inc.ref] = evaluate_target(target, ttd_s=inc.ttd_s, ttr_s=inc.ttr_s,
                                           impact_started_at=inc.impact_started_at or inc.detected_at,
                                           now=inp.now)
    return out


def target_counts(targets: Mapping[str, Target], results: Sequence[tuple[str, TargetResult]]
                   ) -> dict[str, dict[str, int]]:
    counts = {sev: {"met": 0, "missed": 0, "pending": 0} for sev in targets}
    for sev, res in results:
        if sev in counts:
            counts[sev][res.status] += 1
    return counts


def build_json(inp: DigestInput) -> dict[str, Any]:
    """The ``incident-bot digest --format json`` document, in exactly the keys issue 5 gives."""
    results = target_results(inp)
    counts = target_counts(inp.targets, [(i.severity, results[i.ref]) for i in inp.incidents
                                          if i.ref in results])
    by_sev = dict.fromkeys(SEVERITIES, 0)
    by_sev.update({k: int(v) for k, v in (inp.current.get("incidents") or {}).get("by_severity", {}).items()})
    doc: dict[str, Any] = {
        "period": {"since": iso(inp.since), "until": iso(inp.until), "timezone": inp.timezone,
                   "partial": partial(inp)},
        "incidents": {
            "total": int((inp.current.get("incidents") or {}).get("total") or 0),
            "by_severity": by_sev,
            "major": [{"ref": i.ref, "title": i.title, "severity": i.severity, "ttr_s": i.ttr_s,
                       "commander": person(inp.names, i.commander_id), "rca_url": rca_url(inp, i.ref),
                       "pagerduty_count": i.pagerduty_count}
                      for i in major_incidents(inp)],
            "open": [{"ref": i.ref, "title": i.title, "severity": i.severity, "status": i.status,
                      "detected_at": iso(i.detected_at), "commander": person(inp.names, i.commander_id)}
                     for i in inp.open_incidents],
        },
    }
    for key in METRIC_KEYS:
        doc[key] = metric_summary(inp.current, key)
    doc["previous"] = {key: metric_summary(inp.previous, key) for key in METRIC_KEYS}
    doc["capa"] = {
        "opened": inp.capa.opened,
        "done": inp.capa.done,
        "overdue": len(inp.capa.overdue_items),
        "overdue_items": [{"id": a.id, "title": a.title, "owner": person(inp.names, a.owner_id),
                           "due": a.due.isoformat(), "incident": a.incident_ref, "ticket_url": a.ticket_url}
                          for a in inp.capa.overdue_items],
    }
    # Incidents with no service are counted (service null), not silently left out.
    doc["top_services"] = [{"service": s, "count": int(n)} for s, n in inp.top_services]
    if inp.no_service:
        doc["top_services"].append({"service": None, "count": inp.no_service})
    doc["keeps_breaking"] = dict(inp.keeps_breaking) if inp.keeps_breaking is not None else None
    doc["missing_rca"] = list(inp.missing_rca)
    doc["rca_links"] = {ref: rca_url(inp, ref) for ref in inp.missing_rca} if inp.rca_base_url else {}
    doc["targets"] = {
        sev: {"ttr_s": t.ttr_s, "ttd_s": t.ttd_s, "met": counts[sev]["met"], "missed": counts[sev]["missed"]}
        for sev, t in inp.targets.items()
    }
    return doc


def has_rca(rca: Mapping[str, Any] | None) -> bool:
    """An RCA counts as written when both its summary and its root causes are filled in."""
    def filled(value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return any(str(v).strip() for v in value)
        return bool(str(value or "").strip())

    rca = rca or {}
    return filled(rca.get("summary")) and filled(rca.get("root_causes"))
