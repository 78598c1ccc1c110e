"""A local stand-in of GitHub's REST API for issues, over HTTPS (see :mod:`tracker_standin`).

Issues as the API returns them (``number``, ``html_url``, ``state``, ``state_reason``, ``labels`` as
objects, ``assignees``, ``updated_at``); ``GET /repos/O/R/issues`` filters by ``labels`` and ``state``;
``GET /search/users`` finds users by public email. :meth:`close` and :meth:`reopen` change an issue as a
person would and return the signed ``issues`` webhook GitHub would send (:meth:`signed`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from incident_bot.demo.http_standin import Request
from tests.standins.tracker_standin import Answer, ApiError, TrackerStandIn

WEB = "https://github.standin"


class GitHubStandIn(TrackerStandIn):
    routes = (
        ("POST", r"/repos/([^/]+/[^/]+)/issues", "_create"),
        ("GET", r"/repos/([^/]+/[^/]+)/issues", "_list"),
        ("GET", r"/repos/([^/]+/[^/]+)/issues/(\d+)", "_get"),
        ("PATCH", r"/repos/([^/]+/[^/]+)/issues/(\d+)", "_patch"),
        ("GET", r"/search/users", "_search_users"),
    )

    def __init__(self, repo: str = "acme/ops", tokens: list[str] | None = None) -> None:
        super().__init__(tokens or ["ghp_test"])
        self.repo = repo
        self.issues: dict[int, dict[str, Any]] = {}
        self.users: dict[str, str] = {}  # public email -> login
        self._clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def add_user(self, login: str, public_email: str | None = None) -> None:
        if public_email:
            self.users[public_email.lower()] = login

    def _now(self) -> str:
        # Strictly increasing, a second apart: GitHub's updated_at has second precision.
        self._clock += timedelta(seconds=1)
        return self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def authorised(self, request: Request) -> bool:
        m = re.fullmatch(r"(?:Bearer|token) (\S+)", request.headers.get("authorization", ""))
        return bool(m and m[1] in self.tokens)

    def _repo(self, m: re.Match[str]) -> None:
        if m[1] != self.repo:
            raise ApiError(404, {"message": "Not Found"})

    def _create(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        self._repo(m)
        if not p.get("title"):
            raise ApiError(422, {"message": "Validation Failed", "errors": [{"field": "title", "code": "missing"}]})
        number = len(self.issues) + 1
        issue = {"number": number, "id": 1000 + number, "title": p["title"], "body": p.get("body") or "",
                 "state": "open", "state_reason": None, "html_url": f"{WEB}/{self.repo}/issues/{number}",
                 "labels": [{"name": n} for n in p.get("labels") or []],
                 "assignees": [{"login": a} for a in p.get("assignees") or [] if a in self.users.values()],
                 "updated_at": self._now()}
        self.issues[number] = issue
        return 201, issue

    def _list(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        self._repo(m)
        wanted = {x for x in (p.get("labels") or "").split(",") if x}
        state = p.get("state", "open")
        found = [i for i in self.issues.values()
                 if wanted <= {lb["name"] for lb in i["labels"]} and (state == "all" or i["state"] == state)]
        return 200, sorted(found, key=lambda i: -i["number"])

    def _issue(self, m: re.Match[str]) -> dict[str, Any]:
        self._repo(m)
        issue = self.issues.get(int(m[2]))
        if issue is None:
            raise ApiError(404, {"message": "Not Found"})
        return issue

    def _get(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        return 200, self._issue(m)

    def _patch(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        issue = self._issue(m)
        for key in ("title", "body", "state", "state_reason"):
            if key in p:
                issue[key] = p[key]
        if issue["state"] == "open":
            issue["state_reason"] = None
        if "labels" in p:
            issue["labels"] = [{"name": n} for n in p["labels"]]
        if "assignees" in p:
            issue["assignees"] = [{"login": a} for a in p["assignees"] if a in self.users.values()]
        issue["updated_at"] = self._now()
        return 200, issue

    def _search_users(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        email = (p.get("q") or "").split(" ")[0].lower()
        login = self.users.get(email)
        items = [{"login": login}] if login else []
        return 200, {"total_count": len(items), "items": items}

    # -- a person acting in GitHub, and the webhook it sends ------------------------------------------------

    def close(self, number: int, by: str = "octocat", reason: str = "completed") -> dict[str, Any]:
        with self._lock:
            issue = self.issues[number]
            issue.update(state="closed", state_reason=reason, updated_at=self._now())
            return self._event("closed", issue, by)

    def reopen(self, number: int, by: str = "octocat") -> dict[str, Any]:
        with self._lock:
            issue = self.issues[number]
            issue.update(state="open", state_reason="reopened", updated_at=self._now())
            return self._event("reopened", issue, by)

    def _event(self, action: str, issue: dict[str, Any], by: str) -> dict[str, Any]:
        return {"action": action, "issue": json.loads(json.dumps(issue)), "sender": {"login": by},
                "repository": {"full_name": self.repo}}


def signed(doc: dict[str, Any], secret: str, *, event: str = "issues",
           delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(doc).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature-256": sig, "X-GitHub-Event": event,
                  "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "Content-Type": "application/json"}
