"""A local stand-in of the PagerDuty REST API v2, served over HTTPS.

The ``pagerduty`` client refuses a base URL that is not ``https://``, so the stand-in serves TLS with a
certificate for 127.0.0.1 and localhost issued by a throwaway ``trustme`` CA; clients trust it through
:attr:`PagerDutyStandIn.ca_pem_path` (or :meth:`PagerDutyStandIn.client_ssl_context`). Shapes follow the
REST API v2 reference: wrapped entities, classic ``limit``/``offset``/``more`` pagination, errors as
``{"error": {"message", "code", "errors"}}``, and the ``From`` header required on writes.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from incident_bot.demo.http_standin import Fault, Reply, Request, StandInServer, matches_rest_route
from incident_bot.demo.tls import ThrowawayTLS

WEB = "https://standin.pagerduty.com"
Params = dict[str, Any]  # query string and JSON body of a request, merged
Headers = dict[str, str]
Answer = tuple[int, dict[str, Any]]  # HTTP status and JSON body
Route = Callable[[Params, Headers, re.Match[str]], Answer]


class PagerDutyError(Exception):
    """An error answer; raised before any state changes so that a refused write leaves no trace."""

    def __init__(self, status: int, message: str, code: int = 2001, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.errors = status, message, code, errors or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            error["errors"] = self.errors
        return {"error": error}


class PagerDutyStandIn(StandInServer):
    """Fake PagerDuty account on ``https://127.0.0.1:PORT``.

    Accepts ``Authorization: Token token=<key>`` (or ``Bearer <key>``) with any key, or only ``api_keys`` when
    given. Calls are recorded as ``"VERB /path"`` with the query and JSON body merged in ``params``;
    :meth:`fail_next` and :meth:`calls` take ``"*"``, a path prefix (``"/incidents"``) or ``"VERB /prefix"``.
    """

    def __init__(self, api_keys: list[str] | None = None) -> None:
        super().__init__()
        self._api_keys = set(api_keys) if api_keys is not None else None
        self.tls = ThrowawayTLS("pd-standin-")
        self.ca_pem_path = self.tls.ca_pem_path
        self.users: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self._incidents: dict[str, dict[str, Any]] = {}
        self._notes: dict[str, list[dict[str, Any]]] = {}
        self._serial = 0
        listing, single = self._list, self._get
        routes: list[tuple[str, str, Route]] = [
            ("GET", r"/oncalls", self._list_oncalls),
            ("GET", r"/users", lambda q, h, m: listing(q, "users", [*self.users.values()])),
            ("GET", r"/users/([^/]+)", lambda q, h, m: single("user", self.users, m[1])),
            ("GET", r"/escalation_policies/([^/]+)",
             lambda q, h, m: single("escalation_policy", self.policies, m[1])),
            ("GET", r"/services", lambda q, h, m: listing(q, "services", [*self.services.values()])),
            ("GET", r"/services/([^/]+)", lambda q, h, m: single("service", self.services, m[1])),
            ("GET", r"/incidents", self._list_incidents),
            ("POST", r"/incidents", self._create_incident),
            ("PUT", r"/incidents", self._update_incidents),
            ("GET", r"/incidents/([^/]+)", lambda q, h, m: single("incident", self._incidents, m[1])),
            ("PUT", r"/incidents/([^/]+)", self._update_incident),
            ("GET", r"/incidents/([^/]+)/notes", self._list_notes),
            ("POST", r"/incidents/([^/]+)/notes", self._add_note),
        ]
        self._routes = [(verb, re.compile(pattern), route) for verb, pattern, route in routes]

    @property
    def url(self) -> str:
        """The ``base_url`` for ``pagerduty.RestApiV2Client`` (https, no trailing slash)."""
        return f"https://127.0.0.1:{self.port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context trusting only the stand-in's CA, for ``RestApiV2Client(..., verify=...)``."""
        return self.tls.client_context()

    # -- seed data -------------------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, email: str, time_zone: str = "UTC") -> str:
        with self._lock:
            self.users[user_id] = {
                "id": user_id, "type": "user", "name": name, "email": email, "summary": name,
                "time_zone": time_zone, "role": "user", "html_url": f"{WEB}/users/{user_id}",
                "self": f"/users/{user_id}",
            }
        return user_id

    def add_escalation_policy(
        self, policy_id: str, oncall_user_ids: list[str], levels: list[int] | None = None,
        name: str | None = None,
    ) -> str:
        """A policy whose on-call users are ``oncall_user_ids``; ``levels[i]`` is the escalation level of the
        i-th user (all level 1 by default, i.e. all primary)."""
        levels = levels or [1] * len(oncall_user_ids)
        if len(levels) != len(oncall_user_ids):
            raise ValueError("levels must give one level per on-call user")
        with self._lock:
            unknown = [u for u in oncall_user_ids if u not in self.users]
            if unknown:
                raise ValueError(f"unknown users {unknown}: add_user() first")
            oncall = list(zip(oncall_user_ids, levels, strict=True))
            rules = [{"escalation_delay_in_minutes": 30,
                      "targets": [self._user_ref(u) for u, lvl in oncall if lvl == level]}
                     for level in sorted(set(levels))]
            self.policies[policy_id] = {
                "id": policy_id, "type": "escalation_policy", "name": name or policy_id,
                "summary": name or policy_id, "escalation_rules": rules,
                "html_url": f"{WEB}/escalation_policies/{policy_id}",
                "self": f"/escalation_policies/{policy_id}",
                "_oncall": oncall,
            }
        return policy_id

    def add_service(self, service_id: str, name: str, escalation_policy_id: str) -> str:
        with self._lock:
            policy = self.policies.get(escalation_policy_id)
            if policy is None:
                raise ValueError(f"unknown escalation policy {escalation_policy_id!r}")
            self.services[service_id] = {
                "id": service_id, "type": "service", "name": name, "summary": name, "status": "active",
                "escalation_policy": self._ref(policy, "escalation_policy_reference"),
                "html_url": f"{WEB}/service-directory/{service_id}", "self": f"/services/{service_id}",
            }
        return service_id

    def seed_incident(self, incident_id: str, service_id: str, title: str, created_at: str) -> None:
        """An incident that already exists in the account (triggered by a monitor, not through this API)."""
        with self._lock:
            service = self.services[service_id]
            self._incidents[incident_id] = {
                "id": incident_id, "type": "incident", "title": title, "summary": title, "status": "triggered",
                "urgency": "high", "incident_key": incident_id.lower(), "created_at": created_at,
                "updated_at": created_at, "last_status_change_at": created_at, "resolved_at": None,
                "service": self._ref(service, "service_reference"),
                "escalation_policy": service["escalation_policy"], "assignments": [], "priority": None,
                "html_url": f"{WEB}/incidents/{incident_id}", "self": f"/incidents/{incident_id}",
            }
            self._notes[incident_id] = []

    # -- reading state back ----------------------------------------------------------------------------------

    def incidents(self) -> list[dict[str, Any]]:
        """Incidents created through the API, oldest first."""
        with self._lock:
            return self._public(list(self._incidents.values()))

    def notes(self, incident_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return self._public(self._notes.get(incident_id, []))

    # -- HTTP plumbing ---------------------------------------------------------------------------------------

    def _describe(self, request: Request) -> tuple[str, dict[str, Any]]:
        query = parse_qs(request.query, keep_blank_values=True)
        params: dict[str, Any] = {k: v if k.endswith("[]") else v[-1] for k, v in query.items()}
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body = {"_unparseable_body": request.body.decode(errors="replace")}
            params.update(body if isinstance(body, dict) else {"_body": body})
        return f"{request.verb} {request.path.rstrip('/') or '/'}", params

    def _matches(self, pattern: str, key: str) -> bool:
        return matches_rest_route(pattern, key)

    def _answer(self, request: Request, key: str, params: dict[str, Any]) -> Reply:
        try:
            self._authenticate(request.headers)
            if (wait := self._over_limit(key)) is not None:
                return _json(429, {"error": {"message": "Rate Limit Exceeded", "code": 2020}},
                             {"Retry-After": str(wait)})
            verb, _, path = key.partition(" ")
            for route_verb, pattern, route in self._routes:
                if route_verb == verb and (match := pattern.fullmatch(path)):
                    if "_unparseable_body" in params:
                        raise _invalid("Malformed JSON body")
                    with self._lock:
                        status, body = route(params, request.headers, match)
                        return _json(status, self._public(body))
            raise PagerDutyError(404, "Not Found", 2100)
        except PagerDutyError as exc:
            return _json(exc.status, exc.body())

    def _fault_reply(self, fault: Fault) -> Reply:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault.status == 429:  # PagerDuty's own rate-limit headers (ratelimit-reset: seconds to wait)
            headers.update({"ratelimit-limit": "960", "ratelimit-remaining": "0",
                            "ratelimit-reset": str(fault.retry_after or 1)})
        message = fault.error or {429: "Rate Limit Exceeded"}.get(fault.status, "Internal Server Error")
        code = 2020 if fault.status == 429 else 5000
        return _json(fault.status, {"error": {"message": message, "code": code}}, headers)

    def _authenticate(self, headers: dict[str, str]) -> None:
        header = headers.get("authorization", "")
        match = re.fullmatch(r"(?:Token token=|Bearer )(\S+)", header.strip())
        if not match or (self._api_keys is not None and match[1] not in self._api_keys):
            raise PagerDutyError(401, "Authentication failed", 2006)

    def _requester(self, headers: dict[str, str]) -> dict[str, Any]:
        """The user named by the ``From`` header, which PagerDuty requires on writes with an account key."""
        email = headers.get("from", "").strip().lower()
        user = next((u for u in self.users.values() if u["email"].lower() == email), None) if email else None
        if user is None:
            raise _invalid("Requester User Not Found")
        return user

    # -- endpoints (called with the lock held) ---------------------------------------------------------------

    def _list_oncalls(self, q: Params, h: Headers, m: re.Match[str]) -> Answer:
        policy_ids, user_ids = _list_param(q, "escalation_policy_ids"), _list_param(q, "user_ids")
        include = set(_list_param(q, "include"))
        oncalls: list[dict[str, Any]] = []
        for policy in self.policies.values():
            if policy_ids and policy["id"] not in policy_ids:
                continue
            for user_id, level in sorted(policy["_oncall"], key=lambda pair: pair[1]):
                if user_ids and user_id not in user_ids:
                    continue
                user = self.users[user_id] if "users" in include else self._user_ref(user_id)
                oncalls.append({
                    "escalation_policy": self._ref(policy, "escalation_policy_reference"),
                    "escalation_level": level, "schedule": None, "user": user, "start": None, "end": None,
                })
        return self._list(q, "oncalls", oncalls)

    def _list_incidents(self, q: Params, h: Headers, m: re.Match[str]) -> Answer:
        statuses = _list_param(q, "statuses")
        found = [i for i in self._incidents.values() if not statuses or i["status"] in statuses]
        return self._list(q, "incidents", found)

    def _create_incident(self, q: Params, h: Headers, m: re.Match[str]) -> Answer:
        self._requester(h)
        spec = q.get("incident")
        if not isinstance(spec, dict) or spec.get("type") != "incident" or not spec.get("title"):
            raise _invalid("An incident needs a type and a title")
        service = self.services.get(str((spec.get("service") or {}).get("id", "")))
        if service is None:
            raise _invalid("Service not found")
        key = spec.get("incident_key")
        if key and any(i["incident_key"] == key and i["service"]["id"] == service["id"]
                       and i["status"] != "resolved" for i in self._incidents.values()):
            raise _invalid("Open incident with matching dedup key already exists on this service")
        policy_id = (spec.get("escalation_policy") or {}).get("id") or service["escalation_policy"]["id"]
        if policy_id not in self.policies:
            raise _invalid("Escalation policy not found")
        self._serial += 1
        incident_id, now = f"Q{self._serial:013d}", _now()
        primary = [u for u, level in self.policies[policy_id]["_oncall"] if level == 1]
        incident = {
            "id": incident_id, "type": "incident", "incident_number": self._serial, "title": spec["title"],
            "summary": f"[#{self._serial}] {spec['title']}", "status": "triggered",
            "urgency": spec.get("urgency", "high"), "incident_key": key or incident_id.lower(),
            "created_at": now, "updated_at": now, "last_status_change_at": now, "resolved_at": None,
            "service": self._ref(service, "service_reference"),
            "escalation_policy": self._ref(self.policies[policy_id], "escalation_policy_reference"),
            "assignments": [{"at": now, "assignee": self._user_ref(u)} for u in primary],
            "priority": spec.get("priority"), "body": spec.get("body"),
            "html_url": f"{WEB}/incidents/{incident_id}", "self": f"/incidents/{incident_id}",
        }
        self._incidents[incident_id] = incident
        self._notes[incident_id] = []
        return 201, {"incident": incident}

    def _update_incident(self, q: Params, h: Headers, m: re.Match[str]) -> Answer:
        self._requester(h)
        incident = self._incidents.get(m[1])
        if incident is None:
            raise PagerDutyError(404, "Not Found", 2100)
        changes = q.get("incident")
        if not isinstance(changes, dict):
            raise _invalid("An incident object is required")
        self._check_update(incident, changes)
        return 200, {"incident": self._apply_update(incident, changes)}

    def _update_incidents(self, q: Params, h: Headers, m: re.Match[str]) -> Answer:
        self._requester(h)
        changes = q.get("incidents")
        if not isinstance(changes, list) or not changes:
            raise _invalid("A list of incidents is required")
        targets = []
        for change in changes:  # check every item before changing any, so a refused batch changes nothing
            incident = self._incidents.get(str(change.get("id", ""))) if isinstance(change, dict) else None
            if incident is None:
                raise PagerDutyError(404, "Not Found", 2100)
            self._check_update(incident, change)
            targets.append((incident, change))
        return 200, {"incidents": [self._apply_update(incident, change) for incident, change in targets]}

    def _list_notes(self, q: Params, h: Headers, m: re.Match[str]) -> Answer:
        incident = self._get("incident", self._incidents, m[1])[1]["incident"]
        return 200, {"notes": self._notes[incident["id"]]}

    def _add_note(self, q: Params, h: Headers, m: re.Match[str]) -> Answer:
        user = self._requester(h)
        incident = self._get("incident", self._incidents, m[1])[1]["incident"]
        content = (q.get("note") or {}).get("content") if isinstance(q.get("note"), dict) else None
        if not content:
            raise _invalid("Note content is required")
        self._serial += 1
        note = {"id": f"N{self._serial:013d}", "user": self._user_ref(user["id"]), "content": content,
                "channel": {"summary": "The PagerDuty website or APIs"}, "created_at": _now()}
        self._notes[incident["id"]].append(note)
        return 201, {"note": note}

    # -- helpers ---------------------------------------------------------------------------------------------

    def _check_update(self, incident: dict[str, Any], change: dict[str, Any]) -> None:
        status = change.get("status")
        if status is not None and status not in ("acknowledged", "resolved"):
            raise _invalid(f"Invalid status {status!r}")
        if status is not None and incident["status"] == "resolved":
            raise _invalid("Incident Already Resolved")

    def _apply_update(self, incident: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
        now = _now()
        for field in ("title", "urgency", "priority", "resolution"):
            if field in change:
                incident[field] = change[field]
        if change.get("status") and change["status"] != incident["status"]:
            incident["status"], incident["last_status_change_at"] = change["status"], now
            if change["status"] == "resolved":
                incident["resolved_at"] = now
        incident["updated_at"] = now
        return incident

    def _list(self, q: dict[str, Any], key: str, items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        """Classic pagination: ``limit`` (at most 100), ``offset``, ``more``, and ``total`` when asked for."""
        try:
            limit, offset = min(int(q.get("limit", 25)), 100), int(q.get("offset", 0))
        except (TypeError, ValueError) as exc:
            raise _invalid("limit/offset must be integers") from exc
        total = len(items) if str(q.get("total", "")).lower() == "true" else None
        return 200, {key: items[offset:offset + limit], "limit": limit, "offset": offset,
                     "more": offset + limit < len(items), "total": total}

    def _get(self, wrapper: str, table: dict[str, dict[str, Any]], entity_id: str) -> Answer:
        if entity_id not in table:
            raise PagerDutyError(404, "Not Found", 2100)
        return 200, {wrapper: table[entity_id]}

    def _public(self, value: Any) -> Any:
        """A deep copy as the API shows it: internal ``_`` keys dropped, ``self`` links made absolute."""
        if isinstance(value, list):
            return [self._public(v) for v in value]
        if value is None or isinstance(value, (str, int, float)):
            return value  # immutable: nothing to copy (a page of history is ~10,000 of them)
        if not isinstance(value, dict):
            return copy.deepcopy(value)
        base = f"https://127.0.0.1:{self._port}" if self._port else "https://127.0.0.1"
        return {k: base + v if k == "self" and isinstance(v, str) and v.startswith("/") else self._public(v)
                for k, v in value.items() if not k.startswith("_")}

    def _user_ref(self, user_id: str) -> dict[str, Any]:
        return self._ref(self.users[user_id], "user_reference")

    @staticmethod
    def _ref(entity: dict[str, Any], kind: str) -> dict[str, Any]:
        return {"id": entity["id"], "type": kind, "summary": entity["summary"], "self": entity["self"],
                "html_url": entity["html_url"]}


def _invalid(*errors: str) -> PagerDutyError:
    return PagerDutyError(400, "Invalid Input Provided", 2001, list(errors))


def _list_param(q: dict[str, Any], name: str) -> list[str]:
    """A list filter, sent as ``name[]=a&name[]=b`` (PagerDuty's form) or ``name=a``."""
    value = q.get(f"{name}[]", q.get(name))
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    """Every PagerDuty answer carries an ``X-Request-Id``, which the client quotes in its error reports."""
    return Reply(status, json.dumps(body).encode(), {"X-Request-Id": uuid.uuid4().hex, **(headers or {})})
