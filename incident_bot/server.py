"""The ASGI app: two signed inbound endpoints, health, readiness and metrics.

The request path is: verify, store the raw input with ONE insert, answer. Applying it to incidents
happens in the fold worker, and every call to Slack or PagerDuty in the outbox worker, both after the
answer (see ``incident_bot.pipeline``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.internals import parse_body
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool

from incident_bot import trackers, web
from incident_bot.http_body import BodyTooLarge, BodyTooSlow, read_body
from incident_bot.observability import DELIVERIES, INBOX_COLLECTOR, OUTBOX_COLLECTOR, REGISTRY, REQUEST_LATENCY
from incident_bot.pagerduty import inbound, signature
from incident_bot.pagerduty.events import MalformedDelivery, parse_delivery
from incident_bot.pipeline import inbox
from incident_bot.pipeline import outbox as outbox_q
from incident_bot.runtime import Runtime
from incident_bot.slack.ids import over_long_id
from incident_bot.slack.socket_mode import SocketModeHook
from incident_bot.usecases import runner
from incident_bot.worker_process import WorkerProcess
from storage.db import ping

log = logging.getLogger("incident_bot.server")
INGEST_DEADLINE = 4.0  # seconds; PagerDuty waits 5 s for an answer


_PD_LATENCY = REQUEST_LATENCY.labels(route="pagerduty")  # a child looked up once, not per request


def _log(outcome: str, status: int, started: float, **fields: Any) -> None:
    _PD_LATENCY.observe(time.perf_counter() - started)
    fields.update(outcome=outcome, status=status, latency_ms=round((time.perf_counter() - started) * 1000, 2))
    log.info("pagerduty delivery %s", outcome, extra={"fields": fields})


def create_app(rt: Runtime, *, bolt: AsyncApp | None = None, lifespan_hooks: list[Any] | None = None,
               on_start: Callable[[], None] | None = None) -> FastAPI:
    OUTBOX_COLLECTOR.counts_fn = lambda: _counts(rt, outbox_q.counts)
    INBOX_COLLECTOR.counts_fn = lambda: _counts(rt, inbox.counts)
    slack_handler = AsyncSlackRequestHandler(bolt) if bolt is not None else None
    socket_mode = next((h for h in lifespan_hooks or [] if isinstance(h, SocketModeHook)), None)
    worker_child = next((h for h in lifespan_hooks or [] if isinstance(h, WorkerProcess)), None)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        if on_start is not None:
            on_start()
        for part in (rt.heartbeat, rt.worker, rt.fold):
            if part is not None:
                part.start()
        for hook in lifespan_hooks or []:
            await hook.start()
        try:
            yield
        finally:
            for hook in reversed(lifespan_hooks or []):
                await hook.stop()
            if "stop" in rt.extras:
                rt.extras["stop"].set()
            for part in (rt.fold, rt.worker, rt.heartbeat):
                if part is not None:
                    await run_in_threadpool(part.stop)

    app = FastAPI(title="incident-bot", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = rt

    @app.post("/pagerduty/webhook")
    async def pagerduty_webhook(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_body(request, rt.settings.http_body_timeout)
        except BodyTooLarge:
            DELIVERIES.labels(source="pagerduty", outcome="too_large").inc()
            _log("too_large", 413, started)
            return JSONResponse({"error": "body over 256 KB"}, status_code=413)
        except BodyTooSlow:
            DELIVERIES.labels(source="pagerduty", outcome="too_slow").inc()
            _log("too_slow", 408, started)
            return JSONResponse({"error": "request body too slow"}, status_code=408)
        if not signature.verify(body, request.headers.get("x-pagerduty-signature"),
                                rt.settings.pagerduty_webhook_secrets):
            DELIVERIES.labels(source="pagerduty", outcome="bad_signature").inc()
            _log("bad_signature", 401, started, webhook_id=(request.headers.get("x-webhook-id") or "")[:64])
            return JSONResponse({"error": "invalid or missing X-PagerDuty-Signature"}, status_code=401)
        try:
            ev = parse_delivery(body)
        except MalformedDelivery as exc:
            DELIVERIES.labels(source="pagerduty", outcome="malformed").inc()
            _log("malformed", 400, started, reason=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            async with asyncio.timeout(INGEST_DEADLINE):
                accepted = await rt.store(inbound.store, rt.engine, ev, body)
        except (OperationalError, DBAPIError, TimeoutError) as exc:
            # Not known to be stored, so not acknowledged: PagerDuty redelivers on 5xx, 503 says "try
            # again". A deadline, because a database behind a network partition answers nothing at all
            # (no refusal, no error): if the insert commits after all, the redelivery is a duplicate.
            DELIVERIES.labels(source="pagerduty", outcome="unavailable").inc()
            _log("unavailable", 503, started, event_id=ev.event_id, event_type=ev.event_type,
                 error=exc.__class__.__name__)
            return JSONResponse({"error": "database unavailable, retry"}, status_code=503,
                                headers={"Retry-After": "5"})
        rt.wake_fold()
        outcome = "duplicate" if accepted.duplicate else "accepted" if ev.known and ev.incident_id else "ignored"
        DELIVERIES.labels(source="pagerduty", outcome=outcome).inc()
        _log(outcome, 202, started, event_id=ev.event_id, event_type=ev.event_type)
        return JSONResponse({"status": outcome}, status_code=202)

    if slack_handler is not None:
        @app.post("/slack/events")
        async def slack_events(request: Request) -> Response:
            started = time.perf_counter()
            try:
                body = await read_body(request, rt.settings.http_body_timeout)
            except BodyTooLarge:
                return JSONResponse({"error": "body too large"}, status_code=413)
            except BodyTooSlow:
                DELIVERIES.labels(source="slack", outcome="too_slow").inc()
                return JSONResponse({"error": "request body too slow"}, status_code=408)
            status = slack_precheck(body, request.headers, rt.settings.slack_signing_secret or "")
            if status is not None:
                # Counted and logged like PagerDuty's refusals: one short line, no header values.
                outcome = "bad_signature" if status == 401 else "malformed"
                DELIVERIES.labels(source="slack", outcome=outcome).inc()
                REQUEST_LATENCY.labels(route="slack").observe(time.perf_counter() - started)
                log.info("slack request %s", outcome, extra={"fields": {
                    "outcome": outcome, "status": status,
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2)}})
                return JSONResponse({"error": "invalid request"}, status_code=status)
            request._body = body  # Bolt reads the body again through request.body()
            status = 500
            try:
                response = await slack_handler.handle(request)
                status = response.status_code
                if status >= 500:
                    # A listener failed before it stored its input (the database is down): nothing was
                    # acknowledged, so Slack retries; 503 says "try again", as for PagerDuty.
                    status = 503
                    return JSONResponse({"error": "unavailable, retry"}, status_code=503,
                                        headers={"Retry-After": "5"})
                return response
            except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
                # Bolt building its request from a signed body of a shape Slack never sends (listener
                # errors do not get here: Bolt answers them itself).
                log.warning("slack request refused: %s: %s", exc.__class__.__name__, exc)
                status = 400
                return JSONResponse({"error": "malformed request"}, status_code=400)
            finally:
                REQUEST_LATENCY.labels(route="slack").observe(time.perf_counter() - started)
                DELIVERIES.labels(source="slack", outcome=str(status)).inc()

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            await asyncio.wait_for(run_in_threadpool(ping, rt.engine), timeout=3)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": exc.__class__.__name__}, status_code=503)
        doc = {"status": "ready", "database": "ok"}
        # Reported, not readiness conditions: the accept paths work without them.
        if socket_mode is not None:
            doc["socket_mode"] = socket_mode.status
        if worker_child is not None:
            doc["worker_process"] = worker_child.status
        return JSONResponse(doc)

    @app.get("/metrics")
    async def metrics() -> Response:
        data = await run_in_threadpool(generate_latest, REGISTRY)
        return PlainTextResponse(data.decode(), media_type=CONTENT_TYPE_LATEST)

    trackers.mount(app, rt)  # POST /github|jira|linear/webhook: the CAPA tracker's, when CAPA_TRACKER is set
    web.mount(app, rt)  # GET /ui/...: the web pages, when Sign in with Slack (or WEB_AUTH=none) is set up
    return app


def slack_precheck(body: bytes, headers: Any, secret: str) -> int | None:
    """401/400 for what Bolt would answer with a 500: it decodes and parses the body before it checks the
    signature, and its check raises on a timestamp that is not a number or a signature that is not ASCII.
    None: a signed, parseable request for Bolt."""
    ts, sig = headers.get("x-slack-request-timestamp") or "", headers.get("x-slack-signature") or ""
    # Bounded before int(): 400 digits overflow float arithmetic, 4,300 exceed int()'s limit (both were 500s).
    if not (ts.isascii() and ts.isdigit() and len(ts) <= 12 and sig.isascii() and len(sig) <= 128):
        return 401
    if abs(time.time() - int(ts)) > 300:
        return 401
    # Over the raw bytes (slack_sdk's verifier decodes them first and raises on invalid UTF-8).
    mac = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    expected = "v0=" + mac.hexdigest()
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return 401
    content_type = (headers.get("content-type") or "").split(";")[0].strip() or None
    try:
        parsed = parse_body(body.decode("utf-8"), content_type)
    except (ValueError, RecursionError):
        return 400
    if not isinstance(parsed, dict):
        return 400
    return 400 if over_long_id(parsed) else None


def _counts(rt: Runtime, count: Callable[[Any], dict[str, int]]) -> dict[str, int]:
    return runner.read(rt.engine, count)
