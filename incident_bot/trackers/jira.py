"""Jira Cloud over REST v3 with a small ``httpx`` client: descriptions in Atlassian Document Format (the
common Python clients still post v2 wiki-markup bodies).

Key: the issue key (``OPS-7``). State: JIRA_DONE_STATUSES when set (names, case-insensitive), else the
status category: "done" -> done, "indeterminate" -> in_progress, "new" -> open; a done status whose
resolution is "Won't Do"/"Won't Fix"/"Cancelled" -> wont_do. Status changes go through transitions:
the first transition whose target is in the wanted category. Owners: ``/user/search?query=<email>``
(active Atlassian accounts only: apps and customers are never assignees).

Reading back: ``POST /rest/api/3/issue/bulkfetch`` by key (read-after-write consistent) for the reconcile;
``POST /rest/api/3/search/jql`` (the old ``/search`` is gone) only to find a ticket whose key we never
learnt. That search is eventually consistent (Atlassian: "a few seconds to minutes" before a new issue
shows), so a create that may have reached Jira waits ``JIRA_SEARCH_SETTLE`` seconds after its lost answer
before it concludes that no ticket exists (:attr:`JiraTracker.search_settle`, used by the create job).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from incident_bot.config import Settings
from incident_bot.trackers.base import (
    UNSET,
    Http,
    Ticket,
    TicketSpec,
    carries_marker,
    marker,
    marker_id,
    parse_day,
    parse_time,
)

PRIORITY = {"high": "High", "medium": "Medium", "low": "Low"}
WONT = ("won't do", "won't fix", "wont do", "cancelled", "canceled", "declined", "duplicate")
FIELDS = "summary,status,duedate,resolution,description,updated"
CATEGORY = {"open": "new", "in_progress": "indeterminate", "done": "done", "wont_do": "done"}


def adf(spec: TicketSpec) -> dict[str, Any]:
    """The ticket body as an ADF document (paragraphs, a bullet list, links as link marks)."""
    def text(value: str) -> dict[str, Any]:
        node: dict[str, Any] = {"type": "text", "text": value}
        if value.startswith(("https://", "http://")):
            node["marks"] = [{"type": "link", "attrs": {"href": value}}]
        return node

    def para(*nodes: dict[str, Any]) -> dict[str, Any]:
        return {"type": "paragraph", "content": list(nodes)}

    items = [{"type": "listItem", "content": [para({"type": "text", "text": f"{k}: ", "marks": [{"type": "strong"}]},
                                                   text(v))]} for k, v in spec.body_lines()]
    return {"type": "doc", "version": 1, "content": [
        para(text(f"Corrective/preventive action #{spec.action_id} from incident {spec.incident_ref}.")),
        {"type": "bulletList", "content": items},
        para(text("Done here marks the action done in Incident Bot; reopening it reopens the action.")),
        para(text(marker(spec.action_id))),
    ]}


def adf_text(doc: Any) -> str:
    if isinstance(doc, dict):
        return (doc.get("text") or "") + " ".join(adf_text(c) for c in doc.get("content") or [])
    if isinstance(doc, str):
        return doc
    return ""


def state_of(fields: dict[str, Any], done_statuses: list[str]) -> str:
    status = fields.get("status") or {}
    name = str(status.get("name") or "").lower()
    category = str((status.get("statusCategory") or {}).get("key") or "")
    done = name in {s.lower() for s in done_statuses} if done_statuses else category == "done"
    if done:
        resolution = str((fields.get("resolution") or {}).get("name") or "").lower()
        return "wont_do" if resolution in WONT else "done"
    return "in_progress" if category == "indeterminate" else "open"


class JiraTracker:
    name = "Jira"

    def __init__(self, settings: Settings) -> None:
        assert settings.jira_url and settings.jira_email and settings.jira_api_token and settings.jira_project
        self.base = settings.jira_url.rstrip("/")
        self.project, self.issue_type = settings.jira_project, settings.jira_issue_type
        self.done_statuses = settings.jira_done_statuses
        self.search_settle = settings.jira_search_settle
        self.http = Http("Jira", self.base, {"Accept": "application/json", "User-Agent": "incident-bot"},
                         credential="JIRA_API_TOKEN (with JIRA_EMAIL)", ca_bundle=settings.tracker_ca_bundle,
                         timeout=settings.tracker_timeout, auth=(settings.jira_email, settings.jira_api_token))

    def ticket(self, issue: dict[str, Any], actor: str | None = None) -> Ticket:
        fields = issue.get("fields") or {}
        return Ticket(key=issue["key"], url=f"{self.base}/browse/{issue['key']}",
                      state=state_of(fields, self.done_statuses), updated_at=parse_time(fields.get("updated")),
                      due=parse_day(fields.get("duedate")), actor=actor,
                      action_id=marker_id(adf_text(fields.get("description"))))

    def find_user(self, email: str) -> str | None:
        found = self.http.request("GET", "/rest/api/3/user/search", params={"query": email, "maxResults": 10})
        people = [u for u in found if u.get("accountType", "atlassian") == "atlassian" and u.get("active", True)]
        # emailAddress is hidden by the user's profile visibility unless the token's user may see it: an
        # exact match when it is shown, else the one person the query found.
        exact = [u for u in people if str(u.get("emailAddress") or "").lower() == email.lower()] or people
        return exact[0]["accountId"] if len(exact) == 1 else None

    def search(self, jql: str, limit: int = 500) -> list[dict[str, Any]]:
        """Issues matching ``jql`` (eventually consistent: see the module's docstring), token-paginated."""
        issues: list[dict[str, Any]] = []
        body: dict[str, Any] = {"jql": jql, "fields": FIELDS.split(","), "maxResults": 100}
        while len(issues) < limit:
            page = self.http.request("POST", "/rest/api/3/search/jql", json=body)
            issues += page.get("issues") or []
            if page.get("isLast", True) or not page.get("nextPageToken"):
                break
            body["nextPageToken"] = page["nextPageToken"]
        return issues

    def find_ticket(self, spec: TicketSpec) -> Ticket | None:
        jql = f'project = "{self.project}" AND labels = "incident:{spec.incident_ref}" ORDER BY created DESC'
        for issue in self.search(jql):
            if carries_marker(adf_text((issue.get("fields") or {}).get("description")), spec.action_id):
                return self.ticket(issue)
        return None

    def _fields(self, spec: TicketSpec) -> dict[str, Any]:
        return {"summary": spec.title[:255], "description": adf(spec), "priority": {"name": PRIORITY[spec.priority]},
                "duedate": spec.due.isoformat() if spec.due else None,
                "assignee": {"accountId": spec.assignee} if spec.assignee else None}

    def create(self, spec: TicketSpec) -> Ticket:
        fields = self._fields(spec) | {"project": {"key": self.project}, "issuetype": {"name": self.issue_type},
                                       "labels": spec.labels}
        created = self.http.request("POST", "/rest/api/3/issue", json={"fields": fields})
        self._transition(created["key"], spec.status)
        return self._get(created["key"])

    def update(self, key: str, spec: TicketSpec) -> Ticket:
        self.http.request("PUT", f"/rest/api/3/issue/{key}", json={"fields": self._fields(spec)})
        self._transition(key, spec.status)
        return self._get(key)

    def _get(self, key: str) -> Ticket:
        return self.ticket(self.http.request("GET", f"/rest/api/3/issue/{key}", params={"fields": FIELDS}))

    def _transition(self, key: str, status: str) -> None:
        current = self._get(key)
        if CATEGORY[current.state] == CATEGORY[status]:
            return
        options = self.http.request("GET", f"/rest/api/3/issue/{key}/transitions").get("transitions") or []

        def fits(t: dict[str, Any]) -> bool:
            to = t.get("to") or {}
            name = str(to.get("name") or t.get("name") or "").lower()
            if status in ("done", "wont_do") and self.done_statuses:
                return name in {s.lower() for s in self.done_statuses}
            return (to.get("statusCategory") or {}).get("key") == CATEGORY[status]

        def wont(t: dict[str, Any]) -> bool:
            return str((t.get("to") or {}).get("name") or t.get("name") or "").lower() in WONT

        candidates = [t for t in options if fits(t)]
        # Done and Won't Do are both in the "done" category: prefer the one that says what we mean.
        candidates.sort(key=lambda t: wont(t) != (status == "wont_do"))
        if candidates:
            self.http.request("POST", f"/rest/api/3/issue/{key}/transitions",
                              json={"transition": {"id": candidates[0]["id"]}})

    def fetch(self, keys: list[str]) -> list[Ticket]:
        found: list[Ticket] = []
        for i in range(0, len(keys), 100):  # bulkfetch takes at most 100 keys
            page = self.http.request("POST", "/rest/api/3/issue/bulkfetch", json={
                "issueIdsOrKeys": keys[i:i + 100], "fields": FIELDS.split(",")})
            found += [self.ticket(issue) for issue in page.get("issues") or []]
        return found


# -- webhooks ---------------------------------------------------------------------------------------

def verify(body: bytes, headers: Any, query: Any, settings: Settings) -> bool:
    """``X-Hub-Signature: sha256=<hex>`` when the webhook was registered with a secret; otherwise the
    secret as the ``secret`` query parameter of the URL registered in Jira. Both compared in constant time."""
    secret = (settings.jira_webhook_secret or "").encode()
    sig = headers.get("x-hub-signature")
    if sig is not None:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        return sig.isascii() and hmac.compare_digest(expected.encode(), sig.encode())
    given = str(query.get("secret") or "")
    return bool(secret) and given.isascii() and hmac.compare_digest(secret, given.encode())


def event_id(headers: Any, doc: dict[str, Any]) -> str | None:
    ident = headers.get("x-atlassian-webhook-identifier")
    if ident:
        return ident
    issue = doc.get("issue") or {}
    return f"{doc.get('webhookEvent')}:{issue.get('id')}:{doc.get('timestamp')}" if issue.get("id") else None


def wanted(headers: Any, doc: dict[str, Any], settings: Settings) -> str | None:
    issue = doc.get("issue") or {}
    if doc.get("webhookEvent") != "jira:issue_updated" or not issue.get("key"):
        return None
    project = ((issue.get("fields") or {}).get("project") or {}).get("key")
    return "issue_updated" if project in (None, settings.jira_project) else None


def parse(payload: str, settings: Settings) -> Ticket:
    doc = json.loads(payload)
    issue = doc["issue"]
    fields = issue.get("fields") or {}
    base = (settings.jira_url or "").rstrip("/")
    return Ticket(key=issue["key"], url=f"{base}/browse/{issue['key']}",
                  state=state_of(fields, settings.jira_done_statuses), updated_at=parse_time(fields.get("updated")),
                  due=parse_day(fields.get("duedate")) if "duedate" in fields else UNSET,
                  actor=(doc.get("user") or {}).get("displayName"),
                  action_id=marker_id(adf_text(fields.get("description"))))
