"""PagerDuty's history for the REST stand-in: incidents, log entries and raw analytics, as a backfill reads them.

:func:`make_history` builds a deterministic account history (tens of thousands of incidents are fine);
:meth:`History.attach` serves it from a :class:`~incident_bot.demo.pagerduty_standin.PagerDutyStandIn`:

- ``GET /incidents`` with ``since``/``until`` (on ``created_at``), ``service_ids[]``, ``total=true`` and
  classic pagination, refusing ``offset + limit > 10000`` as PagerDuty does;
- ``GET /log_entries`` (account-wide, newest first, ``since``/``until`` on the entry's time) and
  ``GET /incidents/{id}/log_entries``;
- ``POST /analytics/raw/incidents`` (``seconds_to_first_ack``, ``seconds_to_resolve``, cursor pagination
  with ``starting_after``/``last``/``more``), computed from the log entries as PagerDuty documents them.

Kept sorted in memory with bisect lookups, so a page costs a slice, not a scan.
"""

from __future__ import annotations

import bisect
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dateutil import parser as dtparser

ITERATION_LIMIT = 10_000
WEB = "https://standin.pagerduty.com"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class History:
    incidents: list[dict[str, Any]] = field(default_factory=list)  # sorted by created_at
    entries: list[dict[str, Any]] = field(default_factory=list)  # sorted by created_at
    _inc_keys: list[str] = field(default_factory=list)
    _entry_keys: list[str] = field(default_factory=list)
    _by_incident: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def index(self) -> History:
        self.incidents.sort(key=lambda i: (i["created_at"], i["id"]))
        self.entries.sort(key=lambda e: (e["created_at"], e["id"]))
        self._inc_keys = [i["created_at"] for i in self.incidents]
        self._entry_keys = [e["created_at"] for e in self.entries]
        self._by_incident = {}
        for e in self.entries:
            self._by_incident.setdefault(e["incident"]["id"], []).append(e)
        return self

    def attach(self, standin: Any) -> None:
        """Serve this history (before the stand-in's own incident routes)."""
        self.index()
        routes = [
            ("GET", r"/incidents", self._list_incidents),
            ("GET", r"/log_entries", self._list_entries),
            ("GET", r"/incidents/([^/]+)/log_entries", self._incident_entries),
            ("POST", r"/analytics/raw/incidents", self._analytics),
        ]
        standin._routes[:0] = [(verb, re.compile(p), route) for verb, p, route in routes]

    # -- independent computations for tests ---------------------------------------------------------------
    def analytics(self, incident_id: str) -> dict[str, Any]:
        inc = next(i for i in self.incidents if i["id"] == incident_id)
        return self._analytics_row(inc)

    def _analytics_row(self, inc: dict[str, Any]) -> dict[str, Any]:
        created = dtparser.isoparse(inc["created_at"])
        acks = [e for e in self._by_incident.get(inc["id"], []) if e["type"] == "acknowledge_log_entry"]
        resolves = [e for e in self._by_incident.get(inc["id"], []) if e["type"] == "resolve_log_entry"]
        first_ack = (dtparser.isoparse(acks[0]["created_at"]) - created).total_seconds() if acks else None
        # PagerDuty: time from creation to the (last) resolution.
        resolved = (dtparser.isoparse(resolves[-1]["created_at"]) - created).total_seconds() if resolves else None
        return {"id": inc["id"], "created_at": inc["created_at"], "service_id": inc["service"]["id"],
                "service_name": inc["service"]["summary"], "seconds_to_first_ack": first_ack,
                "seconds_to_resolve": resolved, "incident_number": inc["incident_number"],
                "urgency": inc["urgency"], "priority_name": (inc.get("priority") or {}).get("summary")}

    # -- routes (called with the stand-in's lock held) -----------------------------------------------------
    def _window(self, q: dict[str, Any], keys: list[str]) -> tuple[int, int]:
        lo = bisect.bisect_left(keys, _iso(dtparser.isoparse(q["since"]))) if q.get("since") else 0
        hi = bisect.bisect_left(keys, _iso(dtparser.isoparse(q["until"]))) if q.get("until") else len(keys)
        return lo, hi

    def _page(self, q: dict[str, Any], key: str, items: Any, count: int) -> tuple[int, dict[str, Any]]:
        from incident_bot.demo.pagerduty_standin import PagerDutyError

        limit, offset = min(int(q.get("limit", 25)), 100), int(q.get("offset", 0))
        if offset + limit > ITERATION_LIMIT:
            raise PagerDutyError(400, "Invalid Input Provided", 2001,
                                 [f"Offset must be less than {ITERATION_LIMIT - limit + 1}."])
        total = count if str(q.get("total", "")).lower() == "true" else None
        return 200, {key: items(offset, limit), "limit": limit, "offset": offset,
                     "more": offset + limit < count, "total": total}

    def _list_incidents(self, q: dict[str, Any], h: dict[str, str], m: re.Match[str]) -> tuple[int, dict[str, Any]]:
        lo, hi = self._window(q, self._inc_keys)
        services = q.get("service_ids[]") or []
        if services:
            found = [i for i in self.incidents[lo:hi] if i["service"]["id"] in services]
            return self._page(q, "incidents", lambda o, n: found[o:o + n], len(found))
        return self._page(q, "incidents", lambda o, n: self.incidents[lo + o:min(hi, lo + o + n)], hi - lo)

    def _list_entries(self, q: dict[str, Any], h: dict[str, str], m: re.Match[str]) -> tuple[int, dict[str, Any]]:
        lo, hi = self._window(q, self._entry_keys)
        # Newest first, as PagerDuty lists them.
        return self._page(q, "log_entries",
                          lambda o, n: self.entries[max(lo, hi - o - n):hi - o][::-1], hi - lo)

    def _incident_entries(self, q: dict[str, Any], h: dict[str, str], m: re.Match[str]) -> tuple[int, dict[str, Any]]:
        found = self._by_incident.get(m[1], [])[::-1]
        return self._page(q, "log_entries", lambda o, n: found[o:o + n], len(found))

    def _analytics(self, q: dict[str, Any], h: dict[str, str], m: re.Match[str]) -> tuple[int, dict[str, Any]]:
        filters = q.get("filters") or {}
        lo, hi = self._window({"since": filters.get("created_at_start"), "until": filters.get("created_at_end")},
                              self._inc_keys)
        services = filters.get("service_ids") or []
        limit = min(int(q.get("limit", 100)), 1000)
        start = lo
        if q.get("starting_after"):
            start = next((lo + k + 1 for k, i in enumerate(self.incidents[lo:hi]) if i["id"] == q["starting_after"]),
                         hi)
        rows: list[dict[str, Any]] = []
        k = start
        while k < hi and len(rows) < limit:
            inc = self.incidents[k]
            k += 1
            if not services or inc["service"]["id"] in services:
                rows.append(self._analytics_row(inc))
        return 200, {"data": rows, "more": k < hi, "last": rows[-1]["id"] if rows else None, "limit": limit}


def _ref(kind: str, ident: str, summary: str, path: str) -> dict[str, Any]:
    return {"id": ident, "type": kind, "summary": summary, "self": f"https://api.pagerduty.com/{path}/{ident}",
            "html_url": f"{WEB}/{path}/{ident}"}


def make_history(n: int, *, since: datetime, until: datetime, services: int = 8, seed: int = 7) -> History:
    """``n`` resolved incidents spread over [since, until), each with trigger, usually an acknowledgement,
    sometimes an escalation, a note or a priority change, and a resolve. Deterministic for a seed.
"""
    rnd = random.Random(seed)
    span = (until - since).total_seconds()
    svc = [(f"PSVC{k:03d}", f"service-{k}") for k in range(services)]
    users = [(f"PUSR{k:03d}", f"Responder {k}") for k in range(12)]
    h = History()
    serial = 0
    for _ in range(n):
        created = since + timedelta(seconds=int(rnd.random() * (span - 7200)))
        service = svc[rnd.randrange(services)]
        serial += 1  # noqa: SIM113 (log entries take numbers from the same series)
        pd_id = f"P{serial:012d}"
        prio = rnd.choice(["P1", "P2", "P3", "P4", None])
        tta = rnd.randint(20, 1800) if rnd.random() < 0.85 else None
        ttr = (tta or 0) + rnd.randint(60, 5400)
        resolved = created + timedelta(seconds=ttr)
        inc = {
            "id": pd_id, "type": "incident", "incident_number": serial, "title": f"Alert {serial} on {service[1]}",
            "summary": f"[#{serial}] Alert {serial} on {service[1]}", "status": "resolved", "urgency":
                rnd.choice(["high", "low"]), "created_at": _iso(created), "resolved_at": _iso(resolved),
            "service": _ref("service_reference", service[0], service[1], "services"),
            "escalation_policy": _ref("escalation_policy_reference", "PEP0001", "Default", "escalation_policies"),
            "priority": None if prio is None else {"id": f"PPRI{prio}", "type": "priority", "summary": prio,
                                                   "name": prio},
            "html_url": f"{WEB}/incidents/{pd_id}", "self": f"https://api.pagerduty.com/incidents/{pd_id}",
            "incident_key": f"key-{pd_id}",
        }
        h.incidents.append(inc)
        ref = {"id": pd_id, "type": "incident_reference", "summary": inc["summary"],
               "html_url": inc["html_url"], "self": inc["self"]}

        def entry(kind: str, at: datetime, user: tuple[str, str] | None, svc_: tuple[str, str] = service,
                  ref_: dict[str, Any] = ref, inc_: dict[str, Any] = inc, **extra: Any) -> None:
            nonlocal serial
            serial += 1
            agent = _ref("user_reference", user[0], user[1], "users") if user else {
                "id": svc_[0], "type": "service_reference", "summary": svc_[1]}
            h.entries.append({"id": f"R{serial:012d}", "type": kind, "created_at": _iso(at), "agent": agent,
                              "incident": ref_, "service": inc_["service"], "summary": kind, **extra})

        entry("trigger_log_entry", created, None)
        responder = users[rnd.randrange(len(users))]
        if tta is not None and rnd.random() < 0.2:
            entry("escalate_log_entry", created + timedelta(seconds=max(1, tta // 2)), None,
                  assigned_user=_ref("user_reference", responder[0], responder[1], "users"))
        if tta is not None:
            entry("acknowledge_log_entry", created + timedelta(seconds=tta), responder)
        if rnd.random() < 0.3:
            entry("annotate_log_entry", created + timedelta(seconds=(tta or 0) + 30), responder,
                  channel={"type": "note", "summary": f"Looking at {service[1]} dashboards"})
        entry("resolve_log_entry", resolved, responder)
    return h.index()
