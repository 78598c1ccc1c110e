"""The one place that wires a process: settings -> engine -> pipeline -> Bolt app -> ASGI app.

``serve`` runs everything by default: on SQLite in one process, on PostgreSQL with its workers in a
child process (worker_process.py); ``serve --no-worker`` is an accept-only replica and ``incident-bot
worker`` a worker-only one (PostgreSQL). Everything else receives what it needs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fastapi import FastAPI

from incident_bot.config import Settings
from incident_bot.observability import read_worker_metrics_from
from incident_bot.pagerduty import jobs as pagerduty_jobs
from incident_bot.pagerduty.inbound import PagerDutyApplier
from incident_bot.pagerduty.rest import PagerDutyRest
from incident_bot.pipeline.fold import FoldWorker
from incident_bot.pipeline.heartbeat import Heartbeat, new_worker_id
from incident_bot.pipeline.jobs import Context, JobRegistry
from incident_bot.pipeline.outbox_worker import OutboxWorker
from incident_bot.pipeline.rate_limits import DEFAULT_BUDGETS, RateGate
from incident_bot.runtime import Identity, Runtime, prepare_database
from incident_bot.scheduler import SchedulerHook
from incident_bot.server import create_app
from incident_bot.slack import jobs as slack_jobs
from incident_bot.slack.accept import create_bolt_app
from incident_bot.slack.apply import SlackApplier
from incident_bot.slack.jobs import make_slack_client
from incident_bot.slack.socket_mode import SocketModeHook
from incident_bot.trackers import appliers as tracker_appliers
from incident_bot.trackers import jobs as tracker_jobs
from incident_bot.trackers.outbound import build as build_tracker
from incident_bot.usecases.backfill import IMPORT_SOURCE
from incident_bot.usecases.similar import IntroLookup
from incident_bot.worker_process import WorkerProcess
from storage.db import is_sqlite

log = logging.getLogger(__name__)


def job_registry() -> JobRegistry:
    """Every outbox job kind, named once: a duplicate raises here, an unknown kind is parked."""
    return (JobRegistry()
            .add(slack_jobs.JOBS, slack_jobs.classify)
            .add(pagerduty_jobs.JOBS, pagerduty_jobs.classify)
            .add(tracker_jobs.JOBS, tracker_jobs.classify))


def appliers(settings: Settings, slack: Any = None) -> dict[str, Any]:
    """The fold's appliers by inbox source. ``backfill`` folds its imported rows with the same ones."""
    found: dict[str, Any] = {"pagerduty": PagerDutyApplier(settings),
                             IMPORT_SOURCE: PagerDutyApplier(settings, imported=True)}
    if slack is not None:
        found["slack"] = slack
    return found


def build_runtime(settings: Settings, *, start_worker: bool = True, **worker_overrides: Any) -> Runtime:
    engine = prepare_database(settings)
    rt = Runtime(settings=settings, engine=engine, identity=Identity(team_id=settings.slack_team_id))
    if not start_worker:
        return rt
    assert settings.slack_bot_token, "the outbox needs SLACK_BOT_TOKEN"
    worker_id = new_worker_id()
    slack = make_slack_client(settings.slack_bot_token, settings.slack_api_url, settings.slack_timeout)
    api_host = _host(settings.slack_api_url)
    ctx = Context(slack=slack, pagerduty=PagerDutyRest.from_settings(settings),
                  respond_hosts=(api_host,) if api_host else (), tracker=build_tracker(settings, engine),
                  history=IntroLookup(engine, settings.recurrence_delta))
    budgets = {**DEFAULT_BUDGETS, "conversations.create": settings.slack_channel_create_per_minute,
               **settings.slack_rate_budgets}
    kwargs: dict[str, Any] = {
        "gate": RateGate(budgets), "max_attempts": settings.outbox_max_attempts,
        "poll_interval": settings.outbox_poll_interval, "threads": settings.outbox_workers,
        "backoff_base": settings.outbox_backoff_base, "backoff_cap": settings.outbox_backoff_cap,
        "worker_id": worker_id,
    }
    kwargs.update(worker_overrides)
    rt.worker = OutboxWorker(engine, ctx, job_registry(), **kwargs)
    rt.fold = FoldWorker(engine, {**appliers(settings, SlackApplier(rt)), **tracker_appliers(settings)},
                         batch_size=settings.fold_batch_size, max_attempts=settings.fold_max_attempts,
                         poll_interval=settings.fold_poll_interval, on_folded=rt.worker.notify)
    rt.heartbeat = Heartbeat(engine, worker_id, interval=settings.worker_dead_after / 5,
                             dead_after=settings.worker_dead_after)
    return rt


def learn_identity(rt: Runtime, client: Any) -> None:
    """``auth.test`` in the background: the workspace (when SLACK_TEAM_ID is unset) and the bot's user id.
    Never on the request path, never blocking start-up; retried while Slack does not answer."""
    stop = rt.extras.setdefault("stop", threading.Event())

    def run() -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                resp = client.auth_test()
            except Exception as exc:
                log.warning("auth.test failed (%s); trying again in %.0f s", exc.__class__.__name__, delay)
                stop.wait(delay)
                delay = min(delay * 2, 60.0)
                continue
            rt.identity.bot_user_id = resp.get("user_id")
            if rt.identity.team_id is None:
                rt.identity.team_id = resp.get("team_id")
            if rt.worker is not None:
                rt.worker.ctx.bot_user_id = rt.identity.bot_user_id
            log.info("slack identity: team %s, bot user %s", rt.identity.team_id, rt.identity.bot_user_id)
            return

    threading.Thread(target=run, name="auth-test", daemon=True).start()


def workers_in_child(settings: Settings) -> bool:
    """Where ``serve`` runs its workers: a child process on PostgreSQL (SERVE_WORKER_PROCESS, on by
    default), threads on SQLite (one process is its one writer)."""
    return settings.serve_worker_process and not is_sqlite(settings.database_url)


def build_app(settings: Settings, *, start_worker: bool = True, listen_host: str | None = None,
              worker_child: bool = False) -> FastAPI:
    """The production ASGI app: accept paths, web pages, and (unless ``start_worker`` is off) the workers,
    in threads of this process or, with ``worker_child``, in a child process it starts and watches."""
    in_threads = start_worker and not worker_child
    rt = build_runtime(settings, start_worker=in_threads)
    rt.extras["listen_host"] = listen_host  # the web pages allow WEB_AUTH=none on loopback only
    bolt = create_bolt_app(rt)
    hooks: list[Any] = []
    if settings.slack_app_token:
        hooks.append(SocketModeHook(bolt, settings.slack_app_token))
    if in_threads:
        hooks.append(SchedulerHook(rt))
    elif start_worker:
        child = WorkerProcess()
        rt.wake_remote_fold = child.wake
        read_worker_metrics_from(child.metrics_dir)
        hooks.append(child)
    assert settings.slack_bot_token
    client = rt.worker.ctx.slack if rt.worker else make_slack_client(
        settings.slack_bot_token, settings.slack_api_url, settings.slack_timeout)
    return create_app(rt, bolt=bolt, lifespan_hooks=hooks, on_start=lambda: learn_identity(rt, client))


def _host(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname
    except ValueError:
        return None
