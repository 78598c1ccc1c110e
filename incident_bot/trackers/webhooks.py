"""Tracker webhooks in: verify, store with ONE inbox INSERT (source github | jira | linear), answer.

Only the configured tracker's route exists (``CAPA_TRACKER``). A request that fails verification is
answered 401 and nothing is written; an event we do not act on (a ping, a comment, another project) is
recorded as ``ignored`` without its body, so a redelivery is still recognised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError

from incident_bot.config import Settings
from incident_bot.http_body import BodyTooLarge, BodyTooSlow, read_body
from incident_bot.observability import DELIVERIES
from incident_bot.pipeline import inbox

log = logging.getLogger("incident_bot.trackers")
MAX_BODY = 1024 * 1024  # GitHub's issues events carry the whole issue body
DEADLINE = 4.0


@dataclass(frozen=True)
class Route:
    source: str
    path: str
    verify: Callable[[bytes, Any, Any, Settings], bool]  # (body, headers, query, settings)
    event_id: Callable[[Any, dict[str, Any]], str | None]
    wanted: Callable[[Any, dict[str, Any], Settings], str | None]


def routes(settings: Settings) -> list[Route]:
    if settings.capa_tracker == "github":
        from incident_bot.trackers import github as gh

        return [Route("github", "/github/webhook",
                      lambda b, h, q, s: gh.verify(b, h, s.github_webhook_secret or ""),
                      lambda h, d: gh.event_id(h), gh.wanted)]
    if settings.capa_tracker == "jira":
        from incident_bot.trackers import jira

        return [Route("jira", "/jira/webhook", jira.verify, jira.event_id, jira.wanted)]
    if settings.capa_tracker == "linear":
        from incident_bot.trackers import linear

        return [Route("linear", "/linear/webhook", linear.verify, linear.event_id, linear.wanted)]
    return []


def mount(app: FastAPI, rt: Any) -> None:
    for route in routes(rt.settings):
        _add(app, rt, route)


def _add(app: FastAPI, rt: Any, route: Route) -> None:
    def answer(outcome: str, status: int, started: float, **fields: Any) -> Response:
        DELIVERIES.labels(source=route.source, outcome=outcome).inc()
        fields.update(outcome=outcome, status=status, latency_ms=round((time.perf_counter() - started) * 1000, 2))
        log.info("%s webhook %s", route.source, outcome, extra={"fields": fields})
        body: dict[str, Any] = {"status": outcome} if status < 400 else {"error": outcome}
        return JSONResponse(body, status_code=status, headers={"Retry-After": "5"} if status == 503 else None)

    async def webhook(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_body(request, rt.settings.http_body_timeout, MAX_BODY)
        except BodyTooLarge:
            return answer("too_large", 413, started)
        except BodyTooSlow:
            return answer("too_slow", 408, started)
        if not route.verify(body, request.headers, request.query_params, rt.settings):
            return answer("bad_signature", 401, started)
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return answer("malformed", 400, started)
        if not isinstance(doc, dict):
            return answer("malformed", 400, started)
        event_id = route.event_id(request.headers, doc)
        if not event_id or len(event_id) > inbox.MAX_EVENT_ID:
            return answer("no_event_id", 400, started)
        event_type = route.wanted(request.headers, doc, rt.settings)
        kwargs: dict[str, Any] = {"source": route.source, "event_id": event_id,
                                  "event_type": event_type or "ignored", "payload": body.decode("utf-8", "replace")}
        if event_type is None:
            kwargs.update(payload="", status=inbox.DONE, outcome="ignored")
        try:
            async with asyncio.timeout(DEADLINE):
                accepted = await rt.store(lambda: inbox.accept(rt.engine, **kwargs))
        except (OperationalError, DBAPIError, TimeoutError) as exc:
            return answer("unavailable", 503, started, error=exc.__class__.__name__)
        rt.wake_fold()
        outcome = "duplicate" if accepted.duplicate else "accepted" if event_type else "ignored"
        return answer(outcome, 202, started, event_id=event_id, event_type=event_type)

    app.add_api_route(route.path, webhook, methods=["POST"], name=f"{route.source}_webhook")
