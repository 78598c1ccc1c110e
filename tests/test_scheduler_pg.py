"""The scheduler with several replicas: real processes on one PostgreSQL schema, a shared fake clock.

Each replica is ``python -c SCRIPT`` running :class:`incident_bot.scheduler.Scheduler` (the loop that
``serve`` runs in a thread), with a clock shifted so that "now" is a few seconds before Monday
2026-11-23 09:00 in Europe/Berlin: nobody waits until Monday. Leases are 2 s so a takeover is quick.
The catch-up and reminder rules run in-process on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from incident_bot.core import schedule
from incident_bot.runtime import Runtime
from incident_bot.scheduler import LEASE_NAME, Scheduler, SchedulerHook
from storage.db import make_engine, session_scope
from storage.models import ActionItem, DigestRun, Incident, JobLease, OutboxMessage
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
BERLIN = schedule.zone_named("Europe/Berlin")
DUE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday 09:00 CET
LEASE = 2.0

SCRIPT = r"""
import json, sys, threading, time
from datetime import UTC, datetime, timedelta
from incident_bot.config import Settings
from incident_bot.core import schedule
from incident_bot.scheduler import Scheduler
from incident_bot.usecases.digest import post_digest
from sqlmodel import Session
from storage.db import make_engine, session_scope

url, mode, name, offset, lease, arg = sys.argv[1:7]
offset, lease = float(offset), float(lease)
settings = Settings(_env_file=None, database_url=url, digest_channel="C0DIGEST", timezone="Europe/Berlin",
                    scheduler_lease_seconds=lease, scheduler_tick_seconds=0.1)
clock = lambda: datetime.now(UTC) + timedelta(seconds=offset)
engine = make_engine(url)
sched = Scheduler(engine, settings, instance_id=name, clock=clock)
emit = lambda doc: print(json.dumps(doc), flush=True)
week = schedule.iso_week("2026-W47", settings.tzinfo)
if mode == "loop":                      # the scheduler loop of `serve`, for `arg` seconds
    stop = threading.Event()
    threading.Timer(float(arg), stop.set).start()
    sched.run(stop, on_tick=lambda r: emit(r.as_dict()))
elif mode == "lease-then-hang":         # become leader, then hang until killed
    emit({"leased": sched.acquire_lease()})
    time.sleep(120)
elif mode == "claim-then-hang":         # claim the period inside an open transaction, then hang
    with Session(engine) as s:
        emit({"claimed": post_digest(s, settings, week, now=clock(), claimed_by=name)})
        time.sleep(120)
elif mode == "post-at":                 # post the same period at the same wall-clock instant
    while time.time() < float(arg):
        time.sleep(0.005)
    with session_scope(engine) as s:
        emit({"posted": post_digest(s, settings, week, now=clock(), claimed_by=name)})
"""


def offset_to(at: datetime) -> float:
    """Seconds to add to the real clock so that it reads ``at`` now. Replicas of one test share it."""
    return (at - datetime.now(UTC)).total_seconds()


class Replica:
    def __init__(self, url: str, mode: str, name: str, *, offset: float, arg: float = 0,
                 lease: float = LEASE) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, url, mode, name, str(offset), str(lease), str(arg)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT / "tests"),
        )
        self.lines: list[dict[str, Any]] = []

    def read_one(self, timeout: float = 30) -> dict[str, Any]:
        """The next JSON line (blocking, bounded by ``timeout``)."""
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not box or not box[0]:
            self.kill()
            raise AssertionError(f"{self.name} said nothing: {self.proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        doc = json.loads(box[0])
        self.lines.append(doc)
        return doc

    def finish(self, timeout: float = 40) -> list[dict[str, Any]]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"{self.name} failed: {err[-3000:]}"
        self.lines += [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for r in started:
        r.kill()


def seed_posted(url: str, week: str) -> None:
    """A deployment that has run before: the digest of ``week`` went out."""
    engine = make_engine(url)
    since, until = schedule.iso_week(week, BERLIN)
    with session_scope(engine) as s:
        s.add(DigestRun(period_key=week, since=since, until=until, status="enqueued", claimed_by="old"))
    engine.dispose()


def outcome(url: str) -> tuple[list[tuple[str, str | None]], list[str | None]]:
    engine = make_engine(url)
    with Session(engine) as s:
        runs = [(r.period_key, r.claimed_by) for r in s.execute(select(DigestRun).order_by(DigestRun.period_key))
                .scalars()]
        keys = [m.dedup_key for m in s.execute(select(OutboxMessage)).scalars()]
    engine.dispose()
    return runs, keys


@pytest.mark.postgres
def test_two_replicas_at_the_due_time_post_once(pg_url: str, replicas: list[Replica]) -> None:
    seed_posted(pg_url, "2026-W46")
    start = DUE - timedelta(seconds=1.5)  # both are up and ticking before 09:00 strikes
    offset = offset_to(start)
    replicas += [Replica(pg_url, "loop", name, offset=offset, arg=3.5) for name in ("A", "B")]
    lines = {r.name: r.finish() for r in replicas}
    runs, keys = outcome(pg_url)
    assert keys == ["digest:2026-W47"]
    assert [k for k, _ in runs] == ["2026-W46", "2026-W47"]
    posts = [(name, line["at"]) for name, ls in lines.items() for line in ls if line["posted"]]
    assert len(posts) == 1 and runs[1][1] == posts[0][0]
    assert datetime.fromisoformat(posts[0][1]) >= DUE, "not posted before 09:00"
    # Both ran; leadership never alternated: the poster led until it stopped (and released the lease),
    # then the other may have taken over for its last ticks.
    assert all(lines[n] for n in ("A", "B"))
    led = [n for _, n in sorted((x["at"], n) for n, ls in lines.items() for x in ls if x["leader"])]
    assert led[0] == posts[0][0]
    assert sum(1 for a, b in itertools.pairwise(led) if a != b) <= 1


@pytest.mark.postgres
def test_leader_killed_after_taking_the_lease_is_replaced_once_the_lease_expires(
        pg_url: str, replicas: list[Replica]) -> None:
    seed_posted(pg_url, "2026-W46")
    offset = offset_to(DUE)
    # A lease far longer than B's start-up (seconds on a loaded machine), so that B is seen waiting for it.
    hold = 5 * LEASE
    a = Replica(pg_url, "lease-then-hang", "A", offset=offset, lease=hold)
    replicas.append(a)
    assert a.read_one()["leased"] is True
    a.kill()  # SIGKILL: it led, it posted nothing, and it cannot give the lease back
    engine = make_engine(pg_url)
    with Session(engine) as s:
        lease = s.get(JobLease, LEASE_NAME)
    engine.dispose()
    assert lease is not None and lease.holder == "A"
    b = Replica(pg_url, "loop", "B", offset=offset, arg=hold + 1)
    replicas.append(b)
    lines = b.finish()
    waiting = [x for x in lines if datetime.fromisoformat(x["at"]) < lease.expires_at]
    assert waiting and not any(x["leader"] for x in waiting), "B waits while A's lease is current"
    posted = [x for x in lines if x["posted"]]
    assert len(posted) == 1
    assert datetime.fromisoformat(posted[0]["at"]) > lease.expires_at, "not before A's lease ran out"
    runs, keys = outcome(pg_url)
    assert keys == ["digest:2026-W47"] and runs[-1] == ("2026-W47", "B")


@pytest.mark.postgres
def test_replica_killed_inside_the_claiming_transaction_leaves_nothing(
        pg_url: str, replicas: list[Replica]) -> None:
    seed_posted(pg_url, "2026-W46")
    offset = offset_to(DUE)
    a = Replica(pg_url, "claim-then-hang", "A", offset=offset)
    replicas.append(a)
    assert a.read_one() == {"claimed": True}  # claimed and queued, not committed
    b = Replica(pg_url, "loop", "B", offset=offset, arg=3.5)
    replicas.append(b)
    time.sleep(1.5)  # B is up and waiting on A's uncommitted claim
    runs, _ = outcome(pg_url)
    assert [k for k, _ in runs] == ["2026-W46"], "nothing of A's transaction is visible"
    a.kill()
    lines = b.finish()
    runs, keys = outcome(pg_url)
    assert keys == ["digest:2026-W47"] and runs[-1] == ("2026-W47", "B")
    assert sum(1 for x in lines if x["posted"]) == 1


@pytest.mark.postgres
def test_two_posts_of_one_period_at_the_same_instant(pg_url: str, replicas: list[Replica]) -> None:
    """No lease at all (two CLI runs, or a leader that overslept its lease): the unique key decides."""
    at = time.time() + 2.0
    offset = offset_to(DUE)
    replicas += [Replica(pg_url, "post-at", name, offset=offset, arg=at) for name in ("A", "B")]
    results = sorted(r.finish()[0]["posted"] for r in replicas)
    assert results == [False, True]
    assert outcome(pg_url)[1] == ["digest:2026-W47"]


# -- in-process: catch-up and reminders (SQLite and PostgreSQL) -------------------------------------

class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scheduler(engine: Engine, db_url: str, clock: Clock, name: str = "r1") -> Scheduler:
    settings = make_settings(db_url, timezone="Europe/Berlin", scheduler_lease_seconds=30)
    return Scheduler(engine, settings, instance_id=name, clock=clock)


def posted_keys(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return sorted(k or "" for k in s.execute(select(OutboxMessage.dedup_key)).scalars()
                      if k and k.startswith("digest:"))


def test_a_missed_run_is_caught_up_once_with_the_latest_period(engine: Engine, db_url: str) -> None:
    with session_scope(engine) as s:
        s.add(DigestRun(period_key="2026-W45", since=schedule.iso_week("2026-W45", BERLIN)[0],
                        until=schedule.iso_week("2026-W45", BERLIN)[1], status="enqueued"))
    # Every replica was down from before Monday 16 Nov until Wednesday 25 Nov 10:00.
    clock = Clock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    first = scheduler(engine, db_url, clock)
    r = first.tick()
    assert (r.leader, r.digest, r.posted) == (True, "2026-W47", True)
    assert posted_keys(engine) == ["digest:2026-W47"], "W46 is not posted: only the latest missed period"
    clock.now += timedelta(minutes=5)
    assert first.tick().digest is None
    restarted = scheduler(engine, db_url, clock, name="r1")  # a restart: same check, nothing new
    r = restarted.tick()
    assert (r.digest, r.posted) == ("2026-W47", False)
    clock.now = datetime(2026, 11, 30, 8, 0, 1, tzinfo=UTC)  # next Monday 09:00:01 CET
    assert restarted.tick().posted is True
    assert posted_keys(engine) == ["digest:2026-W47", "digest:2026-W48"]


def test_a_fresh_install_does_not_post_a_stale_digest(engine: Engine, db_url: str) -> None:
    clock = Clock(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))  # a Wednesday, nothing ever posted
    s1 = scheduler(engine, db_url, clock)
    r = s1.tick()
    assert r.leader and r.posted is None and r.skipped
    clock.now = datetime(2026, 11, 30, 8, 0, 2, tzinfo=UTC)  # on time on Monday
    assert s1.tick().posted is True
    assert posted_keys(engine) == ["digest:2026-W48"]


def test_only_the_lease_holder_works_and_a_stopped_one_hands_over(engine: Engine, db_url: str) -> None:
    clock = Clock(DUE + timedelta(seconds=1))
    a, b = scheduler(engine, db_url, clock, "a"), scheduler(engine, db_url, clock, "b")
    assert a.tick().leader is True and b.tick().leader is False
    a.release_lease()
    assert b.tick().leader is True and a.tick().leader is False
    clock.now += timedelta(seconds=31)  # b stopped renewing: its lease ran out
    assert a.tick().leader is True


def test_capa_reminders_once_a_day_and_on_start_if_missed(engine: Engine, db_url: str) -> None:
    with session_scope(engine) as s:
        inc = Incident(number=1, ref="INC-1", title="t", severity="SEV2", status="resolved",
                       detected_at=datetime(2026, 11, 1, tzinfo=UTC), rca={})
        s.add(inc)
        s.flush()
        s.add(ActionItem(incident_id=inc.id, title="fix", owner_id="U0ADA", due_date=date(2026, 11, 20)))
    clock = Clock(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # started at 13:00, after 09:00: catch up
    s1 = scheduler(engine, db_url, clock)
    assert s1.tick().reminders == 1
    clock.now += timedelta(hours=1)
    assert s1.tick().reminders is None  # not due again today
    assert scheduler(engine, db_url, clock, "r2").tick().reminders is None  # not leader
    clock.now = datetime(2026, 11, 26, 8, 0, 5, tzinfo=UTC)  # 09:00:05 CET the next day
    assert s1.tick().reminders == 1
    with Session(engine) as s:
        keys = sorted(k for k in s.execute(select(OutboxMessage.dedup_key)).scalars() if k)
    assert keys == ["capa-reminder:U0ADA:2026-11-25", "capa-reminder:U0ADA:2026-11-26"]


def test_the_serve_hook_starts_a_thread_and_gives_the_lease_back(engine: Engine, db_url: str) -> None:
    import asyncio

    settings = make_settings(db_url, timezone="Europe/Berlin", scheduler_tick_seconds=0.05, scheduler_enabled=True)
    hook = SchedulerHook(Runtime(settings=settings, engine=engine, instance_id="serve-1"))

    async def run() -> None:
        await hook.start()
        await asyncio.sleep(0.5)
        await hook.stop()

    asyncio.run(run())
    with Session(engine) as s:
        lease = s.get(JobLease, LEASE_NAME)
    assert lease is not None and lease.holder == "serve-1"
    assert lease.expires_at <= datetime.now(UTC), "released on stop"


def test_scheduler_enabled_off_runs_nothing(engine: Engine, db_url: str) -> None:
    import asyncio

    settings = make_settings(db_url, scheduler_enabled=False)
    hook = SchedulerHook(Runtime(settings=settings, engine=engine, instance_id="serve-2"))

    async def run() -> None:
        await hook.start()
        await asyncio.sleep(0.2)
        await hook.stop()

    asyncio.run(run())
    with Session(engine) as s:
        assert s.get(JobLease, LEASE_NAME) is None
