"""The outbox worker: performs queued calls (Slack, PagerDuty REST, trackers), in order per key, at
least once, with the exactly-once checks of each job kind (see :mod:`incident_bot.pipeline.jobs`).

Retry policy (ours, not the client's: ``retry_handlers=[]`` so nothing is silently sent twice); each
adapter classifies its own client's errors into:
- HTTP 429: wait ``Retry-After`` for that method (all rows of the method), no attempt counted;
- 5xx, timeouts, connection errors, Slack's transient errors: exponential backoff with jitter;
- anything that can never succeed (``channel_not_found``, ``invalid_auth``...): parked as ``dead``
  with its error, counted in ``/metrics`` and logged, never retried.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from incident_bot.observability import OUTBOX_DELIVERIES
from incident_bot.pipeline import outbox as q
from incident_bot.pipeline.group_commit import GroupCommit
from incident_bot.pipeline.jobs import Context, Delivered, Failure, JobRegistry, UnknownJobKind
from incident_bot.pipeline.loop import LoopWorker
from incident_bot.pipeline.rate_limits import RateGate
from storage import repo
from storage.db import session_scope
from storage.models import Incident, OutboxMessage, utcnow

log = logging.getLogger(__name__)

# A claim's lease is the last resort (a worker that hangs without dying); a dead worker's claims are
# handed back within seconds through its stale heartbeat (pipeline.heartbeat).
LEASE = timedelta(seconds=120)
REQUEUE_EVERY = timedelta(seconds=5)  # how often a worker looks for claims whose lease ran out


class OutboxWorker(LoopWorker):
    name = "outbox"

    def __init__(
        self,
        engine: Engine,
        ctx: Context,
        registry: JobRegistry,
        *,
        worker_id: str = "outbox",
        max_attempts: int = 30,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        poll_interval: float = 0.2,
        threads: int = 2,
        gate: RateGate | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(poll_interval=poll_interval, threads=threads)
        self.engine = engine
        self.ctx = ctx
        self.registry = registry
        self.worker_id = worker_id
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.gate = gate or RateGate()
        self.clock = clock
        self._lost_lock = threading.Lock()
        self._lost_claims: set[datetime] = set()
        self._claiming = threading.Lock()  # one claim at a time in this process
        self._state = threading.Lock()  # guards _ready and _busy
        self._ready: deque[tuple[OutboxMessage, Incident | None]] = deque()  # claimed, not yet taken
        self._busy = 0  # threads delivering a row right now
        self._next_requeue = datetime.min.replace(tzinfo=UTC)
        self.group = GroupCommit(engine)  # the outcomes of calls, stored together

    # -- one step ----------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Deliver at most one row. Returns how many rows were handled (0 or 1)."""
        item = self._next()
        if item is None:
            return 0
        with self._state:
            self._busy += 1
        try:
            self._deliver(*item)
        finally:
            with self._state:
                self._busy -= 1
        return 1

    def _next(self) -> tuple[OutboxMessage, Incident | None] | None:
        """A claimed row for this thread. One thread of the process claims at a time, for itself and for
        every thread that is not delivering: one transaction hands out a row to each idle thread, instead
        of each thread taking its own (under a storm the claims were half the worker's transactions)."""
        with self._state:
            if self._ready:
                return self._ready.popleft()
        with self._claiming:
            with self._state:
                if self._ready:  # another thread claimed for us while we waited
                    return self._ready.popleft()
                wanted = max(1, self.threads - self._busy)
            claimed = self._claim(wanted)
            if not claimed:
                return None
            with self._state:
                self._ready.extend(claimed[1:])
        if len(claimed) > 1:
            self.wake.set()  # the idle threads: rows are waiting for them
        return claimed[0]

    def _claim(self, limit: int) -> list[tuple[OutboxMessage, Incident | None]]:
        now = self.clock()
        self._release_lost_claims()
        # The lease end doubles as a claim token: unique, so a claim whose COMMIT reached the database
        # but whose answer was lost can be found and handed back, instead of waiting out the lease.
        lease = LEASE + timedelta(microseconds=random.randrange(1, 1_000_000))
        try:
            with session_scope(self.engine) as s:
                if now >= self._next_requeue:  # the lease is the last resort: no need to look at every claim
                    q.requeue_expired(s, now=now)
                    self._next_requeue = now + REQUEUE_EVERY
                rows = q.claim(s, now=now, lease=lease, limit=limit, exclude_methods=self.gate.blocked(),
                               worker_id=self.worker_id, admit=self.gate.before_call)
                # The incidents the calls need, in the same transaction (one query, not one each).
                ids = {r.incident_id for r in rows if r.incident_id}
                found = {i.id: i for i in s.execute(select(Incident).where(Incident.id.in_(ids))).scalars()} \
                    if ids else {}  # type: ignore[union-attr]
        except OperationalError:
            with self._lost_lock:
                self._lost_claims.add(now + lease)
            raise
        return [(row, found.get(row.incident_id) if row.incident_id else None) for row in rows]

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        self._hand_back_ready()

    def _hand_back_ready(self) -> None:
        """Rows claimed for threads that stopped before taking them: pending again, no attempt counted
        (otherwise they would wait for the heartbeat or, on SQLite, the next start)."""
        with self._state:
            left, self._ready = list(self._ready), deque()
        if not left:
            return
        try:
            with session_scope(self.engine) as s:
                for row, _ in left:
                    q.retry_later(s, row.id or 0, at=self.clock(), error="worker stopped", count_attempt=False,
                                  uncertain=bool(row.result.get("uncertain")), result=row.result)
        except OperationalError:
            log.warning("outbox: could not hand back %d claimed row(s) at stop; the heartbeat will", len(left))

    def _release_lost_claims(self) -> None:
        with self._lost_lock:
            tokens = list(self._lost_claims)
        if not tokens:
            return
        with session_scope(self.engine) as s:
            released = q.release_claims(s, tokens)
        with self._lost_lock:
            self._lost_claims.difference_update(tokens)
        if released:
            log.info("outbox: handed back %d row(s) whose claim's answer was lost", released)

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver until nothing is due (for the CLI, the demo and tests). True if the queue emptied."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run_once():
                continue
            with session_scope(self.engine) as s:
                if not q.has_work(s):
                    return True
            time.sleep(0.02)
        return False

    def _deliver(self, row: OutboxMessage, inc: Incident | None) -> None:
        assert row.id is not None
        uncertain = bool(row.result.get("uncertain"))
        started = time.monotonic()
        try:
            kind = self.registry[row.method]
            out = kind.run(self.ctx, row, inc, uncertain)
        except UnknownJobKind:
            self._dead(row, f"unknown job kind {row.method!r} (not registered)")
        except Exception as exc:
            failure = self.registry.classify(exc)
            if not failure.recognised:
                log.exception("outbox %s: %s failed unexpectedly", row.id, row.method)
            self._failed(row, failure)
        else:
            now = self.clock()

            def done(s: Session) -> None:
                apply_delivered(s, row, out, now)
                q.finish(s, row.id or 0, result=out.result)

            self._record(row, done)
            OUTBOX_DELIVERIES.labels(method=row.method, outcome="done").inc()
            log.info("outbox %s: %s delivered in %.0f ms", row.id, row.method,
                     (time.monotonic() - started) * 1000)

    # -- outcomes ----------------------------------------------------------------------------------
    def _failed(self, row: OutboxMessage, failure: Failure) -> None:
        if failure.action == "permanent":
            self._dead(row, failure.message)
        elif failure.action == "rate_limited":
            retry_after = failure.retry_after if failure.retry_after is not None else 30.0
            self.gate.penalise(row.method, retry_after)
            OUTBOX_DELIVERIES.labels(method=row.method, outcome="rate_limited").inc()
            at = self.clock() + timedelta(seconds=retry_after)
            self._record(row, lambda s: q.retry_later(
                s, row.id or 0, at=at, error=f"{failure.message} {retry_after:g}s",
                uncertain=bool(row.result.get("uncertain")), count_attempt=False))
        elif failure.action == "wait":
            at = self.clock() + timedelta(seconds=failure.retry_after or 1.0)
            log.info("outbox %s: %s waits %.0f s: %s", row.id, row.method, failure.retry_after or 1.0,
                     failure.message)
            self._record(row, lambda s: q.retry_later(
                s, row.id or 0, at=at, error=failure.message, uncertain=bool(row.result.get("uncertain")),
                count_attempt=False, result={**row.result, **failure.note}))
        else:
            self._retry(row, failure.message, uncertain=failure.uncertain)

    def _retry(self, row: OutboxMessage, error: str, *, uncertain: bool) -> None:
        if row.attempts >= self.max_attempts:
            self._dead(row, f"gave up after {row.attempts} attempts: {error}")
            return
        exp = min(self.backoff_cap, self.backoff_base * 2 ** (row.attempts - 1))
        delay = exp / 2 + random.uniform(0, exp / 2)  # equal jitter: spread replicas, keep a floor
        OUTBOX_DELIVERIES.labels(method=row.method, outcome="retry").inc()
        log.warning("outbox %s: %s failed (%s); attempt %d, next in %.1fs", row.id, row.method, error,
                    row.attempts, delay)
        at = self.clock() + timedelta(seconds=delay)
        self._record(row, lambda s: q.retry_later(s, row.id or 0, at=at, error=error,
                                                  uncertain=uncertain or bool(row.result.get("uncertain"))))

    def _dead(self, row: OutboxMessage, error: str) -> None:
        OUTBOX_DELIVERIES.labels(method=row.method, outcome="dead").inc()
        log.error("outbox %s: %s parked as dead: %s (incident id %s)", row.id, row.method, error,
                  row.incident_id)
        self._record(row, lambda s: q.park_dead(s, row.id or 0, error=error))

    def _record(self, row: OutboxMessage, store: Callable[[Session], None]) -> None:
        """Store the outcome of a call that has happened. If the database is down at that moment, keep the
        outcome and try again while this worker still holds the row's lease: otherwise the row would sit
        in flight until the lease expires (2 minutes of silence in the channel, and everything queued
        behind it), then be checked against Slack and handed out again."""
        if self.group.store(store):  # with the other threads' outcomes, in one transaction
            return
        remaining = (row.lease_until - self.clock()).total_seconds() if row.lease_until else 0.0
        deadline = time.monotonic() + remaining - 5.0
        pause = 0.2
        while True:
            try:
                with session_scope(self.engine) as s:
                    store(s)
                return
            except OperationalError as exc:
                if self._stop.is_set() or time.monotonic() + pause >= deadline:
                    raise  # the lease will run out and the row be handed out again, marked uncertain
                log.warning("outbox %s: database unavailable (%s) recording the outcome of %s; retrying",
                            row.id, exc.__class__.__name__, row.method)
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)


def apply_delivered(session: Session, row: OutboxMessage, out: Delivered, now: datetime) -> None:
    """Store what the call produced, in the same transaction that marks the row done. Most calls produce
    nothing but their result: the incident is read (fresh, in this transaction) only when it changes."""
    if row.incident_id and out.incident_updates:
        inc = session.get(Incident, row.incident_id)
        if inc is not None:
            for key, value in out.incident_updates.items():
                setattr(inc, key, value)
            session.add(inc)
    if out.members:
        repo.set_members(session, out.members[0], added=out.members[1])
    if out.store is not None:
        out.store(session)
    if row.incident_id and out.timeline_note:
        repo.add_timeline(session, incident_id=row.incident_id, occurred_at=now, source="bot",
                          kind="responders", text=out.timeline_note, source_event_id=f"outbox:{row.id}")
