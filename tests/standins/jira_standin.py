"""A local stand-in of Jira Cloud's REST API v3 for issues, over HTTPS (see :mod:`tracker_standin`).

Only what our client calls, shaped as Jira answers it: ``POST /rest/api/3/issue`` (the description must be
an Atlassian Document, a v2 wiki string is refused as Jira refuses it; answer ``{id, key, self}``),
``GET``/``PUT /rest/api/3/issue/{key}`` (PUT answers 204), the transitions API (``GET`` lists the ones
open from the current status with their target's ``statusCategory``; ``POST {"transition": {"id"}}``
answers 204 and sets or clears the resolution), ``POST /rest/api/3/search/jql`` (token pagination,
``isLast``; the JQL forms we send only; **eventually consistent**: an issue shows :attr:`search_lag`
seconds after it was created, unless its id is in ``reconcileIssues``), ``POST /rest/api/3/issue/bulkfetch``
and ``GET /rest/api/3/user/search``. Basic auth (email:API token).

:meth:`transition` and :meth:`set_due` change an issue as a person would and return the
``jira:issue_updated`` webhook Jira sends (v2 field shapes: the description as a string, and a changelog);
:func:`signed` signs it as a webhook registered with a secret does (``X-Hub-Signature: sha256=<hex>``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from incident_bot.demo.http_standin import Request
from tests.standins.tracker_standin import Answer, ApiError, TrackerStandIn

# name -> (id, status category key); every status can be reached from every other (global transitions).
STATUSES = {"To Do": ("10000", "new"), "In Progress": ("3", "indeterminate"), "Done": ("10001", "done"),
            "Won't Do": ("10002", "done")}
TRANSITIONS = {"11": "To Do", "21": "In Progress", "31": "Done", "41": "Won't Do"}
PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
CATEGORY_NAMES = {"new": "To Do", "indeterminate": "In Progress", "done": "Done"}
_JQL_LABEL = re.compile(r'project\s*=\s*"?([A-Z][A-Z0-9_]*)"?\s+AND\s+labels\s*=\s*"([^"]+)"'
                        r"(?:\s+ORDER\s+BY\s+created\s+(?:DESC|ASC))?", re.I)
_JQL_KEYS = re.compile(r"key\s+in\s*\(([^)]*)\)", re.I)


def _status(name: str) -> dict[str, Any]:
    sid, cat = STATUSES[name]
    return {"id": sid, "name": name, "statusCategory": {"key": cat, "name": CATEGORY_NAMES[cat]}}


def _error(status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None) -> ApiError:
    return ApiError(status, {"errorMessages": messages or [], "errors": errors or {}})


def adf_plain(doc: Any) -> str:
    """An ADF document as the plain text a v2 webhook shows."""
    if isinstance(doc, dict):
        inner = [adf_plain(c) for c in doc.get("content") or []]
        sep = "\n" if doc.get("type") in ("doc", "bulletList") else ""
        return (doc.get("text") or "") + sep.join(inner)
    return ""


class JiraStandIn(TrackerStandIn):
    routes = (
        ("POST", r"/rest/api/3/issue", "_create"),
        ("POST", r"/rest/api/3/issue/bulkfetch", "_bulkfetch"),
        ("GET", r"/rest/api/3/issue/([A-Z][A-Z0-9_]*-\d+)", "_get"),
        ("PUT", r"/rest/api/3/issue/([A-Z][A-Z0-9_]*-\d+)", "_edit"),
        ("GET", r"/rest/api/3/issue/([A-Z][A-Z0-9_]*-\d+)/transitions", "_transitions"),
        ("POST", r"/rest/api/3/issue/([A-Z][A-Z0-9_]*-\d+)/transitions", "_do_transition"),
        ("POST", r"/rest/api/3/search/jql", "_search"),
        ("GET", r"/rest/api/3/user/search", "_user_search"),
    )

    def __init__(self, project: str = "OPS", email: str = "bot@example.com", token: str = "jira-token") -> None:
        super().__init__([f"{email}:{token}"])
        self.project = project
        self.issues: dict[str, dict[str, Any]] = {}  # key -> issue as GET returns it (v3)
        self.users: dict[str, dict[str, Any]] = {}  # accountId -> user
        self.search_lag = 0.0  # seconds before a new issue shows in JQL search
        self._created: dict[str, float] = {}  # key -> time.monotonic() at creation
        self._clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    # -- seed data and a person's actions --------------------------------------------------------------------

    def add_user(self, account_id: str, name: str, email: str, *, email_visible: bool = True,
                 account_type: str = "atlassian", active: bool = True) -> None:
        with self._lock:
            self.users[account_id] = {"accountId": account_id, "accountType": account_type, "active": active,
                                      "displayName": name, "emailAddress": email if email_visible else None,
                                      "_email": email}

    def transition(self, key: str, to: str, by: str = "Grace Hopper") -> dict[str, Any]:
        """Move an issue to status ``to`` in the UI; returns the webhook Jira sends."""
        with self._lock:
            fields = self.issues[key]["fields"]
            before = fields["status"]["name"]
            self._set_status(fields, to)
            fields["updated"] = self._now()
            return self._event(key, by, [{"field": "status", "fieldtype": "jira", "fieldId": "status",
                                          "from": STATUSES[before][0], "fromString": before,
                                          "to": STATUSES[to][0], "toString": to}])

    def set_due(self, key: str, due: date | None, by: str = "Grace Hopper") -> dict[str, Any]:
        with self._lock:
            fields = self.issues[key]["fields"]
            before, fields["duedate"] = fields["duedate"], due.isoformat() if due else None
            fields["updated"] = self._now()
            return self._event(key, by, [{"field": "duedate", "fieldtype": "jira", "fieldId": "duedate",
                                          "from": before, "fromString": before, "to": fields["duedate"],
                                          "toString": fields["duedate"]}])

    def event(self, key: str, by: str = "incident-bot") -> dict[str, Any]:
        """The webhook Jira sends for a change it already holds (our own write coming back: an echo)."""
        with self._lock:
            return self._event(key, by, [])

    # -- HTTP --------------------------------------------------------------------------------------------------

    def authorised(self, request: Request) -> bool:
        m = re.fullmatch(r"Basic (\S+)", request.headers.get("authorization", ""))
        if not m:
            return False
        try:
            pair = base64.b64decode(m[1]).decode()
        except ValueError:
            return False
        return pair in self.tokens

    def auth_error(self) -> Answer:
        return 401, {"errorMessages": ["Client must be authenticated to access this resource."], "errors": {}}

    def _now(self) -> str:
        self._clock += timedelta(seconds=1)  # strictly increasing: an echo is never newer than our write
        return self._clock.strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def _issue(self, key: str) -> dict[str, Any]:
        issue = self.issues.get(key)
        if issue is None:
            raise _error(404, ["Issue does not exist or you do not have permission to see it."])
        return issue

    def _set_status(self, fields: dict[str, Any], name: str) -> None:
        fields["status"] = _status(name)
        done = STATUSES[name][1] == "done"
        fields["resolution"] = {"name": "Won't Do" if name == "Won't Do" else "Done"} if done else None

    def _check_fields(self, f: dict[str, Any]) -> dict[str, str]:
        errors: dict[str, str] = {}
        if "description" in f and f["description"] is not None and not (
                isinstance(f["description"], dict) and f["description"].get("type") == "doc"
                and f["description"].get("version") == 1):
            errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        if "priority" in f and (f["priority"] or {}).get("name") not in PRIORITIES:
            errors["priority"] = "Specify the Priority (name) in the string format"
        if f.get("assignee") and f["assignee"].get("accountId") not in self.users:
            errors["assignee"] = "Specify a valid value for assignee"
        if f.get("duedate"):
            try:
                date.fromisoformat(f["duedate"])
            except ValueError:
                errors["duedate"] = "Error parsing date string: " + str(f["duedate"])
        if any(" " in lb for lb in f.get("labels") or []):
            errors["labels"] = "The label must not contain spaces."
        return errors

    def _create(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        f = p.get("fields") or {}
        errors = self._check_fields(f)
        if (f.get("project") or {}).get("key") != self.project:
            errors["project"] = "Specify a valid project ID or key"
        if (f.get("issuetype") or {}).get("name") != "Task":
            errors["issuetype"] = "Specify an issue type"
        if not f.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        if errors:
            raise _error(400, errors=errors)
        number = len(self.issues) + 1
        key, issue_id = f"{self.project}-{number}", str(10000 + number)
        fields = {"summary": f["summary"], "description": f.get("description"), "labels": list(f.get("labels") or []),
                  "priority": {"name": (f.get("priority") or {}).get("name", "Medium")},
                  "assignee": self._user_ref(f.get("assignee")), "duedate": f.get("duedate"),
                  "project": {"key": self.project}, "issuetype": {"name": "Task"}, "updated": self._now()}
        self._set_status(fields, "To Do")
        self.issues[key] = {"id": issue_id, "key": key, "self": f"{self.url}/rest/api/3/issue/{issue_id}",
                            "fields": fields}
        self._created[key] = time.monotonic()
        return 201, {"id": issue_id, "key": key, "self": f"{self.url}/rest/api/3/issue/{issue_id}"}

    def _user_ref(self, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        user = self.users.get((ref or {}).get("accountId", ""))
        return {k: v for k, v in user.items() if not k.startswith("_")} if user else None

    def _get(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        return 200, self._view(self._issue(m[1]), p.get("fields"))

    def _view(self, issue: dict[str, Any], fields: Any) -> dict[str, Any]:
        wanted = fields.split(",") if isinstance(fields, str) else fields
        view = json.loads(json.dumps(issue))
        if wanted:
            view["fields"] = {k: v for k, v in view["fields"].items() if k in wanted}
        return view

    def _edit(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        issue = self._issue(m[1])
        f = p.get("fields") or {}
        if errors := self._check_fields(f):
            raise _error(400, errors=errors)
        for name in ("summary", "description", "duedate", "labels"):
            if name in f:
                issue["fields"][name] = f[name]
        if "priority" in f:
            issue["fields"]["priority"] = {"name": f["priority"]["name"]}
        if "assignee" in f:
            issue["fields"]["assignee"] = self._user_ref(f["assignee"])
        issue["fields"]["updated"] = self._now()
        return 204, None

    def _transitions(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        current = self._issue(m[1])["fields"]["status"]["name"]
        return 200, {"transitions": [{"id": tid, "name": to, "to": _status(to), "hasScreen": False}
                                     for tid, to in TRANSITIONS.items() if to != current]}

    def _do_transition(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        issue = self._issue(m[1])
        to = TRANSITIONS.get(str((p.get("transition") or {}).get("id")))
        if to is None or to == issue["fields"]["status"]["name"]:
            raise _error(400, ["Transition id is not valid for this issue."])
        self._set_status(issue["fields"], to)
        issue["fields"]["updated"] = self._now()
        return 204, None

    def _search(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        jql = str(p.get("jql") or "")
        if by_label := _JQL_LABEL.fullmatch(jql.strip()):
            project, label = by_label[1], by_label[2]
            hits = [i for i in self.issues.values() if project == self.project and label in i["fields"]["labels"]]
            hits.sort(key=lambda i: -int(i["id"]))
        elif by_keys := _JQL_KEYS.fullmatch(jql.strip()):
            keys = {k.strip().strip('"') for k in by_keys[1].split(",")}
            hits = [i for i in self.issues.values() if i["key"] in keys]
        else:
            raise _error(400, [f"The stand-in does not understand this JQL: {jql}"])
        reconcile = {str(x) for x in p.get("reconcileIssues") or []}
        now = time.monotonic()
        hits = [i for i in hits if now - self._created[i["key"]] >= self.search_lag or i["id"] in reconcile]
        start = int(p.get("nextPageToken") or 0)
        size = min(int(p.get("maxResults") or 50), 5000)
        page = hits[start:start + size]
        more = start + size < len(hits)
        body: dict[str, Any] = {"issues": [self._view(i, p.get("fields") or ["id"]) for i in page], "isLast": not more}
        if more:
            body["nextPageToken"] = str(start + size)
        return 200, body

    def _bulkfetch(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        wanted = [str(k) for k in p.get("issueIdsOrKeys") or []]
        if not wanted or len(wanted) > 100:
            raise _error(400, ["issueIdsOrKeys must hold between 1 and 100 issue ids or keys."])
        found = [i for i in self.issues.values() if i["key"] in wanted or i["id"] in wanted]
        return 200, {"issues": [self._view(i, p.get("fields")) for i in found], "issueErrors": []}

    def _user_search(self, p: dict[str, Any], r: Request, m: re.Match[str]) -> Answer:
        query = str(p.get("query") or "").lower()
        if not query:
            raise _error(400, ["One of 'accountId' or 'query' must be specified."])
        hits = [u for u in self.users.values()
                if u["_email"].lower().startswith(query) or u["displayName"].lower().startswith(query)]
        return 200, [{k: v for k, v in u.items() if not k.startswith("_")} for u in hits]

    def _event(self, key: str, by: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        issue = json.loads(json.dumps(self.issues[key]))
        issue["fields"]["description"] = adf_plain(issue["fields"]["description"])  # webhooks use v2 shapes
        return {"timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_updated",
                "issue_event_type_name": "issue_generic", "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5",
                                                                  "displayName": by},
                "issue": issue, "changelog": {"id": str(uuid.uuid4().int % 10**6), "items": items}}


def signed(doc: dict[str, Any], secret: str | None, *, identifier: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery; ``secret=None``: a webhook registered without a secret (unsigned)."""
    body = json.dumps(doc).encode()
    headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Flow": "Primary",
               "X-Atlassian-Webhook-Identifier": identifier or str(uuid.uuid4().int % 10**13)}
    if secret is not None:
        headers["X-Hub-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, headers
