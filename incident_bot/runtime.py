"""What a running process holds: settings, the database engine, who we are in Slack, the workers.

Built by ``incident_bot.bootstrap`` (the one place that wires a process); everything else receives it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from incident_bot.config import Settings
from storage import migrate
from storage.db import get_engine, is_sqlite, kept_connections

if TYPE_CHECKING:
    from incident_bot.pipeline.fold import FoldWorker
    from incident_bot.pipeline.heartbeat import Heartbeat
    from incident_bot.pipeline.outbox_worker import OutboxWorker

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Identity:
    """Who the bot is in Slack: the workspace it serves (SLACK_TEAM_ID, or learned from ``auth.test``)
    and its own user id (so Bolt ignores the bot's own events). None until known."""

    team_id: str | None = None
    bot_user_id: str | None = None


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    identity: Identity = field(default_factory=Identity)
    fold: FoldWorker | None = None
    worker: OutboxWorker | None = None
    heartbeat: Heartbeat | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # The fold in another process of ours (worker_process.py): how to tell it an input was stored.
    wake_remote_fold: Callable[[], None] | None = None
    store_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.store_slots = asyncio.Semaphore(kept_connections(self.engine))

    async def store(self, fn: Callable[..., T], *args: Any) -> T:
        """An accept path's INSERT, in the thread pool, with at most as many in flight as the pool keeps
        connections: a burst of requests waits here, on the event loop, for one. Without this bound each
        request past the pool's size opened an overflow connection and closed it after its one INSERT;
        on PostgreSQL that churn (a connection costs a backend start and its authentication) cost a third
        of the accept path's throughput at 32 concurrent requests (bench/RESULTS.md, "pool churn")."""
        async with self.store_slots:
            return await run_in_threadpool(fn, *args)

    def wake_fold(self) -> None:
        """An input was stored: wake this process's fold, or the worker child's. Other replicas' folds
        find it at their next poll."""
        if self.fold is not None:
            self.fold.notify()
        elif self.wake_remote_fold is not None:
            self.wake_remote_fold()


def freeze_heap() -> None:
    """Collect, then put every object alive now (modules, classes, the app and its clients: ~180,000 for
    ``serve``) out of the garbage collector's reach. They live as long as the process; left in, each full
    collection walks them all again, and a request that builds many objects (an incident page of 5,000
    timeline rows) triggers several: ~160 ms of collection per such page (bench/RESULTS.md, "Read paths").
    For long-running processes, once they are built (``serve``, ``worker``)."""
    gc.collect()
    gc.freeze()


def prepare_database(settings: Settings, *, auto_migrate: bool | None = None) -> Engine:
    """SQLite is migrated on start (zero set-up); PostgreSQL by ``incident-bot db upgrade`` unless asked."""
    if auto_migrate is None:
        auto_migrate = is_sqlite(settings.database_url)
    engine = get_engine(settings.database_url)  # creates a SQLite file's directory
    if auto_migrate and not migrate.is_current(engine):  # one SELECT; Alembic loads only to migrate
        migrate.upgrade(settings.database_url)
    return engine
