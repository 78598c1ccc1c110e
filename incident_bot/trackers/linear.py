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
    marker,
    marker_id,
    parse_day,
    parse_time,
)

PRIORITY = {"high": 2, "medium": 3, "low": 4}
STATE_TYPE = {"completed": "done", "canceled": "wont_do", "started": "in_progress"}
WANT_TYPE = {"done": "completed", "wont_do": "canceled", "in_progress": "started", "open": "unstarted"}
ISSUE = "id identifier url updatedAt dueDate description state { type name }"
FRESH_MS = 60_000  # Linear's advice: refuse a webhook whose webhookTimestamp is over a minute old


class LinearTracker:
    name = "Linear"

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
        doc = self.http.request("POST", "", json={"query": query, "variables": variables})
        if doc.get("errors"):
            err = doc["errors"][0]
            code = str((err.get("extensions") or {}).get("code") or "")
            if code == "RATELIMITED":
                from incident_bot.trackers.base import TrackerRateLimited

                raise TrackerRateLimited(f"Linear rate limit: {err.get('message')}", status=429, retry_after=60.0)
            raise TrackerError(f"Linear: {err.get('message')}", status=400)
        return doc.get("data") or {}

    def ticket(self, issue: dict[str, Any], actor: str | None = None) -> Ticket:
        state = STATE_TYPE.get(str((issue.get("state") or {}).get("type") or ""), "open")
        return Ticket(key=issue["id"], url=issue.get("url"), state=state, updated_at=parse_time(issue.get("updatedAt")),
                      due=parse_day(issue.get("dueDate")), actor=actor, action_id=marker_id(issue.get("description")))

    def find_user(self, email: str) -> str | None:
        users = self.gql("query($e: String!) { users(filter: {email: {eq: $e}}) { nodes { id } } }", e=email)
        nodes = users["users"]["nodes"]
        return nodes[0]["id"] if len(nodes) == 1 else None

    def find_ticket(self, spec: TicketSpec) -> Ticket | None:
        found = self.gql(f"query($t: ID!, $m: String!) {{ issues(filter: {{team: {{id: {{eq: $t}}}}, "
                         f"description: {{contains: $m}}}}) {{ nodes {{ {ISSUE} }} }} }}",
                         t=self.team, m=marker(spec.action_id))
        nodes = found["issues"]["nodes"]
        return self.ticket(nodes[0]) if nodes else None

    def _label(self, name: str) -> str:
        if name not in self._labels:
            found = self.gql("query($n: String!) { issueLabels(filter: {name: {eq: $n}}) { nodes { id } } }", n=name)
            nodes = found["issueLabels"]["nodes"]
            if nodes:
                self._labels[name] = nodes[0]["id"]
            else:
                made = self.gql("mutation($i: IssueLabelCreateInput!) { issueLabelCreate(input: $i) "
                                "{ issueLabel { id } } }", i={"name": name, "teamId": self.team})
                self._labels[name] = made["issueLabelCreate"]["issueLabel"]["id"]
        return self._labels[name]

    def _state(self, status: str) -> str | None:
        if self._states is None:
            found = self.gql("query($t: String!) { team(id: $t) { states { nodes { id type position } } } }",
                             t=self.team)
            states = sorted(found["team"]["states"]["nodes"], key=lambda s: s.get("position", 0))
            self._states = {}
            for s in states:
                self._states.setdefault(s["type"], s["id"])
        return self._states.get(WANT_TYPE[status]) or (self._states.get("backlog") if status == "open" else None)

    def _input(self, spec: TicketSpec) -> dict[str, Any]:
        fields: dict[str, Any] = {"title": spec.title, "description": spec.markdown(),
                                  "priority": PRIORITY[spec.priority], "assigneeId": spec.assignee,
                                  "dueDate": spec.due.isoformat() if spec.due else None}
        state = self._state(spec.status)
        if state:
            fields["stateId"] = state
        return fields

    def create(self, spec: TicketSpec) -> Ticket:
        fields = self._input(spec) | {"teamId": self.team, "labelIds": [self._label(n) for n in spec.labels]}
        made = self.gql(f"mutation($i: IssueCreateInput!) {{ issueCreate(input: $i) {{ issue {{ {ISSUE} }} }} }}",
                        i=fields)
        return self.ticket(made["issueCreate"]["issue"])

    def update(self, key: str, spec: TicketSpec) -> Ticket:
        made = self.gql(f"mutation($id: String!, $i: IssueUpdateInput!) {{ issueUpdate(id: $id, input: $i) "
                        f"{{ issue {{ {ISSUE} }} }} }}", id=key, i=self._input(spec))
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
