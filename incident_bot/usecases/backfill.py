"""``incident-bot backfill pagerduty``: PagerDuty's history, through the same inbox and fold as live webhooks.

Per window (at most 6 months; 30 days by default, each a checkpoint row in ``backfill_windows``):

1. ``GET /incidents`` created in the window -> one ``incident.triggered`` delivery each;
2. account-wide ``GET /log_entries`` in the window (the last window reads ``tail_days`` further, so the
   acknowledgements and resolves of its last incidents are not cut off) -> one delivery per entry of an
   incident we hold or are importing (entries of incidents created before ``--since`` are skipped);
3. the deliveries are stored in the inbox under source ``pagerduty-import`` (event ids from PagerDuty's
   ids, so a re-run stores nothing new), then folded by the fold worker's own code, quietly: no channel,
   no message, no outbox row. A PagerDuty incident that live webhooks already brought is found through
   ``pagerduty_links``; what the webhooks already said is not said twice (``grouping.said_already``);
4. the window is marked done. An interrupted run starts again at the first window not done.

Reading PagerDuty (the REST API, and turning incidents and log entries into deliveries) is the PagerDuty
adapter's: the entry point passes it in as a :class:`History` (``pagerduty/backfill.py``'s
``RestHistory``), with the applier that folds the deliveries.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

from sqlalchemy import Engine, select
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.pipeline import inbox
from incident_bot.pipeline.fold import Applier, FoldWorker
from incident_bot.usecases import runner
from storage.models import BackfillWindow, PagerDutyLink, utcnow

MAX_WINDOW = timedelta(days=180)  # PagerDuty refuses a since/until range over 6 months
STORE_CHUNK = 500
IMPORT_SOURCE = "pagerduty-import"  # the inbox source of the history this reads back


@dataclass(frozen=True)
class Delivery:
    """One event of PagerDuty's history as the webhook v3 delivery a live subscription would have sent."""

    event_id: str  # derived from PagerDuty's ids: a re-run stores nothing twice
    event_type: str
    pagerduty_incident_id: str
    payload: str  # the delivery's JSON
    opens: bool  # the trigger of an incident created in the window (else a log entry)


class RequestCounts(Protocol):
    requests: int
    throttled: int  # 429 answers seen
    waited_s: float


class History(Protocol):
    """PagerDuty's history, read by the PagerDuty adapter (``pagerduty/backfill.py``)."""

    stats: RequestCounts

    def window(self, since: datetime, until: datetime, services: list[str], *, entries_until: datetime,
               wanted: Callable[[str], bool]) -> Iterator[Delivery]:
        """First the trigger of every incident created in [since, until) (of ``services``, when given), then
        the deliveries of the log entries in [since, entries_until) of the imported types, but triggers, of
        the incidents ``wanted`` accepts (it is asked after the window's triggers went by)."""
        ...


@dataclass
class Options:
    since: datetime
    until: datetime
    services: list[str] = field(default_factory=list)
    dry_run: bool = False
    window_days: int = 30
    tail_days: int = 30


@dataclass
class Summary:
    windows: int = 0
    windows_done: int = 0
    windows_skipped: int = 0  # done by an earlier run
    incidents: int = 0  # PagerDuty incidents read
    log_entries: int = 0  # log entries read (imported types)
    stored: int = 0  # new inbox rows (0 on a re-run)
    duplicates: int = 0  # rows an earlier run (or a live webhook for the same event) already stored
    requests: int = 0
    throttled: int = 0
    waited_s: float = 0.0
    elapsed_s: float = 0.0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def windows(since: datetime, until: datetime, days: int) -> list[tuple[datetime, datetime]]:
    step = min(timedelta(days=max(1, days)), MAX_WINDOW)
    out, start = [], since
    while start < until:
        end = min(until, start + step)
        out.append((start, end))
        start = end
    return out


def scope_key(services: list[str]) -> str:
    if not services:
        return "pagerduty:all"
    return "pagerduty:" + hashlib.sha1(",".join(sorted(services)).encode()).hexdigest()[:16]


class Progress:
    """One status line on a terminal (rewritten in place, at most every 0.5 s); silent otherwise."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, summary: Summary, stats: RequestCounts, window: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        rate = stats.requests / max(0.001, now - self.started) * 60
        self.stream.write(f"\r\x1b[2Kwindow {window}/{summary.windows} · {summary.incidents:,} incidents · "
                          f"{summary.log_entries:,} log entries · {stats.requests:,} requests "
                          f"({rate:,.0f}/min) · 429s: {stats.throttled}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def run(engine: Engine, settings: Settings, history: History, opts: Options, progress: Progress | None = None,
        *, applier: Applier, after_window: Callable[[int], None] | None = None) -> Summary:
    """Import the history in windows. ``applier``: the fold's applier of source :data:`IMPORT_SOURCE`
    (the PagerDuty adapter's, quiet: ``PagerDutyApplier(settings, imported=True)``)."""
    started = time.monotonic()
    progress = progress or Progress(enabled=False)
    stats = history.stats
    scope = scope_key(opts.services)
    spans = windows(opts.since, opts.until, opts.window_days)
    summary = Summary(windows=len(spans), dry_run=opts.dry_run)
    fold = FoldWorker(engine, {IMPORT_SOURCE: applier},
                      batch_size=settings.fold_batch_size, max_attempts=settings.fold_max_attempts,
                      sources=(IMPORT_SOURCE,))
    known = _Known(engine)
    for number, (since, until) in enumerate(spans, start=1):
        if not opts.dry_run and _done(engine, scope, since, until):
            summary.windows_skipped += 1
            continue
        before = (summary.incidents, summary.log_entries, stats.requests)
        if not opts.dry_run:
            _mark(engine, scope, since, until, status="running")
        last = number == len(spans)
        entries_until = min(utcnow(), until + timedelta(days=opts.tail_days)) if last else until
        batch: list[dict[str, Any]] = []
        # Log entries of incidents created before --since (or outside --service) are not ours to import.
        for delivery in history.window(since, until, opts.services, entries_until=max(entries_until, until),
                                       wanted=known.has):
            if delivery.opens:
                summary.incidents += 1
                known.add(delivery.pagerduty_incident_id)
            else:
                summary.log_entries += 1
            batch.append({"event_id": delivery.event_id, "event_type": delivery.event_type,
                          "subject_id": delivery.pagerduty_incident_id, "payload": delivery.payload})
            _flush(engine, batch, summary, opts, force=False)
            progress.update(summary, stats, number)
        _flush(engine, batch, summary, opts, force=True)
        if not opts.dry_run:
            fold.drain(timeout=3600)
            _mark(engine, scope, since, until, status="done", incidents=summary.incidents - before[0],
                  log_entries=summary.log_entries - before[1], requests=stats.requests - before[2])
        summary.windows_done += 1
        progress.update(summary, stats, number, force=True)
        if after_window is not None:
            after_window(number)
    progress.done()
    summary.requests, summary.throttled, summary.waited_s = stats.requests, stats.throttled, stats.waited_s
    summary.elapsed_s = time.monotonic() - started
    return summary


def _flush(engine: Engine, batch: list[dict[str, Any]], summary: Summary, opts: Options, *, force: bool) -> None:
    if not batch or (not force and len(batch) < STORE_CHUNK):
        return
    if not opts.dry_run:
        new = inbox.accept_many(engine, batch, source=IMPORT_SOURCE)
        summary.stored += new
        summary.duplicates += len(batch) - new
    batch.clear()


class _Known:
    """PagerDuty incidents we hold (live or imported): log entries of others are not imported."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ids: set[str] = set()
        self.missing: set[str] = set()

    def add(self, pd_id: str) -> None:
        self.ids.add(pd_id)
        self.missing.discard(pd_id)

    def has(self, pd_id: str) -> bool:
        if pd_id in self.ids:
            return True
        if pd_id in self.missing:
            return False
        found = runner.read(self.engine, lambda s: s.get(PagerDutyLink, pd_id) is not None)
        (self.ids if found else self.missing).add(pd_id)
        return found


def _done(engine: Engine, scope: str, since: datetime, until: datetime) -> bool:
    return runner.read(engine, _window_done, scope, since, until)


def _window_done(s: Session, scope: str, since: datetime, until: datetime) -> bool:
    row = s.get(BackfillWindow, (scope, since, until))
    return row is not None and row.status == "done"


def _mark(engine: Engine, scope: str, since: datetime, until: datetime, *, status: str, **counts: int) -> None:
    runner.run(engine, _mark_window, scope, since, until, status=status, **counts)


def _mark_window(s: Session, scope: str, since: datetime, until: datetime, *, status: str, **counts: int) -> None:
    row = s.get(BackfillWindow, (scope, since, until)) or BackfillWindow(scope=scope, since=since, until=until)
    row.status = status
    for k, v in counts.items():
        setattr(row, k, v)
    if status == "done":
        row.finished_at = utcnow()
    else:
        row.started_at = utcnow()
    s.add(row)


def checkpoints(session: Session) -> Iterator[BackfillWindow]:
    yield from session.execute(select(BackfillWindow).order_by(BackfillWindow.since)).scalars()  # type: ignore[arg-type]


def as_utc(dt: datetime, tz: Any) -> datetime:
    return (dt if dt.tzinfo else dt.replace(tzinfo=tz)).astimezone(UTC)
