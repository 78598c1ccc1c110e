"""``incident-bot serve``: the HTTP server (and Socket Mode when SLACK_APP_TOKEN is set)."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from incident_bot.commands.common import settings_for
from incident_bot.observability import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the bot (HTTP endpoints, fold and outbox workers, scheduler)",
        description="Serve POST /slack/events, POST /pagerduty/webhook, GET /healthz, /readyz, /metrics, and the "
                    "web pages under /ui/ when Sign in with Slack is configured (README: Web view). By default "
                    "this process also runs the fold worker (applies stored inputs), the outbox worker (calls "
                    "Slack and PagerDuty) and the scheduler. Needs SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and "
                    "PAGERDUTY_WEBHOOK_SECRETS.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--no-worker", action="store_true",
                   help="only accept and store requests; `incident-bot worker` processes (PostgreSQL) apply "
                        "them, call Slack and run the scheduler")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from incident_bot.bootstrap import build_app

    settings = settings_for("slack_bot_token", "slack_signing_secret", "pagerduty_webhook_secrets",
                            command="serve").require_tracker()
    setup_logging(settings.log_level)
    app = build_app(settings, start_worker=not args.no_worker, listen_host=args.host)
    logging.getLogger(__name__).info("serving on %s:%s", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
    return 0
