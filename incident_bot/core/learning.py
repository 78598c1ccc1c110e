"""What keeps breaking: repeated services, time between incidents, and whether done CAPA held. Pure.

The digest and the web view's metrics page show the same figures (services/learning.py reads them):

- **Repeated services**: services with at least :data:`REPEAT_MIN` incidents detected in the last
  :data:`RECENT` (4 weeks) before the end of the period.
- **MTBF** (mean time between failures) of a service: the mean gap between the detections of its
  consecutive incidents over the last :data:`MTBF_SPAN` (90 days); with n incidents that is
  (last - first) / (n - 1). Needs two incidents.
- **CAPA effectiveness**: of the CAPA actions marked done in the last :data:`CAPA_SPAN` (90 days), the
  share whose service had no other incident within ``RECURRENCE_WINDOW`` after the action was done
  ("held"). An action whose window has not ended and whose service has not broken again is *pending*
  and not counted either way; an action of an incident without a service cannot be judged. Every action
  is counted; the ones that did not hold are listed, the :data:`MAX_CAPA_ITEMS` done last first (a busy
  team has thousands a quarter: a weekly read wants the counts and the latest, not all of them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from incident_bot.core.durations import format_duration, iso_utc
from incident_bot.core.recurrence import within

RECENT = timedelta(days=28)
MTBF_SPAN = timedelta(days=90)
CAPA_SPAN = timedelta(days=90)
REPEAT_MIN = 2
MAX_SERVICES = 10
MAX_CAPA_ITEMS = 50
STATUSES = ("held", "recurred", "pending", "no_service")


@dataclass(frozen=True)
class ServiceSpan:
    """One service's incidents: how many in the last 4 weeks, and count/first/last over the MTBF span."""

    service: str
    recent: int
    span_count: int
    first_at: datetime | None
    last_at: datetime | None


@dataclass(frozen=True)
class Breaking:
    service: str
    incidents: int  # in the last 4 weeks
    mtbf_s: int | None
    last_at: datetime | None


def mtbf_seconds(count: int, first: datetime | None, last: datetime | None) -> int | None:
    if count < 2 or first is None or last is None:
        return None
    return int((last - first).total_seconds() // (count - 1))


def keeps_breaking(spans: Iterable[ServiceSpan], *, limit: int = MAX_SERVICES) -> list[Breaking]:
    """Services with at least two incidents in the last 4 weeks: most incidents first, then the
    shortest MTBF, then by name."""
    rows = [Breaking(s.service, s.recent, mtbf_seconds(s.span_count, s.first_at, s.last_at), s.last_at)
            for s in spans if s.recent >= REPEAT_MIN]
    rows.sort(key=lambda b: (-b.incidents, b.mtbf_s if b.mtbf_s is not None else 1 << 62, b.service))
    return rows[:limit]


@dataclass(frozen=True)
class DoneCapa:
    action_id: int
    title: str
    incident_number: int
    incident_ref: str
    service: str | None
    done_at: datetime


@dataclass(frozen=True)
class CapaOutcome:
    capa: DoneCapa
    status: str  # held | recurred | pending | no_service
    recurred_by: str | None = None  # the ref of the incident that broke the service again


def capa_outcome(capa: DoneCapa, on_service: Sequence[tuple[int, str, datetime]], *, window: timedelta,
                 now: datetime) -> CapaOutcome:
    """``on_service``: (number, ref, detected_at) of incidents on the action's service."""
    if not capa.service:
        return CapaOutcome(capa, "no_service")
    first = min(((at, ref) for number, ref, at in on_service
                 if number != capa.incident_number and within(at, capa.done_at, window)), default=None)
    if first is not None:
        return CapaOutcome(capa, "recurred", first[1])
    return CapaOutcome(capa, "pending" if now < capa.done_at + window else "held")


def effectiveness(counts: Mapping[str, int], recurred: Iterable[CapaOutcome], *,
                  limit: int | None = MAX_CAPA_ITEMS) -> dict[str, Any]:
    """The ``capa_effectiveness`` JSON block: ``counts`` by status (:data:`STATUSES`), the share that held,
    and the ``recurred`` actions, the ``limit`` done last first (None: all of them)."""
    counts = {status: int(counts.get(status, 0)) for status in STATUSES}
    latest = sorted(recurred, key=lambda o: (o.capa.done_at, o.capa.action_id), reverse=True)
    items = [{"action_id": o.capa.action_id, "title": o.capa.title, "incident": o.capa.incident_ref,
              "service": o.capa.service, "done_at": iso_utc(o.capa.done_at), "recurred_by": o.recurred_by}
             for o in (latest if limit is None else latest[:limit])]
    judged = counts["held"] + counts["recurred"]
    return {**counts, "judged": judged, "share": None if judged == 0 else round(counts["held"] * 100 / judged),
            "recurred_items": items}


@dataclass(frozen=True)
class FlaggedRecurrence:
    """An incident of the period that recurs an earlier one after its CAPA was done."""

    ref: str
    title: str
    service: str | None
    previous: str
    previous_title: str
    days_since: int
    reasons: tuple[str, ...]


def learning_json(breaking: Sequence[Breaking], capa: Mapping[str, Any], recurrences: Sequence[FlaggedRecurrence],
                  *, window: timedelta) -> dict[str, Any]:
    """The digest's ``keeps_breaking`` JSON block (stable keys; durations in whole seconds)."""
    return {
        "recurrence_window_s": int(window.total_seconds()),
        "repeated_services": [{"service": b.service, "incidents": b.incidents, "mtbf_s": b.mtbf_s,
                               "last_detected_at": iso_utc(b.last_at)} for b in breaking],
        "capa_effectiveness": dict(capa),
        "recurrences": [{"ref": r.ref, "title": r.title, "service": r.service, "previous": r.previous,
                         "days_since": r.days_since, "reasons": list(r.reasons)} for r in recurrences],
    }


def learning_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What the templates show of it: durations in words, the effectiveness as a sentence."""
    capa = doc["capa_effectiveness"]
    days = doc["recurrence_window_s"] // 86400
    share = "—" if capa["share"] is None else f"{capa['share']}%"
    return {
        **doc,
        "window_days": days,
        "services": [{**s, "mtbf_text": format_duration(s["mtbf_s"]) if s["mtbf_s"] is not None else "—"}
                     for s in doc["repeated_services"]],
        "capa_text": (f"{share} of the CAPA done in the last 90 days held ({capa['held']} held, {capa['recurred']} "
                      f"recurred within {days} days; {capa['pending']} still in their window)"),
    }
