"""The fold worker: applies stored inputs to incidents, many per transaction.

A batch is claimed and applied in ONE transaction: ``SELECT .. FOR UPDATE SKIP LOCKED`` on PostgreSQL
(replicas take disjoint batches), the single writer lock on SQLite. The effects (incidents, timeline,
milestones, metrics, outbox rows) and the rows' ``done`` mark commit together, so a crash at any point
leaves the rows pending and the next worker applies them again from scratch: exactly-once effect,
nothing lost. Within the batch, locks are taken in one global order (the incident counter first when
the batch may open an incident, then every incident it touches by id), so concurrent batches never
deadlock.

A row that raises is isolated: the batch is rolled back and its rows are applied one by one; a row
that keeps failing is parked as ``failed`` with its error after ``max_attempts``, visible in /metrics,
logs and ``incident-bot inbox list --failed``, and never blocks the rows behind it.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from incident_bot.observability import FOLD_BATCHES, INBOX_FAILED
from incident_bot.pipeline import inbox
from incident_bot.pipeline.loop import LoopWorker
from storage import repo
from storage.db import session_scope
from storage.models import InboxDelivery, utcnow

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What a batch will touch, so that it can lock in the global order before it writes anything."""

    may_open: bool = False
    pagerduty_ids: set[str] = field(default_factory=set)
    channel_ids: set[str] = field(default_factory=set)
    incident_ids: set[int] = field(default_factory=set)  # e.g. the open incident an alert storm joins


@dataclass(frozen=True)
class Applied:
    outcome: str
    incident_id: int | None = None


class Applier(Protocol):
    """One source's way to apply its stored rows (PagerDuty deliveries, Slack requests...). An applier
    that uses no savepoint may set ``writes_at_end = True``: its batch's new timeline and outbox rows are
    then written together at the end of its rows (``storage.repo.written_at_end``)."""

    def plan(self, session: Session, rows: Sequence[InboxDelivery], plan: Plan) -> None: ...

    def apply(self, session: Session, row: InboxDelivery) -> Applied: ...


class FoldWorker(LoopWorker):
    name = "fold"

    def __init__(self, engine: Engine, appliers: dict[str, Applier], *, batch_size: int = 200,
                 poll_interval: float = 0.1, max_attempts: int = 5,
                 on_folded: Callable[[], None] | None = None, sources: Sequence[str] | None = None) -> None:
        super().__init__(poll_interval=poll_interval)
        self.engine = engine
        # Only these inbox sources are claimed (``backfill`` folds its own rows, never a live source's).
        self.sources = tuple(sources) if sources is not None else None
        self.appliers = appliers
        # SQLite has one writer: a long batch would hold up the accept path's INSERTs behind it.
        self.batch_size = min(batch_size, 50) if engine.dialect.name == "sqlite" else batch_size
        self.max_attempts = max_attempts
        self.on_folded = on_folded or (lambda: None)

    def after_progress(self) -> None:
        self.on_folded()

    # -- one batch -------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Apply one batch. Returns how many rows it took (0: nothing pending). A batch that PostgreSQL
        chose as a deadlock victim (or a serialisation failure) is simply tried again: it wrote nothing."""
        for attempt in range(3):
            try:
                return self._run_batch()
            except OperationalError as exc:
                if not _transient(exc) or attempt == 2:
                    raise
                log.info("fold: batch rolled back by the database (%s); trying again", _sqlstate(exc))
        return 0

    def _run_batch(self) -> int:
        claimed: list[int] = []
        started = time.perf_counter()
        try:
            with session_scope(self.engine) as s:
                rows = _claim(s, self.batch_size, sources=self.sources)
                claimed = [r.id for r in rows if r.id is not None]
                if rows:
                    self._apply_all(s, rows)
        except OperationalError:
            raise
        except Exception as exc:
            log.warning("fold: a batch of %d failed (%s: %s); applying its rows one by one",
                        len(claimed), exc.__class__.__name__, str(exc)[:200])
            for row_id in claimed:
                self._apply_alone(row_id)
            return len(claimed)
        if claimed:
            FOLD_BATCHES.observe(len(claimed))
            log.debug("fold: %d row(s) in %.1f ms", len(claimed), (time.perf_counter() - started) * 1000)
        return len(claimed)

    def _apply_all(self, s: Session, rows: Sequence[InboxDelivery]) -> None:
        by_source: dict[str, list[InboxDelivery]] = {}
        for row in rows:
            by_source.setdefault(row.source, []).append(row)
        plan = Plan()
        for source, group in by_source.items():
            applier = self.appliers.get(source)
            if applier is not None:
                applier.plan(s, group, plan)
        if plan.may_open:
            repo.lock_counter(s)
        repo.lock_incidents(s, pagerduty_ids=plan.pagerduty_ids, channel_ids=plan.channel_ids,
                            incident_ids=plan.incident_ids)
        # Grouped by subject (an incident's deliveries together, in arrival order): locks are already
        # held, and the incident's messages are queued in the order its inputs arrived.
        finished: list[tuple[InboxDelivery, Applied]] = []
        ordered = sorted(rows, key=lambda r: (r.source, r.subject_id or "", r.id or 0))
        for source, group in itertools.groupby(ordered, key=lambda r: r.source):
            applier = self.appliers.get(source)
            if applier is None:
                for row in group:
                    log.warning("fold: no applier for source %r (row %s); ignored", row.source, row.id)
                    finished.append((row, Applied("ignored")))
                continue
            # An applier whose rows use no savepoint has its new timeline and outbox rows written together.
            with repo.written_at_end(s) if getattr(applier, "writes_at_end", False) else nullcontext():
                for row in group:
                    done = applier.apply(s, row)
                    if done.outcome != "deferred":  # a deferred row was kept by its applier (inbox.defer)
                        finished.append((row, done))
        # Marked done together at the end: one statement for the batch.
        inbox.finish_many(s, [(row.id, done.outcome, done.incident_id) for row, done in finished
                              if row.id is not None])

    def _apply_alone(self, row_id: int) -> None:
        try:
            with session_scope(self.engine) as s:
                rows = _claim(s, 1, only_id=row_id)
                if rows:
                    self._apply_all(s, rows)
        except OperationalError:
            raise
        except Exception as exc:
            error = f"{exc.__class__.__name__}: {str(exc)[:500]}"
            with session_scope(self.engine) as s:
                failed = _count_failure(s, row_id, error, self.max_attempts)
            if failed:
                INBOX_FAILED.inc()
                log.error("fold: inbox row %s parked as failed after %d attempts: %s", row_id,
                          self.max_attempts, error)
            else:
                log.warning("fold: inbox row %s failed (%s); it will be tried again", row_id, error)

    def drain(self, timeout: float = 30.0) -> bool:
        """Fold until nothing is pending (CLI, demo, tests). True if the inbox emptied."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run_once():
                return True
        return False


def _sqlstate(exc: OperationalError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _transient(exc: OperationalError) -> bool:
    """Deadlock victim or serialisation failure: the transaction was rolled back, try it again."""
    return _sqlstate(exc) in ("40P01", "40001")


def _claim(s: Session, limit: int, *, only_id: int | None = None,
           sources: Sequence[str] | None = None) -> list[InboxDelivery]:
    stmt = (select(InboxDelivery).where(InboxDelivery.status == inbox.PENDING)  # type: ignore[arg-type]
            .order_by(InboxDelivery.id).limit(limit))  # type: ignore[arg-type]
    if sources is not None:
        stmt = stmt.where(InboxDelivery.source.in_(sources))  # type: ignore[attr-defined]
    if only_id is not None:
        stmt = stmt.where(InboxDelivery.id == only_id)  # type: ignore[arg-type]
    if s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(s.execute(stmt).scalars())


def _count_failure(s: Session, row_id: int, error: str, max_attempts: int) -> bool:
    """Count a failed attempt; park the row when it has used them all. True if it was parked."""
    row = s.get(InboxDelivery, row_id)
    if row is None or row.status != inbox.PENDING:
        return False
    row.attempts += 1
    row.last_error = error[:2000]
    if row.attempts >= max_attempts:
        row.status, row.done_at = inbox.FAILED, utcnow()
    s.add(row)
    return row.status == inbox.FAILED
