"""Reading PagerDuty's history for ``incident-bot backfill pagerduty``: incidents, log entries, analytics.

- ``GET /incidents`` and account-wide ``GET /log_entries`` through the client's ``iter_history``, which
  bisects a window whose total is over the 10,000 offset limit of classic pagination (one ``total``
  request per window, then pages of 100). Account-wide log entries cost ~100 entries a request, against
  one request per incident for ``/incidents/{id}/log_entries``.
- Every HTTP call is paced under PagerDuty's 960 requests/minute (a token bucket, no burst) and a 429 is
  retried a bounded number of times after ``ratelimit-reset`` (else ``Retry-After``, else a backoff). The
  client's own 429 loop (unbounded by default) is capped at one retry.
- Each log entry becomes the webhook v3 delivery a live subscription would have sent for it
  (:func:`to_delivery`), so history goes through the same parser and fold as live deliveries. Event ids
  are derived from PagerDuty's ids (``import:<log entry id>``): a re-run stores nothing twice.
- :class:`RestHistory` is what the backfill use case reads (its ``History`` and ``Analytics``): the
  entry point builds it and passes it in.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pagerduty

from incident_bot.usecases.backfill import Delivery
from incident_bot.usecases.backfill_verify import Reported

log = logging.getLogger(__name__)
MAX_PER_MINUTE = 960  # PagerDuty's REST API limit per API key

# log entry type -> webhook v3 event type. Entries of other types (notify, snooze, ...) are not imported.
EVENT_TYPES = {
    "trigger_log_entry": "incident.triggered",
    "acknowledge_log_entry": "incident.acknowledged",
    "unacknowledge_log_entry": "incident.unacknowledged",
    "resolve_log_entry": "incident.resolved",
    "reopen_log_entry": "incident.reopened",
    "escalate_log_entry": "incident.escalated",
    "assign_log_entry": "incident.reassigned",
    "annotate_log_entry": "incident.annotated",
    "priority_change_log_entry": "incident.priority_updated",
}


class RateLimitExhausted(pagerduty.Error):
    """PagerDuty kept answering 429 after the bounded retries."""


@dataclass
class Stats:
    requests: int = 0
    throttled: int = 0  # 429 answers seen
    waited_s: float = 0.0  # time spent waiting on 429s


class Pacer:
    """Wraps the client's HTTP layer: paces every request under ``per_minute`` and retries a 429 after
    PagerDuty's ``ratelimit-reset`` seconds, at most ``max_429`` times in a row."""

    def __init__(self, inner: Any, *, per_minute: float, max_429: int, stats: Stats,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner, self.per_minute, self.max_429, self.stats = inner, per_minute, max_429, stats
        self.sleep, self.clock = sleep, clock
        self._lock = threading.Lock()
        self._next = clock()

    def _pace(self) -> None:
        with self._lock:
            now = self.clock()
            wait = self._next - now
            self._next = max(now, self._next) + 60.0 / self.per_minute
        if wait > 0:
            self.sleep(wait)

    def request(self, method: str, url: str, **kw: Any) -> Any:
        for attempt in range(self.max_429 + 1):
            self._pace()
            self.stats.requests += 1
            response = self.inner.request(method, url, **kw)
            if response.status_code != 429:
                return response
            self.stats.throttled += 1
            if attempt == self.max_429:
                break
            wait = _reset_seconds(response.headers) or min(60.0, 2.0 ** attempt)
            log.warning("PagerDuty rate limit (429) on %s %s: waiting %.1f s (ratelimit-reset)", method, url, wait)
            self.stats.waited_s += wait
            self.sleep(wait)
        raise RateLimitExhausted(f"PagerDuty answered 429 {self.max_429 + 1} times in a row on {method} {url}")


def _reset_seconds(headers: Any) -> float | None:
    for name in ("ratelimit-reset", "retry-after"):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, min(float(value), 300.0))
            except ValueError:
                continue
    return None


def make_client(api_token: str, api_url: str, *, ca_bundle: str | None = None, per_minute: float = 900,
                max_429: int = 5, stats: Stats | None = None, sleep: Callable[[float], None] = time.sleep,
                limit: float = MAX_PER_MINUTE) -> tuple[pagerduty.RestApiV2Client, Stats]:
    kwargs: dict[str, Any] = {}
    if ca_bundle:
        kwargs["verify"] = ssl.create_default_context(cafile=ca_bundle)
    client = pagerduty.RestApiV2Client(api_token, base_url=api_url, **kwargs)
    stats = stats or Stats()
    client.parent = Pacer(client.parent, per_minute=min(per_minute, limit), max_429=max_429,  # type: ignore[assignment]
                          stats=stats, sleep=sleep)
    client.retry[429] = 1  # our Pacer retries 429s; the client's own loop is unbounded by default
    client.max_http_attempts = 3
    client.timeout = 30.0
    return client, stats


def iter_incidents(client: Any, since: datetime, until: datetime, services: list[str]) -> Iterator[dict[str, Any]]:
    params: dict[str, Any] = {"sort_by": "created_at:asc"}
    if services:
        params["service_ids[]"] = services
    yield from client.iter_history("/incidents", since, until, params=params)


def iter_log_entries(client: Any, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    yield from client.iter_history("/log_entries", since, until, params={"is_overview": "false"})


def iter_analytics(client: Any, since: datetime, until: datetime, services: list[str]) -> Iterator[dict[str, Any]]:
    filters: dict[str, Any] = {"created_at_start": since.isoformat(), "created_at_end": until.isoformat()}
    if services:
        filters["service_ids"] = services
    yield from client.iter_analytics_raw_incidents(filters, order="asc", limit=1000)


def trigger_delivery(incident: dict[str, Any]) -> dict[str, Any]:
    """The ``incident.triggered`` delivery of an incident, at its ``created_at``."""
    return {"event": {"id": f"import:trigger:{incident['id']}", "event_type": "incident.triggered",
                      "resource_type": "incident", "occurred_at": incident["created_at"], "agent": None,
                      "client": None, "data": incident_data(incident, status="triggered")}}


def incident_data(incident: dict[str, Any], *, status: str | None = None) -> dict[str, Any]:
    data = {k: incident.get(k) for k in ("id", "html_url", "title", "created_at", "service", "escalation_policy",
                                        "priority", "urgency", "incident_key", "self")}
    data.update(type="incident", number=incident.get("incident_number"), status=status or incident.get("status"))
    return data


def to_delivery(entry: dict[str, Any], incident: dict[str, Any] | None) -> dict[str, Any] | None:
    """A log entry as the webhook v3 delivery PagerDuty sends for it; None for types we do not import.

    ``incident``: the full incident when known (from ``GET /incidents``), else the entry's reference."""
    event_type = EVENT_TYPES.get(str(entry.get("type")))
    ref = entry.get("incident") or {}
    if event_type is None or not ref.get("id"):
        return None
    agent = entry.get("agent") if isinstance(entry.get("agent"), dict) else None
    if agent is not None and agent.get("type") not in ("user_reference", "user"):
        agent = None  # the service or an integration acted: no person to name
    data: dict[str, Any]
    if event_type == "incident.annotated":
        channel = entry.get("channel") if isinstance(entry.get("channel"), dict) else {}
        data = {"type": "incident_note", "id": entry["id"], "incident": ref,
                "content": channel.get("summary") or entry.get("summary") or ""}
    elif incident is not None:
        data = incident_data(incident, status=_status_after(event_type, incident))
        if event_type == "incident.escalated" and isinstance(entry.get("assigned_user"), dict):
            data["assignees"] = [entry["assigned_user"]]
    else:
        data = {"type": "incident_reference", "id": ref["id"], "title": ref.get("summary") or ref["id"],
                "html_url": ref.get("html_url")}
    return {"event": {"id": f"import:{entry['id']}", "event_type": event_type, "resource_type": "incident",
                      "occurred_at": entry.get("created_at"), "agent": agent, "client": None, "data": data}}


def _status_after(event_type: str, incident: dict[str, Any]) -> str | None:
    return {"incident.acknowledged": "acknowledged", "incident.resolved": "resolved",
            "incident.reopened": "triggered", "incident.unacknowledged": "triggered"}.get(event_type)


class RestHistory:
    """PagerDuty's history through the REST API, as the backfill use case reads it
    (``usecases.backfill.History``, ``usecases.backfill_verify.Analytics``)."""

    def __init__(self, client: Any, stats: Stats) -> None:
        self.client, self.stats = client, stats

    def window(self, since: datetime, until: datetime, services: list[str], *, entries_until: datetime,
               wanted: Callable[[str], bool]) -> Iterator[Delivery]:
        incidents: dict[str, dict[str, Any]] = {}  # what a log entry's delivery needs of the window's incidents
        for inc in iter_incidents(self.client, since, until, services):
            incidents[inc["id"]] = _slim(inc)
            yield _delivery(trigger_delivery(inc), inc["id"], opens=True)
        for entry in iter_log_entries(self.client, since, entries_until):
            ref = (entry.get("incident") or {}).get("id")
            if entry.get("type") == "trigger_log_entry" or entry.get("type") not in EVENT_TYPES or not ref:
                continue
            if services and ((entry.get("service") or {}).get("id")) not in services:
                continue
            if ref not in incidents and not wanted(ref):
                continue
            delivery = to_delivery(entry, incidents.get(ref))
            if delivery is not None:
                yield _delivery(delivery, ref, opens=False)

    def reported(self, since: datetime, until: datetime, services: list[str]) -> Iterator[Reported]:
        for row in iter_analytics(self.client, since, until, services):
            yield Reported(row["id"], _secs(row.get("seconds_to_first_ack")), _secs(row.get("seconds_to_resolve")))


def _slim(inc: dict[str, Any]) -> dict[str, Any]:
    """What a delivery needs of an incident (a window of them stays in memory)."""
    return {k: inc.get(k) for k in ("id", "html_url", "title", "created_at", "service", "escalation_policy",
                                   "priority", "urgency", "incident_key", "self", "incident_number", "status")}


def _delivery(doc: dict[str, Any], subject: str, *, opens: bool) -> Delivery:
    ev = doc["event"]
    return Delivery(event_id=ev["id"], event_type=ev["event_type"], pagerduty_incident_id=subject,
                    payload=json.dumps(doc, separators=(",", ":")), opens=opens)


def _secs(value: Any) -> int | None:
    return None if value is None else int(float(value))
