"""Fault campaign: replicas racing on redelivered, reordered PagerDuty deliveries, and a Slack outage.

1. Two ``serve`` processes on one PostgreSQL receive every delivery of N incidents 1-3 times, at random
   replicas, in random order, concurrently. A serial replay (each delivery once, in order, through
   ``ingest`` into a fresh schema) is the oracle: per PagerDuty incident the status, severity, the six
   milestones and the timeline (kind, occurred_at, text) must be equal, and Slack must have one channel
   per incident and every queued message exactly once.
2. Slack down for a while, then answering 429 with Retry-After: every message is delivered once, and in
   order in each incident channel.

The heavy variants (200 incidents / 2,000 deliveries, a 60 s Slack outage) are marked ``heavy``: run by
the bench command (``.venv/bin/pytest -m heavy tests/test_fault_campaign.py``), not in CI.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.pagerduty import inbound
from incident_bot.pagerduty.events import parse_delivery
from incident_bot.pipeline import outbox as q
from incident_bot.pipeline.fold import FoldWorker
from storage.db import make_engine, session_scope
from storage.models import InboxDelivery, Incident, OutboxMessage, TimelineEvent
from tests.db_template import PgScript

from .conftest import PD_SECRET, PG_URL, ServerProcess, make_settings, pg_schema_url, server_env

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
MILESTONES = ("impact_started_at", "detected_at", "acknowledged_at", "mitigated_at", "resolved_at",
              "closed_at")
# Retry quickly in tests (a real deployment backs off from 1 s up to 5 minutes).
FAST_RETRIES = {"OUTBOX_BACKOFF_BASE": "0.2", "OUTBOX_BACKOFF_CAP": "2", "SCHEDULER_ENABLED": "false"}


# -- the deliveries ----------------------------------------------------------------------------------

def incident_story(i: int, rnd: random.Random, max_notes: int = 3) -> list[dict[str, Any]]:
    """Every delivery of one PagerDuty incident, in the order things happened."""
    pd_id = f"PDC{i:04d}"
    start = T0 + timedelta(minutes=i)
    title = f"Service {i} degraded"

    def data(priority: str, status: str) -> dict[str, Any]:
        return pd.incident_data(pd_id, title=title, created_at=start, priority=priority, status=status,
                                number=1000 + i)

    at = start
    story = [pd.delivery("incident.triggered", data("P3", "triggered"), occurred_at=at)]
    at += timedelta(minutes=1 + rnd.randint(0, 4), seconds=rnd.randint(0, 59))
    story.append(pd.delivery("incident.acknowledged", data("P3", "acknowledged"), occurred_at=at))
    for n in range(rnd.randint(1, max_notes)):
        at += timedelta(minutes=1, seconds=rnd.randint(0, 59))
        story.append(pd.delivery("incident.annotated", pd.note_data(pd_id, f"note {n} of {pd_id}", f"PN{n}"),
                                 occurred_at=at))
    priority = "P3"
    if rnd.random() < 0.7:
        priority = rnd.choice(["P1", "P2", "P4"])
        at += timedelta(minutes=1)
        story.append(pd.delivery("incident.priority_updated", data(priority, "acknowledged"), occurred_at=at))
    at += timedelta(minutes=5 + rnd.randint(0, 30))
    story.append(pd.delivery("incident.resolved", data(priority, "resolved"), occurred_at=at))
    if rnd.random() < 0.3:  # reopened, then resolved again
        at += timedelta(minutes=2)
        story.append(pd.delivery("incident.reopened", data(priority, "triggered"), occurred_at=at))
        at += timedelta(minutes=3 + rnd.randint(0, 10))
        story.append(pd.delivery("incident.resolved", data(priority, "resolved"), occurred_at=at))
    return story


def campaign(incidents: int, seed: int, max_notes: int = 3) -> list[dict[str, Any]]:
    """All deliveries in the order they happened (the serial replay's order)."""
    rnd = random.Random(seed)
    deliveries = [d for i in range(incidents) for d in incident_story(i, rnd, max_notes)]
    return sorted(deliveries, key=lambda d: d["event"]["occurred_at"])


def post(client: httpx.Client, url: str, doc: dict[str, Any]) -> int:
    body = pd.encode(doc)
    try:
        return client.post(f"{url}/pagerduty/webhook", content=body,
                           headers=pd.signed_headers(body, PD_SECRET)).status_code
    except httpx.HTTPError:
        return 0


def send_all(urls: list[str], sends: list[dict[str, Any]], rnd: random.Random,
             threads: int = 16) -> Counter[int]:
    """Send concurrently to random replicas; what is not answered 202 is redelivered, as PagerDuty does."""
    targets = [rnd.choice(urls) for _ in sends]
    first: Counter[int] = Counter()
    lock = threading.Lock()

    def one(job: tuple[str, dict[str, Any]]) -> int:
        url, doc = job
        status = post(client, url, doc)
        with lock:
            first[status] += 1
        for attempt in range(10):
            if status == 202:
                return status
            time.sleep(0.2 * (attempt + 1))
            status = post(client, rnd.choice(urls), doc)
        return status

    # One client shared by the threads (httpx's is thread-safe): a client per send built an SSL context
    # each time, ~30 ms of CPU, which was most of this process's work in the campaign.
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(threads) as pool:
        finals = list(pool.map(one, zip(targets, sends, strict=True)))
    assert set(finals) == {202}, f"every delivery is acknowledged in the end: {Counter(finals)}"
    return first


# -- the oracle: a serial replay into a fresh schema ---------------------------------------------------

@contextmanager
def fresh_schema(template: PgScript) -> Iterator[str]:
    """A migrated schema of its own: the real migrations as the session recorded them (tests/db_template.py),
    replayed, as every test's ``pg_url`` is."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        template.replay(conn, schema)
    url = pg_schema_url(schema)
    try:
        yield url
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def serial_replay(deliveries: list[dict[str, Any]], template: PgScript) -> dict[str, dict[str, Any]]:
    with fresh_schema(template) as url:
        engine = make_engine(url)
        try:
            settings = make_settings(url)
            fold = FoldWorker(engine, {"pagerduty": inbound.PagerDutyApplier(settings)}, batch_size=1)
            for doc in deliveries:  # one at a time, in order: the oracle
                body = pd.encode(doc)
                assert not inbound.store(engine, parse_delivery(body), body).duplicate
                assert fold.drain()
            return snapshot(engine)
        finally:
            engine.dispose()


def snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per PagerDuty incident: what a responder and the metrics see."""
    out: dict[str, dict[str, Any]] = {}
    with Session(engine) as s:
        incs = {i.id: i for i in s.execute(select(Incident)).scalars()}
        timeline: dict[int, Counter[tuple[str, datetime, str]]] = {}
        # Rows the bot adds when its Slack calls are delivered ("invited the on-call") depend on delivery
        # timing, not on the input: the replay delivers nothing.
        for ev in s.execute(select(TimelineEvent).where(TimelineEvent.source != "bot")).scalars():
            timeline.setdefault(ev.incident_id, Counter())[(ev.kind, ev.occurred_at, ev.text)] += 1
    for inc_id, inc in incs.items():
        assert inc.pagerduty_incident_id, inc.ref
        out[inc.pagerduty_incident_id] = {
            "status": inc.status, "severity": inc.severity, **{m: getattr(inc, m) for m in MILESTONES},
            "timeline": timeline.get(inc_id, Counter()),
        }
    return out


def differences(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> list[str]:
    problems = [f"incidents: {sorted(set(got) ^ set(want))}"] if set(got) != set(want) else []
    for pd_id in sorted(set(got) & set(want)):
        for key in want[pd_id]:
            a, b = got[pd_id][key], want[pd_id][key]
            if a == b:
                continue
            if key == "timeline":
                problems.append(f"{pd_id} timeline: extra {sorted((a - b).elements())}, "
                                f"missing {sorted((b - a).elements())}")
            else:
                problems.append(f"{pd_id} {key}: {a} != replay {b}")
    return problems


# -- Slack effects ---------------------------------------------------------------------------------------

def wait_folded(engine: Engine, timeout: float) -> None:
    """Until no accepted delivery is waiting for the fold worker."""
    from incident_bot.pipeline import inbox

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            if not inbox.has_work(s):
                return
        time.sleep(0.1)
    raise AssertionError(f"the inbox was not folded in {timeout} s")


def wait_drained(engine: Engine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            if not q.has_work(s):
                return
        time.sleep(0.2)
    with Session(engine) as s:
        left = s.execute(select(OutboxMessage.method, OutboxMessage.status, OutboxMessage.last_error)
                         .where(OutboxMessage.status.in_(("pending", "inflight")))).all()
    raise AssertionError(f"the outbox did not drain in {timeout} s: {len(left)} rows left, e.g. {left[:3]}")


def assert_slack_exactly_once(engine: Engine, slack, incidents: int) -> None:  # type: ignore[no-untyped-def]
    """One channel per incident; every queued message delivered once, in queue order per channel."""
    created = [c for c in slack.calls("conversations.create") if c.status == 200]
    with Session(engine) as s:
        # An incident first applied when already resolved (its resolve overtook its trigger) is recorded
        # without a channel: no channel born resolved (issue 10 #21). The rest get exactly one.
        quiet = [i for i in s.execute(select(Incident)).scalars() if not i.slack_channel_wanted]
        assert all(i.slack_channel_id is None and i.resolved_at is not None for i in quiet)
        assert not s.execute(select(OutboxMessage).where(
            OutboxMessage.incident_id.in_([i.id for i in quiet]))).first(), "no Slack call for them"
    assert len(created) == incidents - len(quiet), f"{len(created)} channels for {incidents} incidents"
    assert slack.duplicate_messages() == []
    with Session(engine) as s:
        assert s.execute(select(OutboxMessage).where(OutboxMessage.status != "done")).first() is None, \
            "nothing dead or left behind"
        incs = s.execute(select(Incident)).scalars().all()
        posts = s.execute(select(OutboxMessage)
                          .where(OutboxMessage.method == "chat.postMessage")).scalars().all()
    queued: dict[int, list[int]] = {}
    for row in posts:
        if row.payload.get("channel") == "$incident":
            queued.setdefault(row.incident_id or 0, []).append(row.id or 0)
    assert len(incs) == incidents
    for inc in incs:
        if not inc.slack_channel_wanted:
            continue
        assert inc.slack_channel_id, f"{inc.ref} has its channel"
        ids = [m["metadata"]["event_payload"]["outbox_id"] for m in slack.messages(inc.slack_channel_id)]
        want = sorted(queued.get(inc.id or 0, []))
        assert ids == want, f"{inc.ref}: posted {ids}, queued {want}"
    assert len(slack.messages(slack.channel_by_name("incidents")["id"])) == incidents - len(quiet), \
        "one announcement each"
    assert slack.crashes() == []


# -- 1. replicas, redeliveries, reordering ---------------------------------------------------------------

def run_replica_campaign(pg_url: str, slack, template: PgScript, incidents: int, seed: int,  # type: ignore[no-untyped-def]
                         drain_timeout: float, max_notes: int = 3) -> None:
    deliveries = campaign(incidents, seed, max_notes)
    rnd = random.Random(seed)
    sends = [d for d in deliveries for _ in range(rnd.randint(1, 3))]
    rnd.shuffle(sends)
    env = server_env(pg_url, slack, **FAST_RETRIES)
    replicas = [ServerProcess(env).start(), ServerProcess(env).start()]
    engine = make_engine(pg_url)
    try:
        started = time.monotonic()
        first = send_all([r.url for r in replicas], sends, rnd)
        sent = time.monotonic()
        assert set(first) == {202}, f"with no fault injected, every send is accepted at once: {dict(first)}"
        # The oracle is computed while the replicas fold and drain; a 202 means stored, not yet applied,
        # so the snapshot waits for every accepted delivery to be folded.
        want = serial_replay(deliveries, template)
        wait_folded(engine, 120)
        diff = differences(snapshot(engine), want)
        assert diff == [], "\n".join(diff)
        wait_drained(engine, drain_timeout)
        with Session(engine) as s:
            calls = Counter(s.execute(select(OutboxMessage.method)).scalars())
        print(f"campaign: {incidents} incidents, {len(deliveries)} deliveries, {len(sends)} sends in "
              f"{sent - started:.1f} s (first answers {dict(first)}), outbox drained after "
              f"{time.monotonic() - started:.1f} s: {dict(calls)}")
        assert_slack_exactly_once(engine, slack, incidents)
    finally:
        engine.dispose()
        for r in replicas:
            r.stop()


def test_two_replicas_redelivered_and_reordered_equal_a_serial_replay(pg_url, slack, pg_template) -> None:  # type: ignore[no-untyped-def]
    run_replica_campaign(pg_url, slack, pg_template, incidents=40, seed=2026, drain_timeout=120)


@pytest.mark.heavy
@pytest.mark.timeout(1800)  # Slack's pace of about 20 channels a minute per replica: 200 take ~5 minutes
def test_heavy_two_replicas_2000_deliveries_of_200_incidents(pg_url, slack, pg_template) -> None:  # type: ignore[no-untyped-def]
    run_replica_campaign(pg_url, slack, pg_template, incidents=200, seed=7, drain_timeout=1200, max_notes=10)


def test_notes_racing_their_trigger_on_two_connections_are_never_lost(pg_url) -> None:  # type: ignore[no-untyped-def]
    """The race the campaign found: a note deferred (its incident not open yet) while another replica
    opens the incident must still be applied. Trigger and notes are stored together, then as many fold
    workers as deliveries (one row a batch) race to apply them, on separate connections."""
    engine = make_engine(pg_url)
    settings = make_settings(pg_url)
    notes = 8
    incidents = 30
    try:
        for i in range(incidents):
            pd_id = f"PDRACE{i}"
            docs = [pd.delivery("incident.triggered", pd.incident_data(pd_id, title=f"Race {i}"))]
            docs += [pd.delivery("incident.annotated", pd.note_data(pd_id, f"note {n}", f"PN{n}"))
                     for n in range(notes)]
            start = threading.Barrier(len(docs))

            for doc in docs:
                body = pd.encode(doc)
                inbound.store(engine, parse_delivery(body), body)
            applier = inbound.PagerDutyApplier(settings)

            def fold(_: int, start: threading.Barrier = start,
                     applier: inbound.PagerDutyApplier = applier) -> int:
                start.wait()
                return FoldWorker(engine, {"pagerduty": applier}, batch_size=1).run_once()

            with ThreadPoolExecutor(len(docs)) as pool:
                list(pool.map(fold, range(len(docs))))
            # Rows a worker found locked by another are picked up by the next pass, as a live worker would.
            assert FoldWorker(engine, {"pagerduty": applier}).drain()
        with Session(engine) as s:
            per_incident = Counter(s.execute(select(Incident.pagerduty_incident_id).join(
                TimelineEvent, TimelineEvent.incident_id == Incident.id).where(TimelineEvent.kind == "note"))
                .scalars())
            left = s.execute(select(func.count()).select_from(InboxDelivery)
                             .where(InboxDelivery.status == "deferred")).scalar_one()
        assert left == 0, f"{left} notes still deferred: acknowledged, never applied"
        assert per_incident == {f"PDRACE{i}": notes for i in range(incidents)}
    finally:
        engine.dispose()


# -- 2. Slack down, then rate limiting ---------------------------------------------------------------

def run_slack_outage(pg_url: str, slack, down_s: float, limited_s: float, incidents: int,  # type: ignore[no-untyped-def]
                     backoff_cap: float = 2) -> None:
    deliveries = campaign(incidents, seed=11)
    # The cap bounds how long after Slack's return the next attempt comes; with 30 attempts it must also
    # outlast the outage (a 2 s cap gives up, "dead", after about a minute of refused connections).
    env = server_env(pg_url, slack, **{**FAST_RETRIES, "OUTBOX_BACKOFF_CAP": str(backoff_cap)})
    replicas = [ServerProcess(env).start(), ServerProcess(env).start()]
    engine = make_engine(pg_url)
    try:
        slack.down()
        try:
            rnd = random.Random(11)
            with httpx.Client(timeout=10) as client:
                statuses = [post(client, rnd.choice(replicas).url, d) for d in deliveries]
            assert set(statuses) == {202}, "webhooks are acknowledged while Slack is down"
            time.sleep(max(0.0, down_s - 1))
        finally:
            # Back, but rate limited: every call answered 429 with Retry-After: 1, for a while.
            slack.fail_next("*", 1_000_000, status=429, retry_after=1)
            slack.up()
        try:
            slack.wait_for(lambda: len([c for c in slack.calls() if c.status == 429]) >= 3, timeout=30)
        except TimeoutError:
            with Session(engine) as s:
                status = Counter(s.execute(select(OutboxMessage.status)).scalars())
            raise AssertionError(f"no calls once Slack was back; outbox rows: {dict(status)}") from None
        time.sleep(limited_s)
        slack.clear_faults()
        assert not [c for c in slack.calls() if c.status == 200 and c.method != "auth.test"], \
            "nothing went through while Slack was down or limiting"
        wait_drained(engine, 120 + down_s)
        assert_slack_exactly_once(engine, slack, incidents)
    finally:
        engine.dispose()
        for r in replicas:
            r.stop()


def test_slack_down_then_rate_limited_delivers_everything_once_in_order(pg_url, slack) -> None:  # type: ignore[no-untyped-def]
    run_slack_outage(pg_url, slack, down_s=5, limited_s=2, incidents=3)


@pytest.mark.heavy
def test_heavy_slack_down_for_a_minute_then_rate_limited(pg_url, slack) -> None:  # type: ignore[no-untyped-def]
    run_slack_outage(pg_url, slack, down_s=60, limited_s=20, incidents=20, backoff_cap=10)
