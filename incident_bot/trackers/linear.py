"""Linear over its GraphQL API with ``httpx`` (one POST per operation; ``gql`` would add a dependency for
nothing we use). Markdown descriptions.

Key: the issue's id (a UUID, stable when the issue moves team); the URL is Linear's. State: the
workflow state's type: completed -> done, canceled -> wont_do, started -> in_progress, else open.
Priority: 2 high, 3 medium, 4 low. Labels ``incident:INC-n`` / ``capa:<type>`` are found or created in
the team. Owners: ``users(filter: {email: {eq}})``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from incident_bot.config import Settings
from incident_bot.trackers.base import (
    UNSET,
    Http,
    Ticket,
    TicketSpec,
    TrackerError,
    TrackerRateLimited,
    carries_marker,
    marker,
    marker_id,
    parse_day,
    parse_time,
    retry_after_from,
)

PRIORITY = {"high": 2, "medium": 3, "low": 4}
STATE_TYPE = {"completed": "done", "canceled": "wont_do", "started": "in_progress"}
# Our status -> the workflow state types that already say it (the first is the one we move a ticket to).
WANT_TYPES = {"done": ("completed",), "wont_do": ("canceled",), "in_progress": ("started",),
              "open": ("unstarted", "backlog", "triage")}
ISSUE = "id identifier url updatedAt dueDate description state { id type name }"
FRESH_MS = 60_000  # Linear's advice: refuse a webhook whose webhookTimestamp is over a minute old
AUTH_CODES = ("AUTHENTICATION_ERROR", "FORBIDDEN")


class LinearTracker:
    name = "Linear"
    search_settle = 0.0  # issues(filter:) reads the database: a new issue is found at once

    def __init__(self, settings: Settings) -> None:
        assert settings.linear_api_key and settings.linear_team_id
        self.team = settings.linear_team_id
        self.http = Http("Linear", settings.linear_api_url, {"Authorization": settings.linear_api_key,
                                                             "Content-Type": "application/json",
                                                             "User-Agent": "incident-bot"},
                         credential="LINEAR_API_KEY", ca_bundle=settings.tracker_ca_bundle,
                         timeout=settings.tracker_timeout)
        self._labels: dict[str, str] = {}
        self._states: dict[str, str] | None = None

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        """One GraphQL operation. Linear says most failures in the body, whatever the HTTP status: a rate
        limit is HTTP 400 with ``extensions.code`` RATELIMITED (not 429), a bad key AUTHENTICATION_ERROR."""
        resp = self.http.send("POST", "", json={"query": query, "variables": variables})
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if errors:
            err = errors[0] if isinstance(errors[0], dict) else {}
            code = str((err.get("extensions") or {}).get("code") or "").upper()
            message = str(err.get("message") or "")[:300]
            if code == "RATELIMITED":
                raise TrackerRateLimited(f"Linear rate limit: {message}", status=resp.status_code,
                                         retry_after=retry_after_from(resp.headers) or 60.0)
            if code in AUTH_CODES or resp.status_code in (401, 403):
                raise self.http.refused(f"{code or resp.status_code}: {message}", resp.status_code)
            if resp.status_code >= 500:
                raise TrackerError(f"Linear HTTP {resp.status_code}: {message}", status=resp.status_code)
            raise TrackerError(f"Linear: {message} ({code or 'error'})", status=400)
        if resp.status_code >= 400 or not isinstance(doc, dict):
            raise self.http.error(resp, "POST", "graphql")
        return doc.get("data") or {}

    def ticket(self, issue: dict[str, Any], actor: str | None = None) -> Ticket:
        state = STATE_TYPE.get(str((issue.get("state") or {}).get("type") or ""), "open")
        return Ticket(key=issue["id"], url=issue.get("url"), state=state, updated_at=parse_time(issue.get("updatedAt")),
                      due=parse_day(issue.get("dueDate")), actor=actor, action_id=marker_id(issue.get("description")))

    def find_user(self, email: str) -> str | None:
        users = self.gql("query($e: String!) { users(filter: {email: {eq: $e}}) { nodes { id active } } }", e=email)
        nodes = [n for n in users["users"]["nodes"] if n.get("active", True)]
        return nodes[0]["id"] if len(nodes) == 1 else None

    def find_ticket(self, spec: TicketSpec) -> Ticket | None:
        found = self.gql(f"query($t: ID!, $m: String!) {{ issues(first: 50, filter: {{team: {{id: {{eq: $t}}}}, "
                         f"description: {{contains: $m}}}}) {{ nodes {{ {ISSUE} }} }} }}",
                         t=self.team, m=marker(spec.action_id))
        # "contains capa=1" also matches capa=12: the whole number decides.
        mine = [n for n in found["issues"]["nodes"] if carries_marker(n.get("description"), spec.action_id)]
        return self.ticket(mine[0]) if mine else None

    def _label(self, name: str) -> str:
        if name not in self._labels:
            found = self.gql("query($n: String!) { issueLabels(filter: {name: {eq: $n}}) "
                             "{ nodes { id team { id } } } }", n=name)
            # A workspace label (no team) or our team's; another team's label cannot go on our issues.
            usable = [n for n in found["issueLabels"]["nodes"] if (n.get("team") or {}).get("id") in (None, self.team)]
            if usable:
                self._labels[name] = usable[0]["id"]
            else:
                made = self.gql("mutation($i: IssueLabelCreateInput!) { issueLabelCreate(input: $i) "
                                "{ success issueLabel { id } } }", i={"name": name, "teamId": self.team})
                self._labels[name] = made["issueLabelCreate"]["issueLabel"]["id"]
        return self._labels[name]

    def _state_id(self, status: str) -> str | None:
        """The team's first workflow state (by position) of the type our status maps to."""
        if self._states is None:
            found = self.gql("query($t: String!) { team(id: $t) { states { nodes { id type position } } } }",
                             t=self.team)
            states = sorted(found["team"]["states"]["nodes"], key=lambda state: state.get("position", 0))
            self._states = {}
            for st in states:
                self._states.setdefault(st["type"], st["id"])
        for kind in WANT_TYPES[status]:
            if kind in self._states:
                return self._states[kind]
        return None

    def _input(self, spec: TicketSpec, current_type: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"title": spec.title, "description": spec.markdown(),
                                  "priority": PRIORITY[spec.priority], "assigneeId": spec.assignee,
                                  "dueDate": spec.due.isoformat() if spec.due else None}
        # Move the ticket only when its state says something else: "In Review" stays, it is started too.
        if current_type not in WANT_TYPES[spec.status] and (state := self._state_id(spec.status)):
            fields["stateId"] = state
        return fields

    def create(self, spec: TicketSpec) -> Ticket:
        fields = self._input(spec, None) | {"teamId": self.team, "labelIds": [self._label(n) for n in spec.labels]}
        made = self.gql(f"mutation($i: IssueCreateInput!) {{ issueCreate(input: $i) "
                        f"{{ success issue {{ {ISSUE} }} }} }}", i=fields)
        return self.ticket(made["issueCreate"]["issue"])

    def update(self, key: str, spec: TicketSpec) -> Ticket:
        current = self.gql("query($id: String!) { issue(id: $id) { state { type } } }", id=key)
        kind = str(((current.get("issue") or {}).get("state") or {}).get("type") or "")
        made = self.gql(f"mutation($id: String!, $i: IssueUpdateInput!) {{ issueUpdate(id: $id, input: $i) "
                        f"{{ success issue {{ {ISSUE} }} }} }}", id=key, i=self._input(spec, kind))
        return self.ticket(made["issueUpdate"]["issue"])

    def fetch(self, keys: list[str]) -> list[Ticket]:
        found: list[Ticket] = []
        for i in range(0, len(keys), 50):
            page = self.gql(f"query($ids: [ID!]) {{ issues(first: 50, filter: {{id: {{in: $ids}}}}) "
                            f"{{ nodes {{ {ISSUE} }} }} }}", ids=keys[i:i + 50])
            found += [self.ticket(n) for n in page["issues"]["nodes"]]
        return found


# -- webhooks ---------------------------------------------------------------------------------------

def verify(body: bytes, headers: Any, query: Any, settings: Settings, now_ms: float | None = None) -> bool:
    """``Linear-Signature``: hex HMAC-SHA256 of the raw body; and ``webhookTimestamp`` under a minute old
    (a captured delivery replayed later is refused)."""
    sig = headers.get("linear-signature") or ""
    expected = hmac.new((settings.linear_webhook_secret or "").encode(), body, hashlib.sha256).hexdigest()
    if not (sig.isascii() and hmac.compare_digest(expected.encode(), sig.encode())):
        return False
    try:
        stamp = float(json.loads(body).get("webhookTimestamp"))
    except (ValueError, TypeError, AttributeError):
        return False
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    return abs(now_ms - stamp) <= FRESH_MS


def event_id(headers: Any, doc: dict[str, Any]) -> str | None:
    if headers.get("linear-delivery"):
        return str(headers.get("linear-delivery"))
    return f"{doc['webhookId']}:{doc.get('webhookTimestamp')}" if doc.get("webhookId") else None


def wanted(headers: Any, doc: dict[str, Any], settings: Settings) -> str | None:
    if doc.get("type") != "Issue" or doc.get("action") != "update":
        return None
    data = doc.get("data") or {}
    if data.get("teamId") not in (None, settings.linear_team_id):
        return None
    changed = set((doc.get("updatedFrom") or {}).keys())
    return "issue.update" if not changed or changed & {"stateId", "dueDate", "completedAt", "canceledAt"} else None


def parse(payload: str, settings: Settings) -> Ticket:
    doc = json.loads(payload)
    data = doc["data"]
    state = STATE_TYPE.get(str((data.get("state") or {}).get("type") or ""), "open")
    return Ticket(key=data["id"], url=doc.get("url") or data.get("url"), state=state,
                  updated_at=parse_time(data.get("updatedAt")),
                  due=parse_day(data.get("dueDate")) if "dueDate" in data else UNSET,
                  actor=(doc.get("actor") or {}).get("name"), action_id=marker_id(data.get("description")))
