"""The web view: read-only pages for commanders and leads, signed in with Slack.

``/ui/incidents`` (filters, search, pages), ``/ui/incidents/INC-n`` (header, milestones, metrics,
a window of the timeline with links to the others, the RCA with its CAPA and PagerDuty links),
``/ui/metrics`` (MTTx per week as SVG charts with their numbers), ``/ui/digests`` (every posted
digest), ``/ui/actions`` (open and overdue CAPA by owner).

Served by the bot's own ASGI app, server-rendered (Jinja2, inline SVG from pygal): no JavaScript, no
CDN, one stylesheet, ``Content-Security-Policy: default-src 'self'``. Off (404) unless Sign in with
Slack is configured; see :mod:`incident_bot.web.settings`. Modules: ``settings`` (on/off and checks),
``session`` (signed cookies), ``oidc`` (Slack's OpenID Connect), ``auth`` (sign-in routes),
``charts`` (SVG), ``render`` (templates and headers), ``pages`` (routes). What the pages read is use
cases' (``usecases/incident_list``, ``incident_page`` with ``timeline_window``, ``actions_by_owner``,
``digest``, ``metrics``), called through the runner: no SQL here (tests/test_import_graph.py).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI

from incident_bot.runtime import Runtime
from incident_bot.web import auth, pages
from incident_bot.web.settings import web_config

log = logging.getLogger(__name__)


def router(rt: Runtime) -> APIRouter | None:
    """The pages' routes, or None when they are off. Raises ConfigError for a half or bad set-up.

    ``rt.extras["listen_host"]`` is the address the server binds (set by ``serve`` and the demo).
    """
    config = web_config(rt.settings, listen_host=rt.extras.get("listen_host"))
    if config is None:
        log.info("web pages off (set SLACK_CLIENT_ID, SLACK_CLIENT_SECRET, WEB_BASE_URL, WEB_SESSION_SECRET "
                 "and SLACK_TEAM_ID to turn them on)")
        return None
    if config.auth == "none":
        log.warning("WEB_AUTH=none: the web pages are open WITHOUT sign-in to anyone who can reach %s "
                    "(loopback only)", rt.extras.get("listen_host"))
    else:
        log.info("web pages on at %s/ui/ (Sign in with Slack, workspace %s)", config.base_url, config.team_id)
    r = APIRouter()
    r.include_router(auth.build(config))
    r.include_router(pages.build(rt, config))
    return r


def mount(app: FastAPI, rt: Runtime) -> None:
    """Add the pages to ``app`` when they are configured (the one call the server makes)."""
    r = router(rt)
    if r is not None:
        app.include_router(r)
