"""Wiring: settings -> engine, migrations, Slack/PagerDuty clients, outbox worker. Used by serve and demo."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from incident_bot.config import Settings
from incident_bot.pagerduty.rest import PagerDutyRest
from incident_bot.slack.delivery import Context
from incident_bot.slack.outbox import OutboxWorker, make_slack_client
from storage import migrate
from storage.db import get_engine, is_sqlite

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    worker: OutboxWorker | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def prepare_database(settings: Settings, *, auto_migrate: bool | None = None) -> Engine:
    """SQLite is migrated on start (zero set-up); PostgreSQL by ``incident-bot db upgrade`` unless asked."""
    if auto_migrate is None:
        auto_migrate = is_sqlite(settings.database_url)
    engine = get_engine(settings.database_url)  # creates a SQLite file's directory
    if auto_migrate:
        migrate.upgrade(settings.database_url)
    return engine


def build_worker(settings: Settings, engine: Engine, **overrides: Any) -> OutboxWorker:
    assert settings.slack_bot_token, "the outbox needs SLACK_BOT_TOKEN"
    slack = make_slack_client(settings.slack_bot_token, settings.slack_api_url, settings.slack_timeout)
    ctx = Context(slack=slack, pagerduty=PagerDutyRest.from_settings(settings))
    try:
        ctx.bot_user_id = slack.auth_test().get("user_id")
    except Exception as exc:  # Slack down at start-up: the worker retries calls; adoption just can't match
        log.warning("auth.test failed at start-up (%s); continuing", exc.__class__.__name__)
    from incident_bot.slack.rate_limits import DEFAULT_BUDGETS, RateGate

    budgets = {**DEFAULT_BUDGETS, "conversations.create": settings.slack_channel_create_per_minute}
    kwargs: dict[str, Any] = {
        "gate": RateGate(budgets),
        "max_attempts": settings.outbox_max_attempts,
        "poll_interval": settings.outbox_poll_interval,
        "threads": settings.outbox_workers,
        "backoff_base": settings.outbox_backoff_base,
        "backoff_cap": settings.outbox_backoff_cap,
    }
    kwargs.update(overrides)
    return OutboxWorker(engine, ctx, **kwargs)


def build_runtime(settings: Settings, *, start_worker: bool = True, **worker_overrides: Any) -> Runtime:
    engine = prepare_database(settings)
    rt = Runtime(settings=settings, engine=engine)
    if start_worker:
        rt.worker = build_worker(settings, engine, **worker_overrides)
    return rt
