"""GitHub Issues over its REST API, with a small ``httpx`` client (why not githubkit: docs/trackers.md).

Key: ``owner/name#number``. State: open -> open; closed as ``not_planned`` -> wont_do, otherwise done.
GitHub issues have no due date or priority field: the due date is written in the body (one way) and the
priority is a ``priority:<p>`` label kept in step with the CAPA. Owners: ``GITHUB_USER_MAP`` (email=login)
first, then the user search by email, which only finds public emails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from incident_bot.config import Settings
from incident_bot.trackers.base import Http, Ticket, TicketSpec, carries_marker, marker_id, parse_time

API_VERSION = "2022-11-28"


class GitHubTracker:
    name = "GitHub"
    search_settle = 0.0  # the issues list (not the search API) shows a new issue at once

    def __init__(self, settings: Settings) -> None:
        assert settings.github_token and settings.github_repository
        self.repo = settings.github_repository
        self.user_map = settings.github_user_map
        self.http = Http(
            "GitHub", settings.github_api_url.rstrip("/"),
            {"Authorization": f"Bearer {settings.github_token}", "Accept": "application/vnd.github+json",
             "X-GitHub-Api-Version": API_VERSION, "User-Agent": "incident-bot"},
            credential="GITHUB_TOKEN", ca_bundle=settings.tracker_ca_bundle, timeout=settings.tracker_timeout)

    def _path(self, number: str | int = "") -> str:
        return f"/repos/{self.repo}/issues" + (f"/{number}" if number != "" else "")

    def _number(self, key: str) -> str:
        repo, _, number = key.rpartition("#")
        if repo != self.repo or not number.isdigit():
            raise ValueError(f"{key!r} is not an issue of {self.repo}")
        return number

    def ticket(self, issue: dict[str, Any], actor: str | None = None) -> Ticket:
        if issue.get("state") == "closed":
            state = "wont_do" if issue.get("state_reason") in ("not_planned", "duplicate") else "done"
        else:
            state = "open"
        return Ticket(key=f"{self.repo}#{issue['number']}", url=issue.get("html_url"), state=state,
                      updated_at=parse_time(issue.get("updated_at")), actor=actor,
                      action_id=marker_id(issue.get("body")))

    def find_user(self, email: str) -> str | None:
        if email.lower() in self.user_map:
            return self.user_map[email.lower()]
        found = self.http.request("GET", "/search/users", params={"q": f"{email} in:email", "per_page": 2})
        items = found.get("items") or []
        return items[0]["login"] if len(items) == 1 else None

    def find_ticket(self, spec: TicketSpec) -> Ticket | None:
        # The issues list, not the search API: search is eventually consistent and would miss an issue
        # created a second ago by the attempt that timed out.
        issues = self.http.request("GET", self._path(), params={
            "labels": f"incident:{spec.incident_ref}", "state": "all", "per_page": 100})
        for issue in issues:
            if carries_marker(issue.get("body"), spec.action_id) and "pull_request" not in issue:
                return self.ticket(issue)
        return None

    def _fields(self, spec: TicketSpec) -> dict[str, Any]:
        fields: dict[str, Any] = {"title": spec.title[:256], "body": spec.markdown(),
                                  "assignees": [spec.assignee] if spec.assignee else []}
        if spec.status in ("done", "wont_do"):
            fields.update(state="closed", state_reason="completed" if spec.status == "done" else "not_planned")
        else:
            fields["state"] = "open"
        return fields

    def create(self, spec: TicketSpec) -> Ticket:
        body = self._fields(spec) | {"labels": [*spec.labels, f"priority:{spec.priority}"]}
        state = body.pop("state")
        reason = body.pop("state_reason", None)
        issue = self.http.request("POST", self._path(), json=body)
        if state == "closed":  # an action recorded as already done: its ticket is created closed
            issue = self.http.request("PATCH", self._path(issue["number"]),
                                      json={"state": "closed", "state_reason": reason})
        return self.ticket(issue)

    def update(self, key: str, spec: TicketSpec) -> Ticket:
        number = self._number(key)
        current = self.http.request("GET", self._path(number))
        # Labels people added stay; only our priority label is replaced.
        labels = [lb["name"] for lb in current.get("labels") or [] if not lb["name"].startswith("priority:")]
        labels += [lb for lb in spec.labels if lb not in labels] + [f"priority:{spec.priority}"]
        issue = self.http.request("PATCH", self._path(number), json=self._fields(spec) | {"labels": labels})
        return self.ticket(issue)

    def fetch(self, keys: list[str]) -> list[Ticket]:
        return [self.ticket(self.http.request("GET", self._path(self._number(k)))) for k in keys]


# -- webhooks ---------------------------------------------------------------------------------------

def verify(body: bytes, headers: Any, secret: str) -> bool:
    sig = headers.get("x-hub-signature-256") or ""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return sig.isascii() and hmac.compare_digest(expected.encode(), sig.encode())


def event_id(headers: Any) -> str | None:
    return headers.get("x-github-delivery")


def wanted(headers: Any, doc: dict[str, Any], settings: Settings) -> str | None:
    """The event type to store, or None for one we ignore (a ping, another repository, a comment)."""
    if headers.get("x-github-event") != "issues":
        return None
    if (doc.get("repository") or {}).get("full_name", "").lower() != (settings.github_repository or "").lower():
        return None
    if doc.get("action") not in ("closed", "reopened"):
        return None
    return f"issues.{doc['action']}"


def parse(payload: str, settings: Settings) -> Ticket:
    doc = json.loads(payload)
    issue = doc["issue"]
    repo = settings.github_repository or doc["repository"]["full_name"]
    state = "open"
    if issue.get("state") == "closed":
        state = "wont_do" if issue.get("state_reason") in ("not_planned", "duplicate") else "done"
    return Ticket(key=f"{repo}#{issue['number']}", url=issue.get("html_url"), state=state,
                  updated_at=parse_time(issue.get("updated_at")), actor=(doc.get("sender") or {}).get("login"),
                  action_id=marker_id(issue.get("body")))
