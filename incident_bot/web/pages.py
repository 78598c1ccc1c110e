"""The read-only pages: incidents, an incident, metrics, digests, actions (and the stylesheet).

Each route checks the viewer, then calls its use cases (``usecases/``: incident_list, incident_page,
actions_by_owner, digest, metrics, learning) in one short read transaction (the use-case runner's
``read``: no write lock on SQLite) in a worker thread (the database calls are synchronous) and renders a
template. Bad query parameters are a 400 naming the parameter;
an unknown incident or digest a 404.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from incident_bot.config import Settings
from incident_bot.core import schedule
from incident_bot.core.learning import RECENT, learning_view
from incident_bot.core.lifecycle import STATUSES
from incident_bot.core.severity import SEVERITIES
from incident_bot.runtime import Runtime
from incident_bot.usecases import digest as digest_service
from incident_bot.usecases import learning, runner
from incident_bot.usecases.actions_by_owner import open_actions
from incident_bot.usecases.digest_chart import trend_charts
from incident_bot.usecases.incident_list import PERIODS, BadFilter, IncidentFilter, list_incidents, services
from incident_bot.usecases.incident_page import incident_by_ref, incident_view
from incident_bot.usecases.metrics import periods_metrics
from incident_bot.usecases.rca import export_rca
from incident_bot.usecases.timeline_window import BadCursor, WindowRequest
from incident_bot.web import charts
from incident_bot.web.auth import sign_in_redirect, viewer
from incident_bot.web.render import Clock, css_response, favicon_response, headers, page
from incident_bot.web.settings import WebConfig
from storage.models import utcnow

WEEK_CHOICES = (4, 8, 12, 26, 52)


class NotFound(LookupError):
    pass


def _metric_weeks(session: Any, settings: Settings, weeks: int, severity: str, service: str
                  ) -> list[charts.MetricChart]:
    zone = settings.tzinfo
    until = schedule.week_containing(utcnow(), zone)[1]  # this week so far is the last point
    periods = schedule.weeks_ending(until, zone, weeks)
    found = periods_metrics(session, periods, severities=[severity] if severity else None,
                            services=[service] if service else None)  # two queries for all the weeks
    docs = [(schedule.week_label(s, zone), doc) for (s, _), doc in zip(periods, found, strict=True)]
    targets = digest_service.targets_from(settings)
    out = []
    for column, key, label, meaning in charts.METRICS:
        rows = [charts.WeekFigures(lbl, d[key]["mean"], d[key]["p50"], d[key]["p90"], d[key]["n"]) for lbl, d in docs]
        lines = [(sev, getattr(t, column)) for sev, t in sorted(targets.items())
                 if getattr(t, column, None) is not None and (not severity or sev == severity)]
        out.append(charts.metric_chart(key, label, meaning, rows, lines))
    return out


def build(rt: Runtime, config: WebConfig) -> APIRouter:
    r = APIRouter()
    settings = rt.settings
    clock = Clock(settings.tzinfo, settings.timezone)

    async def render(request: Request, template: str, load: Callable[[Any], dict[str, Any]]) -> Response:
        who = viewer(config, request)
        if who is None:
            return sign_in_redirect(request)

        common = {"viewer": who, "auth": config.auth, "when": clock, "zone": settings.timezone,
                  "path": request.url.path}
        try:
            context = await run_in_threadpool(runner.read, rt.engine, load)
        except (BadFilter, BadCursor) as exc:
            return page("error.html.j2", {**common, "status": 400, "message": str(exc)}, status=400)
        except NotFound as exc:
            return page("error.html.j2", {**common, "status": 404, "message": str(exc)}, status=404)
        return page(template, {**common, **context})

    def today() -> Any:
        return schedule.local_date(utcnow(), settings.tzinfo)

    @r.get("/ui/static/web.css")
    async def stylesheet() -> Response:
        return css_response()

    @r.get("/ui/static/favicon.svg")
    async def favicon() -> Response:
        return favicon_response()

    @r.get("/ui")
    @r.get("/ui/")
    async def home() -> Response:
        return RedirectResponse("/ui/incidents", status_code=303, headers=headers())

    @r.get("/ui/incidents")
    async def incidents(request: Request) -> Response:
        def load(s: Any) -> dict[str, Any]:
            f = IncidentFilter.parse(dict(request.query_params))
            return {"f": f, "result": list_incidents(s, f), "statuses": STATUSES,
                    "severities": SEVERITIES, "periods": list(PERIODS), "title": "Incidents"}
        return await render(request, "incidents.html.j2", load)

    @r.get("/ui/incidents/{ref}")
    async def incident(request: Request, ref: str) -> Response:
        def load(s: Any) -> dict[str, Any]:
            inc = incident_by_ref(s, ref)
            if inc is None:
                raise NotFound(f"No incident {ref[:40]}.")
            view = incident_view(s, inc, today=today(), window=settings.recurrence_delta,
                                 timeline=WindowRequest.parse(dict(request.query_params)))
            return {**view.doc.context(), "view": view, "inc": inc, "title": f"{inc.ref}: {inc.title}",
                    "channel_url": digest_service.channel_url(inc.slack_channel_id), "timeline_page": view.timeline}
        return await render(request, "incident.html.j2", load)

    @r.get("/ui/incidents/{ref}/rca.{fmt}")
    async def rca_download(request: Request, ref: str, fmt: str) -> Response:
        if viewer(config, request) is None:
            return sign_in_redirect(request)
        if fmt not in ("md", "html"):
            return Response("Unknown format: use rca.md or rca.html", status_code=404, headers=headers())

        def load(s: Any) -> tuple[str, str] | None:
            inc = incident_by_ref(s, ref)
            if inc is None:
                return None
            return inc.ref, export_rca(s, inc.ref, fmt, settings.rca_templates_dir, today=today(),
                                      window=settings.recurrence_delta).text
        found = await run_in_threadpool(runner.read, rt.engine, load)
        if found is None:
            return Response("No such incident", status_code=404, headers=headers())
        media = "text/markdown" if fmt == "md" else "text/html"
        # An attachment: the standalone HTML carries its own inline CSS, which this site's CSP refuses.
        return Response(found[1], media_type=f"{media}; charset=utf-8", headers={
            **headers(), "Content-Disposition": f'attachment; filename="{found[0]}-rca.{fmt}"'})

    @r.get("/ui/metrics")
    async def metrics(request: Request) -> Response:
        def load(s: Any) -> dict[str, Any]:
            p = request.query_params
            severity = (p.get("severity") or "").strip().upper()
            service = (p.get("service") or "").strip()
            weeks_text = (p.get("weeks") or "12").strip()
            if severity and severity not in SEVERITIES:
                raise BadFilter(f"severity must be one of {', '.join(SEVERITIES)}")
            if not weeks_text.isdigit() or int(weeks_text) not in WEEK_CHOICES:
                raise BadFilter(f"weeks must be one of {', '.join(map(str, WEEK_CHOICES))}")
            if len(service) > 255:
                raise BadFilter("service is limited to 255 characters")
            weeks = int(weeks_text)
            now = utcnow()
            kb = learning.keeps_breaking_doc(s, now - RECENT, now, now=now, window=settings.recurrence_delta)
            return {"charts": _metric_weeks(s, settings, weeks, severity, service), "severity": severity,
                    "keeps_breaking": learning_view(kb),
                    "service": service, "weeks": weeks, "week_choices": WEEK_CHOICES, "severities": SEVERITIES,
                    "services": services(s), "title": "Metrics"}
        return await render(request, "metrics.html.j2", load)

    @r.get("/ui/digests")
    async def digests(request: Request) -> Response:
        def load(s: Any) -> dict[str, Any]:
            return {"runs": digest_service.posted_digests(s), "title": "Digests"}
        return await render(request, "digests.html.j2", load)

    @r.get("/ui/digests/{period_key}")
    async def digest(request: Request, period_key: str) -> Response:
        def load(s: Any) -> dict[str, Any]:
            run = digest_service.already_posted(s, period_key)
            if run is None:
                raise NotFound(f"No digest was posted for {period_key[:64]}.")
            view = digest_service.digest_view(s, settings, run.since, run.until, now=_posted_at(run))
            safe = {k: charts.csp_safe(v) for k, v in
                    trend_charts(view).items()}
            return {**view, "charts": safe, "run": run, "title": f"Digest {run.period_key}"}
        return await render(request, "digest.html.j2", load)

    @r.get("/ui/actions")
    async def actions(request: Request) -> Response:
        def load(s: Any) -> dict[str, Any]:
            groups = open_actions(s, today=today())
            return {"groups": groups, "total": sum(len(g.actions) for g in groups),
                    "overdue": sum(g.overdue for g in groups), "today": today(), "title": "Actions"}
        return await render(request, "actions.html.j2", load)

    return r


def _posted_at(run: Any) -> datetime:
    """The digest as it was when posted: CAPA overdue is counted as of the claim (or the period end)."""
    return min(run.claimed_at, run.until) if run.claimed_at else run.until
