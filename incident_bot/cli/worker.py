"""``incident-bot worker``: the fold and outbox workers and the scheduler, without HTTP.

For deployments that run accept-only replicas (``serve --no-worker``) and worker replicas apart, on
PostgreSQL: any number of each. SIGTERM / Ctrl-C stops it after the current batch and call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading

from incident_bot.cli.common import settings_for
from incident_bot.observability import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker", help="apply stored inputs and deliver the outbox (no HTTP)",
        description="Run the fold worker (applies stored PagerDuty and Slack inputs to incidents), the outbox "
                    "worker (calls Slack and PagerDuty) and the scheduler, without serving HTTP. Use it with "
                    "`serve --no-worker` replicas on PostgreSQL. Needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET.",
    )
    # serve's own child (worker_process.py): the read end of its wake-up pipe; not for operators.
    p.add_argument("--wake-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from incident_bot.bootstrap import build_runtime, learn_identity
    from incident_bot.runtime import freeze_heap
    from incident_bot.scheduler import SchedulerHook
    from incident_bot.worker_process import tell_parent_ready, wake_from_parent

    settings = settings_for("slack_bot_token", "slack_signing_secret", command="worker").require_tracker()
    setup_logging(settings.log_level)
    rt = build_runtime(settings, start_worker=True)
    assert rt.worker and rt.fold and rt.heartbeat
    freeze_heap()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.wake_fd is not None:
        wake_from_parent(args.wake_fd, rt.fold.notify, stop)
    learn_identity(rt, rt.worker.ctx.slack)
    scheduler = SchedulerHook(rt)
    rt.heartbeat.start()
    rt.worker.start()
    rt.fold.start()
    asyncio.run(scheduler.start())
    logging.getLogger(__name__).info("worker running (fold, outbox, scheduler)")
    if args.ready_fd is not None:
        tell_parent_ready(args.ready_fd)
    stop.wait()
    asyncio.run(scheduler.stop())
    rt.extras.get("stop", threading.Event()).set()
    rt.fold.stop()
    rt.worker.stop()
    rt.heartbeat.stop()
    return 0
