"""``incident-bot serve``: the HTTP server (and Socket Mode when SLACK_APP_TOKEN is set)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import uvicorn

from incident_bot.cli.common import settings_for
from incident_bot.observability import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the bot (HTTP endpoints, fold and outbox workers, scheduler)",
        description="Serve POST /slack/events, POST /pagerduty/webhook, GET /healthz, /readyz, /metrics, and the "
                    "web pages under /ui/ when Sign in with Slack is configured (README: Web view). By default "
                    "it also runs the fold worker (applies stored inputs), the outbox worker (calls Slack and "
                    "PagerDuty) and the scheduler: on PostgreSQL in a child process it starts and watches "
                    "(SERVE_WORKER_PROCESS=false: in threads), on SQLite in threads of this process. Needs "
                    "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and PAGERDUTY_WEBHOOK_SECRETS.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--no-worker", action="store_true",
                   help="only accept and store requests; `incident-bot worker` processes (PostgreSQL) apply "
                        "them, call Slack and run the scheduler")
    p.set_defaults(func=run)


def startup_summary(settings: Any, app: Any, host: str, port: int) -> str:
    """One line that says how this process runs, so an operator reads it instead of guessing."""
    from sqlalchemy.engine import make_url

    from storage import migrate

    url = make_url(settings.database_url)
    db = f"sqlite {url.database}" if url.get_backend_name() == "sqlite" else \
        f"postgresql {url.host or 'localhost'}:{url.port or 5432}/{url.database}"
    try:
        head = migrate.current(settings.database_url) or "empty (run: incident-bot db upgrade)"
    except Exception as exc:  # the database being down is reported by /readyz; start-up goes on
        head = f"unknown ({exc.__class__.__name__})"
    rt = app.state.runtime
    workers = "on, in threads" if rt.worker else "on, in a child process" if rt.wake_remote_fold else \
        "off (--no-worker)"
    parts = [
        f"serving on {host}:{port}",
        f"database {db} at migration {head}",
        f"fold and outbox workers {workers}",
        f"scheduler {'on' if workers != 'off (--no-worker)' and settings.scheduler_enabled else 'off'}",
        f"announce channel {settings.incident_announce_channel or 'none'}",
        f"digest channel {settings.digest_channel or 'none'}",
        f"PagerDuty REST {'on' if settings.pagerduty_rest_enabled else 'off'}",
        "Slack via Socket Mode and HTTP" if settings.slack_app_token else "Slack via HTTP (/slack/events)",
    ]
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from incident_bot.bootstrap import build_app, workers_in_child
    from incident_bot.http_server import config
    from incident_bot.runtime import freeze_heap

    settings = settings_for("slack_bot_token", "slack_signing_secret", "pagerduty_webhook_secrets",
                            command="serve")
    setup_logging(settings.log_level)
    child = not args.no_worker and workers_in_child(settings)
    if child:
        settings.require_tracker()  # what the child checks first: a mistake stops serve, not a restart loop
    app = build_app(settings, start_worker=not args.no_worker, listen_host=args.host, worker_child=child)
    freeze_heap()
    log = logging.getLogger(__name__)
    log.info("%s", startup_summary(settings, app, args.host, args.port), extra={"fields": {"startup": True}})
    uvicorn.Server(config(app, settings, host=args.host, port=args.port, timeout_graceful_shutdown=10)).run()
    return 0
