"""A local stand-in of Linear's GraphQL API, over HTTPS (see :mod:`tracker_standin`).

One endpoint, ``POST /graphql``; every operation is parsed, validated and executed by ``graphql-core``
against the subset of Linear's schema our client uses (:mod:`linear_schema`), so a wrong field, argument
or variable type is refused as Linear refuses it (HTTP 400, ``GRAPHQL_VALIDATION_FAILED``). Answers as
Linear's: a personal API key in ``Authorization`` without ``Bearer``; a bad key is
``AUTHENTICATION_ERROR``; a rate limit is HTTP **400** with ``extensions.code: RATELIMITED`` and
``X-RateLimit-Requests-Reset`` (epoch milliseconds), not a 429 (``fail_next(..., status=429)`` answers so).
Workflow states of one team with Linear's types (backlog, unstarted, started, completed, canceled).

:meth:`move` and :meth:`set_due` change an issue as a person would and return the ``Issue`` ``update``
webhook Linear sends (``data``, ``updatedFrom``, ``actor``, ``webhookTimestamp``); :func:`signed` signs it
(``Linear-Signature``: hex HMAC-SHA256 of the body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from graphql import GraphQLError, build_schema, graphql_sync

from incident_bot.demo.http_standin import Fault, Reply, Request
from tests.standins.linear_schema import SDL
from tests.standins.tracker_standin import Answer, TrackerStandIn

WEB = "https://linear.standin/acme"
SCHEMA = build_schema(SDL)
STATES = (("Backlog", "backlog"), ("Todo", "unstarted"), ("In Progress", "started"), ("In Review", "started"),
          ("Done", "completed"), ("Canceled", "canceled"), ("Duplicate", "canceled"))
OPS = {"eq": lambda v, x: v == x, "neq": lambda v, x: v != x, "in": lambda v, x: v in x,
       "nin": lambda v, x: v not in x, "contains": lambda v, x: v is not None and x in v,
       "containsIgnoreCase": lambda v, x: v is not None and x.lower() in v.lower(),
       "notContains": lambda v, x: v is None or x not in v,
       "startsWith": lambda v, x: v is not None and v.startswith(x),
       "endsWith": lambda v, x: v is not None and v.endswith(x), "null": lambda v, x: (v is None) == x}


def matches(obj: dict[str, Any] | None, flt: dict[str, Any] | None) -> bool:
    """Linear's filter semantics for the comparators and relation filters our client sends."""
    for key, cond in (flt or {}).items():
        if key == "and" and not all(matches(obj, f) for f in cond):
            return False
        if key == "or" and not any(matches(obj, f) for f in cond):
            return False
        if key in ("and", "or"):
            continue
        if key == "null":
            if (obj is None) != cond:
                return False
            continue
        value = None if obj is None else obj.get(key)
        if isinstance(cond, dict) and set(cond) <= set(OPS):
            if not all(OPS[op](value, arg) for op, arg in cond.items()):
                return False
        elif not matches(value, cond):
            return False
    return True


def _error(message: str, code: str, status: int = 400) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code, "type": code.lower().replace("_", " "),
                                                         "statusCode": status,
                                                         "userPresentableMessage": message}}]}


class LinearStandIn(TrackerStandIn):
    routes = (("POST", r"/graphql", "_graphql"),)

    def __init__(self, api_key: str = "lin_api_test", team_key: str = "OPS") -> None:
        super().__init__([api_key])
        self.team = {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"team/{team_key}")), "key": team_key,
                     "name": "Operations"}
        self.team["states"] = lambda info, **args: {"nodes": [s for s in self.states if matches(s, args.get("filter"))],
                                                    "pageInfo": {"hasNextPage": False}}
        self.states = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"state/{name}")), "name": name, "type": kind,
                        "position": float(i), "color": "#bec2c8"} for i, (name, kind) in enumerate(STATES)]
        self.issues: dict[str, dict[str, Any]] = {}  # id -> issue
        self.users: dict[str, dict[str, Any]] = {}
        self.labels: dict[str, dict[str, Any]] = {}
        self._clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        self._sync = 1000.0

    @property
    def api_url(self) -> str:
        return f"{self.url}/graphql"

    # -- seed data and a person's actions --------------------------------------------------------------------

    def add_user(self, name: str, email: str, *, active: bool = True) -> str:
        user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"user/{email}"))
        with self._lock:
            self.users[user_id] = {"id": user_id, "name": name, "displayName": name.split()[0].lower(),
                                   "email": email, "active": active}
        return user_id

    def add_label(self, name: str, *, team_id: str | None = None) -> str:
        label_id = str(uuid.uuid4())
        with self._lock:
            self.labels[label_id] = {"id": label_id, "name": name,
                                     "team": {"id": team_id, "key": "X", "name": "Other"} if team_id else None}
        return label_id

    def by_identifier(self, identifier: str) -> dict[str, Any]:
        return next(i for i in self.issues.values() if i["identifier"] == identifier)

    def state_named(self, name: str) -> dict[str, Any]:
        return next(s for s in self.states if s["name"] == name)

    def move(self, identifier: str, state: str, by: str = "Grace Hopper") -> dict[str, Any]:
        """Move an issue to the workflow state named ``state``; returns the webhook Linear sends."""
        with self._lock:
            issue = self.by_identifier(identifier)
            before = {"stateId": issue["state"]["id"], "updatedAt": issue["updatedAt"]}
            issue["state"] = self.state_named(state)
            issue["updatedAt"] = self._now()
            return self._event(issue, by, before)

    def set_due(self, identifier: str, due: date | None, by: str = "Grace Hopper") -> dict[str, Any]:
        with self._lock:
            issue = self.by_identifier(identifier)
            before = {"dueDate": issue["dueDate"], "updatedAt": issue["updatedAt"]}
            issue["dueDate"] = due.isoformat() if due else None
            issue["updatedAt"] = self._now()
            return self._event(issue, by, before)

    def event(self, identifier: str, by: str = "incident-bot") -> dict[str, Any]:
        """The webhook for a change Linear already holds (our own write coming back: an echo)."""
        with self._lock:
            issue = self.by_identifier(identifier)
            return self._event(issue, by, {"stateId": issue["state"]["id"], "updatedAt": issue["updatedAt"]})

    def _event(self, issue: dict[str, Any], by: str, before: dict[str, Any]) -> dict[str, Any]:
        data = {"id": issue["id"], "identifier": issue["identifier"], "title": issue["title"],
                "description": issue["description"], "priority": issue["priority"], "dueDate": issue["dueDate"],
                "url": issue["url"], "stateId": issue["state"]["id"],
                "state": {k: issue["state"][k] for k in ("id", "name", "type", "color")},
                "teamId": self.team["id"], "team": {k: self.team[k] for k in ("id", "key", "name")},
                "assigneeId": (issue["assignee"] or {}).get("id"), "labelIds": [lb["id"] for lb in issue["_labels"]],
                "createdAt": issue["createdAt"], "updatedAt": issue["updatedAt"]}
        return {"action": "update", "type": "Issue", "actor": {"id": str(uuid.uuid4()), "name": by, "type": "user"},
                "createdAt": issue["updatedAt"], "data": data, "updatedFrom": before, "url": issue["url"],
                "organizationId": "org-acme", "webhookId": "webhook-1", "webhookTimestamp": int(time.time() * 1000)}

    # -- HTTP and GraphQL --------------------------------------------------------------------------------------

    def authorised(self, request: Request) -> bool:
        return request.headers.get("authorization", "") in self.tokens

    def auth_error(self) -> Answer:
        return 401, _error("Authentication required, not authenticated", "AUTHENTICATION_ERROR", 401)

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.status == 429:  # Linear answers a rate limit with HTTP 400 and RATELIMITED in the body
            reset = int(time.time() * 1000) + 1000 * (fault.retry_after or 1)
            body = _error(fault.error or "Rate limit exceeded", "RATELIMITED", 429)
            return Reply(400, json.dumps(body).encode(), {"X-RateLimit-Requests-Limit": "2500",
                                                          "X-RateLimit-Requests-Remaining": "0",
                                                          "X-RateLimit-Requests-Reset": str(reset)})
        return super()._fault_reply(fault)

    def _describe(self, request: Request) -> tuple[str, dict[str, Any]]:
        key, params = super()._describe(request)
        # "POST /graphql issueCreate": calls are named by their first field, so that faults and the call log
        # can tell a create from a query.
        query = str(params.get("query") or "")
        head = query.split("{", 2)
        field = head[1].strip().split("(")[0].split()[0] if len(head) > 1 and head[1].strip() else ""
        return (f"{key} {field}" if field else key), params

    def _matches(self, pattern: str, key: str) -> bool:
        return pattern in ("*", key) or key.startswith(pattern + " ")

    def _answer(self, request: Request, key: str, params: dict[str, Any]) -> Reply:
        return super()._answer(request, " ".join(key.split(" ")[:2]), params)

    def _graphql(self, p: dict[str, Any], r: Request, m: Any) -> Answer:
        root = {"issue": self._q_issue, "issues": self._q_issues, "issueLabels": self._q_labels,
                "team": self._q_team, "users": self._q_users, "viewer": lambda info: next(iter(self.users.values())),
                "issueCreate": self._m_create, "issueUpdate": self._m_update, "issueLabelCreate": self._m_label}
        result = graphql_sync(SCHEMA, str(p.get("query") or ""), root_value=root,
                              variable_values=p.get("variables") or {})
        if result.errors:
            err = result.errors[0]
            code = (err.extensions or {}).get("code") or "GRAPHQL_VALIDATION_FAILED"
            status = 400 if err.path is None else 200  # refused before running, or failed while running
            return status, {"data": result.data, **_error(err.message, str(code))}
        return 200, {"data": result.data}

    def _now(self) -> str:
        self._clock += timedelta(seconds=1)
        return self._clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _payload(self, issue: dict[str, Any]) -> dict[str, Any]:
        self._sync += 1
        return {"success": True, "issue": issue, "lastSyncId": self._sync}

    def _q_issue(self, info: Any, id: str) -> dict[str, Any]:
        issue = self.issues.get(id) or next((i for i in self.issues.values() if i["identifier"] == id), None)
        if issue is None:
            raise GraphQLError("Entity not found: Issue", extensions={"code": "INPUT_ERROR"})
        return issue

    def _q_issues(self, info: Any, filter: dict[str, Any] | None = None, first: int | None = None,
                  **_: Any) -> dict[str, Any]:
        hits = [i for i in self.issues.values() if matches(i, filter)]
        return {"nodes": hits[:first or 50], "pageInfo": {"hasNextPage": len(hits) > (first or 50)}}

    def _q_labels(self, info: Any, filter: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        return {"nodes": [lb for lb in self.labels.values() if matches(lb, filter)], "pageInfo": {"hasNextPage": False}}

    def _q_team(self, info: Any, id: str) -> dict[str, Any]:
        if id not in (self.team["id"], self.team["key"]):
            raise GraphQLError("Entity not found: Team", extensions={"code": "INPUT_ERROR"})
        return self.team

    def _q_users(self, info: Any, filter: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        return {"nodes": [u for u in self.users.values() if matches(u, filter)], "pageInfo": {"hasNextPage": False}}

    def _check(self, data: dict[str, Any]) -> None:
        def bad(what: str) -> GraphQLError:
            return GraphQLError(f"Argument Validation Error: {what}", extensions={"code": "INPUT_ERROR"})

        if data.get("stateId") is not None and data["stateId"] not in {s["id"] for s in self.states}:
            raise bad("stateId is not a workflow state of the team")
        if data.get("assigneeId") is not None and data["assigneeId"] not in self.users:
            raise bad("assigneeId must be a user in the workspace")
        if data.get("priority") is not None and data["priority"] not in range(5):
            raise bad("priority must be between 0 and 4")
        for label in data.get("labelIds") or []:
            team = (self.labels.get(label) or {"team": {"id": "?"}})["team"]
            if team is not None and team["id"] != self.team["id"]:
                raise bad("labelIds must be labels of the issue's team or of the workspace")
        if data.get("dueDate") is not None:
            date.fromisoformat(data["dueDate"])

    def _m_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        if input["teamId"] != self.team["id"]:
            raise GraphQLError("Entity not found: Team", extensions={"code": "INPUT_ERROR"})
        self._check(input)
        number = len(self.issues) + 1
        ident = f"{self.team['key']}-{number}"
        state = next((s for s in self.states if s["id"] == input.get("stateId")), self.state_named("Backlog"))
        now = self._now()
        issue: dict[str, Any] = {
            "id": str(uuid.uuid4()), "identifier": ident, "title": input.get("title") or "",
            "description": input.get("description"), "url": f"{WEB}/issue/{ident}/capa", "priority":
            float(input.get("priority") or 0), "dueDate": input.get("dueDate"), "createdAt": now, "updatedAt": now,
            "state": state, "team": self.team, "assignee": self.users.get(input.get("assigneeId") or ""),
            "_labels": [self.labels[i] for i in input.get("labelIds") or []]}
        issue["labels"] = lambda info, **args: {"nodes": issue["_labels"], "pageInfo": {"hasNextPage": False}}
        self.issues[issue["id"]] = issue
        return self._payload(issue)

    def _m_update(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:
        issue = self._q_issue(info, id)
        self._check(input)
        for key in ("title", "description", "dueDate"):
            if key in input:
                issue[key] = input[key]
        if "priority" in input:
            issue["priority"] = float(input["priority"] or 0)
        if "assigneeId" in input:
            issue["assignee"] = self.users.get(input["assigneeId"] or "")
        if input.get("stateId"):
            issue["state"] = next(s for s in self.states if s["id"] == input["stateId"])
        if "labelIds" in input:
            issue["_labels"] = [self.labels[i] for i in input["labelIds"] or []]
        issue["updatedAt"] = self._now()
        return self._payload(issue)

    def _m_label(self, info: Any, input: dict[str, Any], replaceTeamLabels: bool | None = None) -> dict[str, Any]:
        team_id = input.get("teamId")
        # Names are unique per team, and a workspace label's name is taken in every team.
        if any(lb["name"] == input["name"] and (lb["team"] is None or team_id is None or lb["team"]["id"] == team_id)
               for lb in self.labels.values()):
            raise GraphQLError("Argument Validation Error: a label with this name already exists",
                               extensions={"code": "INPUT_ERROR"})
        label_id = str(uuid.uuid4())
        team = self.team if input.get("teamId") == self.team["id"] else None
        self.labels[label_id] = {"id": label_id, "name": input["name"],
                                 "team": {k: self.team[k] for k in ("id", "key", "name")} if team else None}
        self._sync += 1
        return {"success": True, "issueLabel": self.labels[label_id], "lastSyncId": self._sync}


def signed(doc: dict[str, Any], secret: str, *, delivery: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(doc).encode()
    return body, {"Content-Type": "application/json", "Linear-Delivery": delivery or str(uuid.uuid4()),
                  "Linear-Event": str(doc.get("type") if isinstance(doc, dict) else "Issue"),
                  "Linear-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
