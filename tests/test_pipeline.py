"""The inbox-first pipeline: what the accept path does (one INSERT, nothing else), what the fold does with
it (batches, poison rows, failed rows replayed), how outbox claims of a dead worker come back (heartbeats),
and the job registry. Through the real ASGI app, real signatures, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlmodel import Session

from incident_bot.bootstrap import job_registry
from incident_bot.config import Settings
from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.pagerduty.inbound import PagerDutyApplier
from incident_bot.pipeline import inbox
from incident_bot.pipeline.fold import FoldWorker
from incident_bot.pipeline.heartbeat import Heartbeat
from incident_bot.pipeline.jobs import DuplicateJobKind, JobKind, JobRegistry, UnknownJobKind
from storage import repo
from storage.db import session_scope
from storage.models import InboxDelivery, Incident, OutboxMessage, TimelineEvent, WorkerHeartbeat, utcnow

from .conftest import slash, start_bot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def accept_only(db_url, slack):  # type: ignore[no-untyped-def]
    """A replica that only accepts (``serve --no-worker``): nothing is applied behind the test's back."""
    b = start_bot(db_url, slack, start_worker=False)
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def statements_during(engine, action):  # type: ignore[no-untyped-def]
    """Every SQL statement the engine sends while ``action`` runs (transaction control left out)."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if not re.match(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE)", statement, re.I):
            seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        result = action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen, result


def test_webhook_accept_path_is_one_insert(accept_only) -> None:  # type: ignore[no-untyped-def]
    doc = pd.delivery("incident.triggered", pd.incident_data(title="Checkout down"))
    seen, r = statements_during(accept_only.rt.engine, lambda: accept_only.send_pd(doc))
    assert r.status_code == 202 and r.json() == {"status": "accepted"}
    assert len(seen) == 1 and seen[0].startswith("INSERT INTO inbox"), seen
    assert "ON CONFLICT" in seen[0]
    # A redelivery: the same single statement, and nothing new stored.
    seen, r = statements_during(accept_only.rt.engine, lambda: accept_only.send_pd(doc))
    assert r.json() == {"status": "duplicate"} and len(seen) == 1


def test_slack_command_accept_path_is_one_insert(accept_only) -> None:  # type: ignore[no-untyped-def]
    seen, r = statements_during(accept_only.rt.engine, lambda: slash(accept_only, "declare Search is down"))
    assert r.status_code == 200
    assert len(seen) == 1 and seen[0].startswith("INSERT INTO inbox"), seen
    # Help and usage errors are answered from the ack itself, without the database.
    seen, r = statements_during(accept_only.rt.engine, lambda: slash(accept_only, "sev nine"))
    assert seen == [] and "severity from 1 to 4" in r.json()["text"]
    seen, r = statements_during(accept_only.rt.engine, lambda: slash(accept_only, "help"))
    assert seen == [] and r.json()["blocks"]


def test_nothing_is_applied_until_a_fold_worker_runs(accept_only) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(title="Checkout down")
    for kind in ("incident.triggered", "incident.acknowledged"):
        assert accept_only.send_pd(pd.delivery(kind, data)).status_code == 202
    engine = accept_only.rt.engine
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == 0
        assert inbox.counts(s)["pending"] == 2
    fold = FoldWorker(engine, {"pagerduty": PagerDutyApplier(accept_only.rt.settings)})
    assert fold.drain()
    with Session(engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
        assert inc.status == "acknowledged"
        assert inbox.counts(s)["pending"] == 0
        assert s.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() > 0


def test_a_poison_row_is_parked_and_blocks_nothing_then_replays(accept_only, tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = accept_only.rt.engine
    for i in range(3):
        accept_only.send_pd(pd.delivery("incident.triggered", pd.incident_data(f"PGOOD{i}", title=f"Good {i}")))
    # A stored row that cannot be applied (as if a parser bug met a payload it does not expect).
    poison = inbox.accept(engine, source="pagerduty", event_id="POISON", event_type="incident.triggered",
                          payload='{"event": "not what the parser expects"}', subject_id="PPOISON")
    accept_only.send_pd(pd.delivery("incident.triggered", pd.incident_data("PGOOD3", title="Good 3")))
    fold = FoldWorker(engine, {"pagerduty": PagerDutyApplier(accept_only.rt.settings)}, max_attempts=3)
    for _ in range(5):
        fold.run_once()
    with Session(engine) as s:
        titles = sorted(s.execute(select(Incident.title)).scalars())
        row = s.get(InboxDelivery, poison.inbox_id)
        assert row is not None
        assert (row.status, row.attempts) == ("failed", 3)
        assert "MalformedDelivery" in (row.last_error or "")
    assert titles == ["Good 0", "Good 1", "Good 2", "Good 3"], "the rows around the poison were applied"

    env = {"DATABASE_URL": accept_only.rt.settings.database_url, "PATH": "/usr/bin:/bin"}
    listed = subprocess.run([sys.executable, "-m", "incident_bot", "inbox", "list", "--failed", "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["counts"]["failed"] == 1 and [r["id"] for r in doc["rows"]] == [poison.inbox_id]
    assert "MalformedDelivery" in doc["rows"][0]["error"]
    retried = subprocess.run([sys.executable, "-m", "incident_bot", "inbox", "retry", str(poison.inbox_id)],
                             env=env, capture_output=True, text=True, timeout=60)
    assert retried.returncode == 0 and "1 row(s) queued again" in retried.stdout
    with Session(engine) as s:
        row = s.get(InboxDelivery, poison.inbox_id)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
    again = subprocess.run([sys.executable, "-m", "incident_bot", "inbox", "retry", "999999"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "not a failed row" in again.stdout


def test_failed_rows_show_in_metrics(accept_only) -> None:  # type: ignore[no-untyped-def]
    engine = accept_only.rt.engine
    inbox.accept(engine, source="pagerduty", event_id="POISON", event_type="incident.triggered",
                 payload="{}", subject_id="PPOISON")
    fold = FoldWorker(engine, {"pagerduty": PagerDutyApplier(accept_only.rt.settings)}, max_attempts=1)
    fold.run_once()
    text = accept_only.http.get(f"{accept_only.url}/metrics").text
    assert 'incident_bot_inbox_rows{status="failed"} 1.0' in text


def test_a_batch_folds_many_incidents_in_one_transaction(accept_only) -> None:  # type: ignore[no-untyped-def]
    engine = accept_only.rt.engine
    for i in range(20):
        data = pd.incident_data(f"PBATCH{i}", title=f"Batch {i}")
        accept_only.send_pd(pd.delivery("incident.triggered", data))
        accept_only.send_pd(pd.delivery("incident.acknowledged", data))
    commits: list[int] = []

    def count(conn) -> None:  # type: ignore[no-untyped-def]
        commits.append(1)

    event.listen(engine, "commit", count)
    try:
        fold = FoldWorker(engine, {"pagerduty": PagerDutyApplier(accept_only.rt.settings)}, batch_size=200)
        assert fold.run_once() == 40
    finally:
        event.remove(engine, "commit", count)
    assert len(commits) == 1, "40 deliveries of 20 incidents: one transaction"
    with Session(engine) as s:
        statuses = set(s.execute(select(Incident.status)).scalars())
        numbers = sorted(s.execute(select(Incident.number)).scalars())
    assert statuses == {"acknowledged"} and numbers == list(range(1, 21))


# -- heartbeats: a dead worker's outbox claims -----------------------------------------------------------

def test_a_dead_workers_claims_are_taken_over_after_its_heartbeat_stops(engine) -> None:  # type: ignore[no-untyped-def]
    now = [utcnow()]
    clock = lambda: now[0]  # noqa: E731
    dead = Heartbeat(engine, "host:1:dead", clock=clock)
    live = Heartbeat(engine, "host:2:live", clock=clock)
    dead.beat()
    live.beat()
    with session_scope(engine) as s:
        repo.enqueue(s, order_key="incident:1", method="chat.postMessage", payload={"channel": "C1"})
        repo.enqueue(s, order_key="incident:2", method="chat.postMessage", payload={"channel": "C2"})
    with session_scope(engine) as s:
        for row, owner in zip(s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars(),
                              ("host:1:dead", "host:2:live"), strict=True):
            row.status, row.claimed_by, row.lease_until = "inflight", owner, now[0] + timedelta(minutes=2)
            s.add(row)
    now[0] += timedelta(seconds=5)
    assert live.beat() == 0, "5 s without a heartbeat is not dead yet"
    now[0] += timedelta(seconds=6)
    assert live.beat() == 1, "11 s without a heartbeat: its claim comes back, long before the 2 min lease"
    with Session(engine) as s:
        rows = list(s.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars())
        workers = set(s.execute(select(WorkerHeartbeat.worker_id)).scalars())
    assert (rows[0].status, rows[0].claimed_by, rows[0].result.get("uncertain")) == ("pending", None, True)
    assert (rows[1].status, rows[1].claimed_by) == ("inflight", "host:2:live"), "a live worker keeps its claim"
    assert workers == {"host:2:live"}


def test_sqlite_restart_takes_back_every_claim_at_once(sqlite_url) -> None:  # type: ignore[no-untyped-def]
    from storage.db import make_engine

    engine = make_engine(sqlite_url)
    try:
        with session_scope(engine) as s:
            repo.enqueue(s, order_key="incident:1", method="chat.postMessage", payload={"channel": "C1"})
        with session_scope(engine) as s:
            row = s.execute(select(OutboxMessage)).scalar_one()
            row.status, row.claimed_by, row.lease_until = "inflight", "old:1:x", utcnow() + timedelta(minutes=2)
            s.add(WorkerHeartbeat(worker_id="old:1:x"))  # its heartbeat is fresh: it died a second ago
        hb = Heartbeat(engine, "new:2:y")
        hb.start()
        hb.stop()
        with Session(engine) as s:
            row = s.execute(select(OutboxMessage)).scalar_one()
        assert row.status == "pending" and row.result.get("uncertain") is True
    finally:
        engine.dispose()


# -- the job registry ------------------------------------------------------------------------------------

def test_job_registry_is_explicit() -> None:
    reg = JobRegistry().add([JobKind("a.b", lambda *a: None)])  # type: ignore[arg-type, return-value]
    with pytest.raises(DuplicateJobKind):
        reg.add([JobKind("a.b", lambda *a: None)])  # type: ignore[arg-type, return-value]
    with pytest.raises(UnknownJobKind):
        reg["chat.postMesage"]


def test_every_queued_job_kind_is_registered() -> None:
    """Every ``method="..."`` the code queues names a registered job kind."""
    registered = set(job_registry().names())
    queued: set[str] = set()
    for path in (ROOT / "incident_bot").rglob("*.py"):
        queued |= set(re.findall(r'method="([a-zA-Z_.0-9]+)"', path.read_text()))
    assert queued, "the scan found the enqueue calls"
    assert queued <= registered, queued - registered


def test_an_unknown_job_kind_is_parked_not_sent(bot) -> None:  # type: ignore[no-untyped-def]
    with session_scope(bot.rt.engine) as s:
        repo.enqueue(s, order_key="x", method="chat.deleteEverything", payload={"channel": "C1"})
    bot.rt.worker.notify()
    bot.slack.wait_for(lambda: _dead(bot.rt.engine), timeout=20)
    with Session(bot.rt.engine) as s:
        row = s.execute(select(OutboxMessage).where(OutboxMessage.method == "chat.deleteEverything")).scalar_one()
    assert row.status == "dead" and "unknown job kind" in (row.last_error or "")
    assert not bot.slack.calls("chat.deleteEverything")


def _dead(engine) -> bool:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(OutboxMessage)
                         .where(OutboxMessage.status == "dead")).scalar_one() > 0


# -- topics ----------------------------------------------------------------------------------------------

def test_topics_coalesce_and_never_overtake_their_messages(bot) -> None:  # type: ignore[no-untyped-def]
    bot.slack.delay_before("conversations.create", 1.0)  # everything queues up behind the channel
    data = pd.incident_data(title="Checkout down")
    for kind in ("incident.triggered", "incident.acknowledged", "incident.resolved"):
        assert bot.send_pd(pd.delivery(kind, data)).status_code == 202
    bot.drain()
    topics = [c.params["topic"] for c in bot.slack.calls("conversations.setTopic")]
    assert len(topics) == 1 and " resolved " in topics[0], topics
    with Session(bot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
    history = bot.slack.messages(inc.slack_channel_id, include_system=True)
    topic_at = next(i for i, m in enumerate(history) if m.get("subtype") == "channel_topic")
    resolved_at = next(i for i, m in enumerate(history) if "Resolved" in (m.get("text") or ""))
    assert resolved_at < topic_at, "the resolved topic comes after the message that resolves"


def test_a_paced_topic_or_invitation_never_holds_back_the_messages_behind_it(engine) -> None:  # type: ignore[no-untyped-def]
    """Per key, the head row goes first, except a topic or an invitation waiting for Slack's limit: the
    messages queued after it may overtake it (never a channel creation, never a row in flight)."""
    from incident_bot.pipeline import outbox

    now = utcnow()
    with session_scope(engine) as s:
        for method in ("conversations.create", "conversations.setTopic", "conversations.invite",
                       "chat.postMessage"):
            repo.enqueue(s, order_key="incident:1", method=method, payload={"channel": "$incident"})

    def claim(*paced: str) -> str | None:
        with session_scope(engine) as s:
            rows = outbox.claim(s, now=now + timedelta(seconds=1), lease=timedelta(minutes=2),
                                exclude_methods=paced)
            return rows[0].method if rows else None

    def set_status(method: str, status: str) -> None:
        with session_scope(engine) as s:
            row = s.execute(select(OutboxMessage).where(OutboxMessage.method == method)).scalar_one()
            row.status = status
            s.add(row)

    assert claim("conversations.create") is None, "nothing overtakes a paced channel creation"
    assert claim() == "conversations.create"
    assert claim("conversations.setTopic", "conversations.invite") is None, "nor a row in flight"
    set_status("conversations.create", "done")
    assert claim("conversations.setTopic", "conversations.invite") == "chat.postMessage", \
        "the message overtakes the paced topic and invitation"
    set_status("chat.postMessage", "done")
    assert claim() == "conversations.setTopic", "which still go, in order, when Slack allows"
    assert claim() is None, "the invitation waits for the topic in flight"


def test_a_held_summary_line_never_holds_back_the_messages_behind_it(engine) -> None:  # type: ignore[no-untyped-def]
    """A storm's "+N PagerDuty incidents" line is held a few seconds to gather the joins; an acknowledgement
    queued after it goes first. The line itself still waits for the channel, and goes when its time comes."""
    from incident_bot.pipeline import outbox

    now = utcnow()
    with session_scope(engine) as s:
        repo.enqueue(s, order_key="incident:1", method="conversations.create", payload={"name": "inc-1"})
        repo.enqueue_row(s, order_key="incident:1", method="chat.postMessage", payload={"text": "+3"},
                         not_before=now + timedelta(seconds=5), dedup_key=f"{outbox.HELD}storm:1:x")
        repo.enqueue(s, order_key="incident:1", method="chat.postMessage", payload={"text": "acked"})

    def claim(at: datetime) -> list[str]:
        with session_scope(engine) as s:
            rows = outbox.claim(s, now=at, lease=timedelta(minutes=2), limit=5)
            for row in rows:
                outbox.finish(s, row.id or 0, result={})
            return [row.payload.get("text") or row.method for row in rows]

    soon = now + timedelta(seconds=1)
    assert claim(soon) == ["conversations.create"], "the channel first, alone"
    assert claim(soon) == ["acked"], "the acknowledgement does not wait for the held line"
    assert claim(now + timedelta(seconds=6)) == ["+3"], "the line goes when its hold is over"


def test_a_storm_of_incidents_gets_its_intros_while_topics_wait_for_slack(bot) -> None:  # type: ignore[no-untyped-def]
    """Many incidents at once: Slack's limit on ``conversations.setTopic`` paces the topics; every
    incident's intro is posted anyway, without waiting minutes behind its topic."""
    bot.rt.worker.gate.budgets["conversations.setTopic"] = 0.5  # one topic, then one every 2 minutes
    for n in range(3):
        data = pd.incident_data(f"PSTORM{n}", title=f"Region down {n}", number=n + 1)
        assert bot.send_pd(pd.delivery("incident.triggered", data)).status_code == 202

    def intros() -> list[str]:
        with Session(bot.rt.engine) as s:
            channels = [c for c in s.execute(select(Incident.slack_channel_id)).scalars() if c]
        return [c for c in channels if any("Region down" in (m.get("text") or "") for m in bot.slack.messages(c))]

    assert len(bot.slack.wait_for(lambda: len(intros()) == 3 and intros(), timeout=30)) == 3
    assert len(bot.slack.calls("conversations.setTopic")) == 1, "the other topics still wait for the budget"


# -- two topologies --------------------------------------------------------------------------------------

@pytest.mark.postgres
def test_accept_replicas_and_worker_replicas_apart(pg_url, slack) -> None:  # type: ignore[no-untyped-def]
    from .conftest import ServerProcess, server_env

    env = server_env(pg_url, slack)
    web = ServerProcess(env, args=["serve", "--no-worker"])
    worker = subprocess.Popen([sys.executable, "-m", "incident_bot", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        web.start()
        import httpx

        body = pd.encode(pd.delivery("incident.triggered", pd.incident_data(title="Split topology")))
        r = httpx.post(f"{web.url}/pagerduty/webhook", content=body, headers=pd.signed_headers(body, env[
            "PAGERDUTY_WEBHOOK_SECRETS"]))
        assert r.status_code == 202
        slack.wait_for(lambda: slack.channel_by_name("inc-1-split-topology"), timeout=30)
    finally:
        web.stop()
        worker.terminate()
        worker.wait(20)
    assert worker.returncode == 0, worker.stderr.read().decode()[-2000:] if worker.stderr else ""


def test_settings_for_the_fold_are_bounded() -> None:
    with pytest.raises(ValueError):
        Settings(_env_file=None, fold_batch_size=0)  # type: ignore[call-arg]
    assert Settings(_env_file=None).fold_batch_size == 200  # type: ignore[call-arg]


def test_timeline_rows_of_a_batch_are_in_arrival_order_per_incident(accept_only) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(title="Order")
    accept_only.send_pd(pd.delivery("incident.triggered", data))
    for n in range(5):
        accept_only.send_pd(pd.delivery("incident.annotated", pd.note_data(data["id"], f"note {n}", f"PN{n}")))
    fold = FoldWorker(accept_only.rt.engine, {"pagerduty": PagerDutyApplier(accept_only.rt.settings)})
    assert fold.drain()
    with Session(accept_only.rt.engine) as s:
        posted = [json.dumps(r.payload) for r in s.execute(
            select(OutboxMessage).where(OutboxMessage.method == "chat.postMessage").order_by(OutboxMessage.id))
            .scalars()]
        notes = list(s.execute(select(TimelineEvent.text).where(TimelineEvent.kind == "note")).scalars())
    assert sorted(notes) == [f"note {n}" for n in range(5)]
    order = [next(n for n in range(5) if f"note {n}" in p) for p in posted if "note " in p]
    assert order == [0, 1, 2, 3, 4]


@pytest.mark.postgres
def test_concurrent_fold_workers_apply_each_row_once(pg_url, slack) -> None:  # type: ignore[no-untyped-def]
    b = start_bot(pg_url, slack, start_worker=False)
    try:
        for i in range(40):
            data = pd.incident_data(f"PCONC{i % 8}", title=f"Conc {i % 8}")
            kind = "incident.triggered" if i < 8 else "incident.annotated"
            doc = pd.delivery(kind, data if kind == "incident.triggered" else pd.note_data(data["id"], f"n{i}",
                                                                                          f"PN{i}"))
            b.send_pd(doc)
        applier = PagerDutyApplier(b.rt.settings)
        workers = [FoldWorker(b.rt.engine, {"pagerduty": applier}, batch_size=5) for _ in range(4)]
        threads = [threading.Thread(target=w.drain) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with Session(b.rt.engine) as s:
            assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == 8
            notes = s.execute(select(func.count()).select_from(TimelineEvent)
                              .where(TimelineEvent.kind == "note")).scalar_one()
            assert notes == 32
            assert inbox.counts(s)["pending"] == 0 and inbox.counts(s)["deferred"] == 0
    finally:
        b.http.close()
        b.server.stop()
