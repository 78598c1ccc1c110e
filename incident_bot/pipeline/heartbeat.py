"""Worker heartbeats: a dead worker's outbox claims are taken over in seconds, not after a lease.

Each process that runs workers keeps a row in ``worker_heartbeats`` fresh every ``interval`` seconds
(procrastinate's stalled-job recovery works the same way). Any live process that sees a row older than
``dead_after`` hands that worker's in-flight outbox rows back to the queue (marked uncertain, so the job
checks whether its first attempt reached Slack) and deletes the row. On SQLite one process is the only
worker, so at start it takes back every claim it finds at once. The fold needs none of this: its claims
commit with their effects, so a dead worker's batch is simply still pending.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from incident_bot.pipeline import outbox
from storage.db import session_scope
from storage.models import WorkerHeartbeat, utcnow

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    def __init__(self, engine: Engine, worker_id: str, *, interval: float = 2.0, dead_after: float = 10.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.interval = interval
        self.dead_after = timedelta(seconds=dead_after)
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self._take_over(everyone_else=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        try:  # a clean exit: nobody needs to wait for this worker to look dead
            with session_scope(self.engine) as s:
                s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == self.worker_id))  # type: ignore[arg-type]
        except OperationalError:
            pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except OperationalError as exc:
                log.warning("heartbeat: database unavailable (%s)", exc.__class__.__name__)
            except Exception:
                log.exception("heartbeat: unexpected error")
            self._stop.wait(self.interval)

    def beat(self) -> int:
        """Refresh this worker's row and take over the claims of dead workers; returns rows taken back."""
        now = self.clock()
        with session_scope(self.engine) as s:
            row = s.get(WorkerHeartbeat, self.worker_id)
            if row is None:
                s.add(WorkerHeartbeat(worker_id=self.worker_id, started_at=now, heartbeat_at=now))
            else:
                row.heartbeat_at = now
                s.add(row)
        return self._take_over(everyone_else=False)

    def _take_over(self, *, everyone_else: bool) -> int:
        now = self.clock()
        with session_scope(self.engine) as s:
            dead = _dead_workers(s, self.worker_id, None if everyone_else else now - self.dead_after)
            taken = outbox.release_claims_of(s, dead, now=now) if dead else 0
            if everyone_else:
                taken += outbox.release_claims_of(s, None, now=now)
            if dead:
                s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id.in_(dead)))  # type: ignore[attr-defined]
        if taken:
            log.warning("heartbeat: took back %d outbox call(s) in flight on dead worker(s) %s", taken,
                        ", ".join(dead) or "(unknown)")
        return taken


def _dead_workers(s: Session, me: str, before: datetime | None) -> list[str]:
    stmt = select(WorkerHeartbeat.worker_id).where(WorkerHeartbeat.worker_id != me)  # type: ignore[arg-type]
    if before is not None:
        stmt = stmt.where(WorkerHeartbeat.heartbeat_at < before)  # type: ignore[arg-type]
    return list(s.execute(stmt).scalars())
