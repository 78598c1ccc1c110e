"""Shared plumbing of the tracker stand-ins (GitHub, Jira, Linear): HTTPS with a throwaway ``trustme`` CA,
JSON routes, a token check, call recording and faults (see :class:`http_standin.StandInServer`).

Clients trust the stand-in through :attr:`TrackerStandIn.ca_pem_path` (``TRACKER_CA_BUNDLE``). Faults:
``fail_next("POST /repos", status=429)`` answers 429 with ``Retry-After``; ``status=401`` answers the
tracker's bad-credentials error; ``delay("POST /repos", 2)`` applies the call, then answers late (a client
that times out has created the ticket without knowing it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qs

from incident_bot.demo.http_standin import Fault, Reply, Request, StandInServer, matches_rest_route
from incident_bot.demo.tls import ThrowawayTLS

Answer = tuple[int, Any]
Route = Callable[[dict[str, Any], Request, re.Match[str]], Answer]


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(str(body))
        self.status, self.body = status, body


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer; ``body=None`` answers with no body at all (Jira's 204 No Content)."""
    return Reply(status, b"" if body is None else json.dumps(body).encode(), headers or {})


class TrackerStandIn(StandInServer):
    routes: ClassVar[tuple[tuple[str, str, str], ...]] = ()  # (verb, path regex, method name)

    def __init__(self, tokens: list[str] | None = None) -> None:
        super().__init__()
        self.tokens = set(tokens or [])
        self.tls = ThrowawayTLS("tracker-standin-")
        self.ca_pem_path = self.tls.ca_pem_path
        self._compiled = [(verb, re.compile(rx), getattr(self, name)) for verb, rx, name in self.routes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _describe(self, request: Request) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(request.query, keep_blank_values=True).items()}
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body = {"_unparseable_body": True}
            params.update(body if isinstance(body, dict) else {"_body": body})
        return f"{request.verb} {request.path.rstrip('/') or '/'}", params

    def _matches(self, pattern: str, key: str) -> bool:
        return matches_rest_route(pattern, key)

    def authorised(self, request: Request) -> bool:
        raise NotImplementedError

    def auth_error(self) -> Answer:
        return 401, {"message": "Bad credentials"}

    def _answer(self, request: Request, key: str, params: dict[str, Any]) -> Reply:
        if not self.authorised(request):
            return _json(*self.auth_error())
        verb, _, path = key.partition(" ")
        for route_verb, pattern, route in self._compiled:
            if route_verb == verb and (match := pattern.fullmatch(path)):
                try:
                    with self._lock:
                        return _json(*route(params, request, match))
                except ApiError as exc:
                    return _json(exc.status, exc.body)
        return _json(404, {"message": "Not Found"})

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.status == 429:
            return _json(429, {"message": fault.error or "API rate limit exceeded"},
                         {"Retry-After": str(fault.retry_after or 1)})
        if fault.status == 401:
            return _json(*self.auth_error())
        return _json(fault.status, {"message": fault.error or "Server Error"})
