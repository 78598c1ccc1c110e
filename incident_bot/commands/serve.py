"""``incident-bot serve``: the HTTP server (and Socket Mode when SLACK_APP_TOKEN is set)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from incident_bot.commands.common import settings_for
from incident_bot.observability import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the bot (HTTP endpoints, outbox worker, scheduler)",
        description="Serve POST /slack/events, POST /pagerduty/webhook, GET /healthz, /readyz, /metrics. "
                    "Needs SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and PAGERDUTY_WEBHOOK_SECRETS.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--no-worker", action="store_true",
                   help="do not deliver the outbox from this process (another replica does)")
    p.set_defaults(func=run)


def build_app(settings, *, start_worker: bool = True):  # type: ignore[no-untyped-def]
    """The production app: runtime, Bolt handler, Socket Mode and scheduler hooks."""
    from incident_bot.runtime import build_runtime
    from incident_bot.server import create_app
    from incident_bot.slack.app import create_handler
    from incident_bot.slack.socket_mode import SocketModeHook

    rt = build_runtime(settings, start_worker=start_worker)
    handler = create_handler(rt)
    hooks = []
    if settings.slack_app_token:
        hooks.append(SocketModeHook(handler.app, settings.slack_app_token))
    try:
        from incident_bot.scheduler import SchedulerHook
    except ModuleNotFoundError:
        SchedulerHook = None
    if SchedulerHook is not None:
        hooks.append(SchedulerHook(rt))
    return create_app(rt, slack_handler=handler, lifespan_hooks=hooks)


def startup_summary(settings, app, host: str, port: int) -> str:  # type: ignore[no-untyped-def]
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
    parts = [
        f"serving on {host}:{port}",
        f"database {db} at migration {head}",
        f"outbox worker {'on' if rt.worker else 'off (--no-worker)'}",
        f"scheduler {'on' if settings.scheduler_enabled else 'off'}",
        f"announce channel {settings.incident_announce_channel or 'none'}",
        f"digest channel {settings.digest_channel or 'none'}",
        f"PagerDuty REST {'on' if settings.pagerduty_rest_enabled else 'off'}",
        "Slack via Socket Mode and HTTP" if settings.slack_app_token else "Slack via HTTP (/slack/events)",
    ]
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    settings = settings_for("slack_bot_token", "slack_signing_secret", "pagerduty_webhook_secrets",
                            command="serve")
    setup_logging(settings.log_level)
    app = build_app(settings, start_worker=not args.no_worker)
    log = logging.getLogger(__name__)
    log.info("%s", startup_summary(settings, app, args.host, args.port), extra={"fields": {"startup": True}})
    from incident_bot.http_server import config

    uvicorn.Server(config(app, settings, host=args.host, port=args.port, timeout_graceful_shutdown=10)).run()
    return 0
