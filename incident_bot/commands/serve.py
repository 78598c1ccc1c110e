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


def run(args: argparse.Namespace) -> int:
    settings = settings_for("slack_bot_token", "slack_signing_secret", "pagerduty_webhook_secrets",
                            command="serve")
    setup_logging(settings.log_level)
    app = build_app(settings, start_worker=not args.no_worker)
    logging.getLogger(__name__).info("serving on %s:%s", args.host, args.port)
    from incident_bot.http_server import config

    uvicorn.Server(config(app, settings, host=args.host, port=args.port, timeout_graceful_shutdown=10)).run()
    return 0
