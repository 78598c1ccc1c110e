"""The scheduler inside ``serve``: the weekly digest, the daily CAPA reminders, the stale-communications
reminders (usecases/nudge.py, every tick) and the word counts of similar incidents (every 15 minutes),
run by one replica.

Two layers make "exactly once" hold with any number of replicas:

1. **A leader lease** (one row of ``job_leases``). Each tick a replica tries
   ``UPDATE job_leases SET holder = me, expires_at = now + lease WHERE name = 'scheduler' AND
   (expires_at < now OR holder = me)``, or inserts the row if there is none. One UPDATE wins (on
   PostgreSQL the second waits for the first and then re-checks the row; SQLite serialises writers),
   so at most one replica works at a time, and when the leader dies its lease runs out and another
   takes over. Portable to SQLite; no advisory lock needed.
2. **The period's unique key.** The lease alone cannot be trusted (a paused leader may wake up after
   its lease ran out), so every job is idempotent on its own: a digest claims its period in
   ``digest_runs`` and queues the message in the same transaction
   (:func:`incident_bot.usecases.digest.post_digest`), a reminder uses the outbox ``dedup_key``
   (owner, day).

Catch-up: the last occurrence of ``DIGEST_SCHEDULE`` at or before now is due whenever its period has
no ``digest_runs`` row, so a run missed while every replica was down is posted when one comes back:
once, and only for the most recent period. One exception: a deployment that has never posted a digest
(a fresh install, or DIGEST_CHANNEL just set) does not post late: on a Wednesday it would otherwise
announce the week before the bot existed. It posts on time from the next occurrence on ("on time" =
within :attr:`Scheduler.grace` of it, two leases and two ticks, enough for a failover). Reminders
follow ``CAPA_REMINDER_SCHEDULE`` (09:00 daily) and are caught up on start unconditionally (the
(owner, day) dedup key keeps that to one DM a day).

Time comes from an injectable ``clock`` and leases compare the replicas' clocks: keep them in NTP
sync (a skew larger than the lease would let two replicas lead, which layer 2 makes harmless).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from incident_bot.config import ConfigError, Settings
from incident_bot.core import nudge, schedule
from incident_bot.usecases import lease, runner
from incident_bot.usecases.actions import enqueue_overdue_reminders
from incident_bot.usecases.digest import post_scheduled, targets_from
from incident_bot.usecases.nudge import enqueue_nudges
from incident_bot.usecases.similar import count_words
from incident_bot.usecases.tickets import queue_ticket_reconcile
from storage.models import utcnow

log = logging.getLogger(__name__)
LEASE_NAME = "scheduler"
WORD_COUNTS_EVERY = timedelta(minutes=15)
Clock = Callable[[], datetime]


@dataclass
class TickResult:
    """What one tick did (logged, and read by tests)."""

    at: str
    leader: bool
    digest: str | None = None  # the period key looked at
    skipped: str | None = None  # why a due digest was not posted
    posted: bool | None = None  # True: queued now; False: it had been posted before
    reminders: int | None = None  # DMs queued (None: not due)
    nudges: int | None = None  # stale-communications reminders queued this tick
    words: int | None = None  # words counted for similar incidents (None: not due)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "leader": self.leader, "digest": self.digest, "posted": self.posted,
                "skipped": self.skipped, "reminders": self.reminders, "nudges": self.nudges,
                "words": self.words, "errors": self.errors}


def validate(settings: Settings) -> None:
    """Stop start-up with one line when a schedule or the targets are malformed."""
    for name in ("digest_schedule", "capa_reminder_schedule", "capa_sync_schedule"):
        try:
            schedule.parse_rule(getattr(settings, name), settings.tzinfo)
        except ValueError as exc:
            raise ConfigError(f"{name.upper()} is malformed: {exc}") from None
    targets_from(settings)
    try:
        nudge.parse_intervals(settings.status_update_interval)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class Scheduler:
    def __init__(self, engine: Engine, settings: Settings, *, instance_id: str, clock: Clock = utcnow,
                 lease_seconds: float | None = None, tick_seconds: float | None = None,
                 on_enqueued: Callable[[], None] | None = None) -> None:
        validate(settings)
        self.engine, self.settings, self.instance_id, self.clock = engine, settings, instance_id, clock
        self.lease = timedelta(seconds=lease_seconds or settings.scheduler_lease_seconds)
        self.tick_seconds = tick_seconds or settings.scheduler_tick_seconds
        self.grace = 2 * self.lease + timedelta(seconds=2 * self.tick_seconds)
        self.on_enqueued = on_enqueued
        self.zone = settings.tzinfo
        # Occurrences this process has dealt with; the database, not these, decides what is posted.
        self.digest_done_for: datetime | None = None
        self.reminders_done_for: datetime | None = None
        self.sync_done_for: datetime | None = None
        self.words_done_at: datetime | None = None
        self._warned_no_channel = False

    # -- leadership ------------------------------------------------------------------------------------
    def acquire_lease(self, now: datetime | None = None) -> bool:
        """Take or renew the lease. True while this replica leads."""
        now = now or self.clock()
        return runner.run(self.engine, lease.take, LEASE_NAME, self.instance_id, now=now, expires=now + self.lease)

    def release_lease(self) -> None:
        """Hand over at once on a clean shutdown instead of making the others wait for expiry."""
        runner.run(self.engine, lease.give_up, LEASE_NAME, self.instance_id, at=self.clock() - timedelta(seconds=1))

    # -- jobs ----------------------------------------------------------------------------------------
    def _digest(self, now: datetime, result: TickResult) -> None:
        if not self.settings.digest_channel:
            if not self._warned_no_channel:
                log.warning("DIGEST_CHANNEL is not set: the weekly digest is not posted")
                self._warned_no_channel = True
            return
        rule = self.settings.digest_schedule
        for occurrence in schedule.due_runs(rule, self.zone, self.digest_done_for, now):
            since, until = schedule.digest_period(rule, self.zone, occurrence)
            result.digest = schedule.period_key(since, until, self.zone)
            posted = runner.run(self.engine, post_scheduled, self.settings, (since, until), now=now,
                                late=now - occurrence > self.grace, claimed_by=self.instance_id)
            if posted is None:
                result.skipped = "late, and no digest was ever posted here: waiting for the next run"
                log.info("digest %s: %s", result.digest, result.skipped)
            else:
                result.posted = posted
            self.digest_done_for = occurrence
            if result.posted:
                log.info("digest %s queued for %s", result.digest, self.settings.digest_channel)
                if self.on_enqueued:
                    self.on_enqueued()

    def _reminders(self, now: datetime, result: TickResult) -> None:
        rule = self.settings.capa_reminder_schedule
        for occurrence in schedule.due_runs(rule, self.zone, self.reminders_done_for, now):
            # The run belongs to the day of its occurrence: the dedup key (owner, day) then makes a
            # restart, or a second leader, a no-op for a day already reminded.
            today = schedule.local_date(occurrence, self.zone)
            result.reminders = runner.run(self.engine, enqueue_overdue_reminders, today=today, tz=self.zone)
            self.reminders_done_for = occurrence
            if result.reminders:
                log.info("CAPA reminders for %s: %d queued", today, result.reminders)
                if self.on_enqueued:
                    self.on_enqueued()

    def _tracker_sync(self, now: datetime, result: TickResult) -> None:
        """Queue the daily reconcile with the CAPA tracker (CAPA_SYNC_SCHEDULE): one ``tracker.sync`` job a
        day (dedup key), run by the outbox worker like every other outbound call."""
        if not self.settings.capa_tracker:
            return
        rule = self.settings.capa_sync_schedule
        for occurrence in schedule.due_runs(rule, self.zone, self.sync_done_for, now):
            day = schedule.local_date(occurrence, self.zone)
            queued = runner.run(self.engine, queue_ticket_reconcile, self.settings.capa_tracker, day)
            self.sync_done_for = occurrence
            if queued:
                log.info("CAPA tracker reconcile for %s queued", day)
                if self.on_enqueued:
                    self.on_enqueued()

    def _nudges(self, now: datetime, result: TickResult) -> None:
        """Every tick: remind quiet incident channels (once per interval each, see usecases/nudge.py)."""
        result.nudges = runner.run(self.engine, enqueue_nudges, self.settings, now)
        if result.nudges:
            log.info("status update reminders queued: %d", result.nudges)
            if self.on_enqueued:
                self.on_enqueued()

    def _word_counts(self, now: datetime, result: TickResult) -> None:
        """Every :data:`WORD_COUNTS_EVERY`: count in how many incidents each word appears, for similar
        incidents (storage/text_rank.py; a lookup counts again only words new incidents may have changed)."""
        if self.words_done_at is not None and now - self.words_done_at < WORD_COUNTS_EVERY:
            return
        result.words = runner.run(self.engine, count_words)
        self.words_done_at = now

    def tick(self) -> TickResult:
        """One pass: lead or follow; as leader run whatever is due. Never raises for a job's failure."""
        now = self.clock()
        result = TickResult(at=now.isoformat(), leader=False)
        try:
            result.leader = self.acquire_lease(now)
        except Exception as exc:  # database down: not leading; try again next tick
            result.errors.append(f"lease: {exc.__class__.__name__}: {exc}")
            log.warning("scheduler lease failed: %s", exc)
            return result
        if not result.leader:
            return result
        for job in (self._digest, self._reminders, self._nudges, self._tracker_sync, self._word_counts):
            try:
                job(now, result)
            except Exception as exc:  # one job failing must not stop the other; retried next tick
                result.errors.append(f"{job.__name__.strip('_')}: {exc.__class__.__name__}: {exc}")
                log.exception("scheduler job %s failed", job.__name__)
        return result

    def run(self, stop: threading.Event, on_tick: Callable[[TickResult], None] | None = None) -> None:
        """Tick until ``stop`` is set; then give the lease up."""
        while not stop.is_set():
            result = self.tick()
            if on_tick:
                on_tick(result)
            stop.wait(self.tick_seconds)
        try:
            self.release_lease()
        except Exception as exc:
            log.warning("could not release the scheduler lease: %s", exc)


class SchedulerHook:
    """ASGI lifespan hook for ``serve``: the scheduler runs in a thread (its database calls block)."""

    def __init__(self, rt: Any) -> None:
        worker = getattr(rt, "worker", None)
        self.scheduler = Scheduler(rt.engine, rt.settings, instance_id=rt.instance_id,
                                   on_enqueued=worker.notify if worker is not None else None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        if not self.scheduler.settings.scheduler_enabled:
            log.info("SCHEDULER_ENABLED is off: this replica runs no digest or reminders")
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.scheduler.run, args=(self._stop,), name="scheduler",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None
