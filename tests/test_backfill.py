"""``incident-bot backfill pagerduty`` against the HTTPS PagerDuty stand-in (issue 13)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from dateutil import parser as dtparser
from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.demo.pagerduty_standin import PagerDutyStandIn
from incident_bot.pagerduty.backfill import Pacer, RateLimitExhausted, RestHistory, Stats, make_client
from incident_bot.pagerduty.inbound import PagerDutyApplier
from incident_bot.usecases import backfill as svc
from storage.db import make_engine
from storage.models import BackfillWindow, Incident, OutboxMessage, TimelineEvent
from tests.standins.pagerduty_history import make_history

from .conftest import make_settings

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def history():  # type: ignore[no-untyped-def]
    return make_history(1500, since=SINCE, until=UNTIL, services=8, seed=13)


@pytest.fixture
def pagerduty(history):  # type: ignore[no-untyped-def]
    with PagerDutyStandIn() as standin:
        history.attach(standin)
        yield standin


# The stand-in has no rate limit: at PagerDuty's 960 a minute each run of the command waited ~7 s between
# requests. The pacing itself is tested exactly in test_requests_are_paced_under_pagerdutys_limit.
UNPACED_RPM = "60000"


def _cli(db_url: str, pagerduty: PagerDutyStandIn, *args: str, wait: bool = True,  # type: ignore[no-untyped-def]
         limit: str | None = UNPACED_RPM):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "DATABASE_", "GROUP_"))}
    env.update({"DATABASE_URL": db_url, "PAGERDUTY_API_TOKEN": "pd-read-token",
                "PAGERDUTY_FROM_EMAIL": "incident-bot@example.com", "PAGERDUTY_API_URL": pagerduty.url,
                "PAGERDUTY_CA_BUNDLE": pagerduty.ca_pem_path, "GROUP_BY": "none", "LOG_LEVEL": "WARNING"})
    if limit is not None:
        env["PAGERDUTY_API_MAX_RPM"] = limit
    cmd = [sys.executable, "-m", "incident_bot", *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _backfill(db_url: str, pagerduty: PagerDutyStandIn, *extra: str):  # type: ignore[no-untyped-def]
    out = _cli(db_url, pagerduty, "backfill", "pagerduty", "--since", "2025-01-01", "--until", "2026-01-01",
               "--max-rpm", UNPACED_RPM, "--format", "json", *extra)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _counts(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    try:
        with Session(engine) as s:
            return {name: s.execute(select(func.count()).select_from(model)).scalar_one()
                    for name, model in (("incidents", Incident), ("timeline", TimelineEvent),
                                        ("outbox", OutboxMessage))}
    finally:
        engine.dispose()


def _run(engine, settings, client, stats, opts):  # type: ignore[no-untyped-def]
    """The use case as the CLI wires it: PagerDuty's REST history, folded quietly."""
    return svc.run(engine, settings, RestHistory(client, stats), opts,
                   applier=PagerDutyApplier(settings, imported=True))


def test_backfill_a_year_quietly_idempotent_metrics_and_verify(db_url, pagerduty, history) -> None:  # type: ignore[no-untyped-def]
    doc = _backfill(db_url, pagerduty, "--verify")
    s = doc["summary"]
    assert s["incidents"] == 1500 and s["windows_done"] == s["windows"] == 13
    assert s["stored"] == s["incidents"] + s["log_entries"] and s["duplicates"] == 0
    counts = _counts(db_url)
    assert counts["incidents"] == 1500
    assert counts["outbox"] == 0, "no channel, no message: not a single outbox row"
    engine = make_engine(db_url)
    with Session(engine) as session:
        assert {i.origin for i in session.execute(select(Incident)).scalars()} == {"import"}
        assert not any(i.slack_channel_wanted for i in session.execute(select(Incident)).scalars())
    engine.dispose()
    # PagerDuty's own analytics agree with every imported incident.
    assert doc["verify"]["compared"] == 1500 and doc["verify"]["differences"] == []

    # metrics over the year, against an independent computation from the raw history.
    rows = [history.analytics(i["id"]) for i in history.incidents]
    metrics = _cli(db_url, pagerduty, "metrics", "--since", "2025-01-01", "--until", "2026-01-01",
                   "--format", "json")
    assert metrics.returncode == 0, metrics.stderr
    m = json.loads(metrics.stdout)
    assert m["incidents"]["total"] == 1500
    acks = [int(r["seconds_to_first_ack"]) for r in rows if r["seconds_to_first_ack"] is not None]
    ttrs = [int(r["seconds_to_resolve"]) for r in rows]
    assert m["mtta_s"]["n"] == len(acks) and m["mttr_s"]["n"] == 1500
    assert m["mtta_s"]["mean"] == pytest.approx(statistics.mean(acks), abs=1)
    assert m["mttr_s"]["mean"] == pytest.approx(statistics.mean(ttrs), abs=1)
    assert m["mttr_s"]["p50"] == pytest.approx(statistics.median_low(ttrs), abs=1)

    # A second run changes nothing.
    again = _backfill(db_url, pagerduty)["summary"]
    assert again["stored"] == 0 and again["windows_skipped"] == 13
    assert _counts(db_url) == counts
    listed = _cli(db_url, pagerduty, "incidents", "list", "--status", "all", "--format", "json")
    assert len(json.loads(listed.stdout)) == 1500


@pytest.fixture
def pagerduty_small():  # type: ignore[no-untyped-def]
    """The same year, 400 incidents (the same 13 windows): what resuming needs; the year's 1,500 are
    imported by the test above."""
    history = make_history(400, since=SINCE, until=UNTIL, services=8, seed=17)
    with PagerDutyStandIn() as standin:
        history.attach(standin)
        yield standin, history


def test_killed_half_way_then_resumed(sqlite_url, pagerduty_small) -> None:  # type: ignore[no-untyped-def]
    pagerduty, history = pagerduty_small
    pagerduty.delay_before("GET /log_entries", 0.3)  # slow enough to kill it mid-run
    proc = _cli(sqlite_url, pagerduty, "backfill", "pagerduty", "--since", "2025-01-01", "--until", "2026-01-01",
                "--max-rpm", UNPACED_RPM, "--format", "json", wait=False)
    engine = make_engine(sqlite_url)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with Session(engine) as s:
            done = s.execute(select(func.count()).select_from(BackfillWindow)
                             .where(BackfillWindow.status == "done")).scalar_one()
        if done >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with Session(engine) as s:
        done = s.execute(select(func.count()).select_from(BackfillWindow)
                         .where(BackfillWindow.status == "done")).scalar_one()
    assert 4 <= done < 13, "killed half-way"
    pagerduty.delay_before("GET /log_entries", 0)
    resumed = _backfill(sqlite_url, pagerduty)["summary"]
    assert resumed["windows_skipped"] == done and resumed["windows_done"] == 13 - done
    counts = _counts(sqlite_url)
    assert counts["incidents"] == len(history.incidents) == 400 and counts["outbox"] == 0
    expected_rows = len([e for e in history.entries if e["type"] in (
        "trigger_log_entry", "acknowledge_log_entry", "resolve_log_entry", "escalate_log_entry",
        "annotate_log_entry")])
    assert counts["timeline"] == expected_rows, "every event once, none twice"
    engine.dispose()


def test_429_honours_ratelimit_reset_and_is_bounded(sqlite_url, pagerduty) -> None:  # type: ignore[no-untyped-def]
    slept: list[float] = []
    pagerduty.fail_next("GET /incidents", times=2, status=429, retry_after=7)
    client, stats = make_client("tok", pagerduty.url, ca_bundle=pagerduty.ca_pem_path, per_minute=100_000,
                                sleep=slept.append)
    settings = make_settings(sqlite_url, group_by="none")
    engine = make_engine(sqlite_url)
    opts = svc.Options(since=SINCE, until=SINCE + timedelta(days=60), dry_run=True)
    summary = _run(engine, settings, client, stats, opts)
    assert slept.count(7.0) == 2 and stats.throttled == 2, "waited ratelimit-reset seconds, twice"
    assert summary.incidents > 0
    pagerduty.fail_next("GET /incidents", times=50, status=429, retry_after=1)
    with pytest.raises(RateLimitExhausted):
        _run(engine, settings, client, stats, opts)
    engine.dispose()


def test_max_rpm_over_pagerdutys_limit_is_refused(sqlite_url, pagerduty) -> None:  # type: ignore[no-untyped-def]
    out = _cli(sqlite_url, pagerduty, "backfill", "pagerduty", "--since", "2025-01-01", "--max-rpm", "961",
               limit=None)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "incident-bot: --max-rpm: PagerDuty allows at most 960 requests a minute: give 1 to 960"]
    assert pagerduty.calls() == []


def test_requests_are_paced_under_pagerdutys_limit(pagerduty) -> None:  # type: ignore[no-untyped-def]
    """One request every 60/960 s at most, the first at once; a higher --max-rpm is held to 960."""
    import ssl

    import httpx

    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    stats = Stats()
    http = httpx.Client(verify=ssl.create_default_context(cafile=pagerduty.ca_pem_path))
    pacer = Pacer(http, per_minute=960, max_429=5, stats=stats, sleep=sleep, clock=lambda: now[0])
    for _ in range(5):
        assert pacer.request("GET", f"{pagerduty.url}/incidents").status_code != 429
    assert slept == [pytest.approx(60 / 960)] * 4 and stats.requests == 5
    now[0] += 10  # idle for a while: the next request goes at once
    pacer.request("GET", f"{pagerduty.url}/incidents")
    assert len(slept) == 4 and len(pagerduty.calls("GET /incidents")) == 6
    http.close()
    client, _ = make_client("tok", pagerduty.url, ca_bundle=pagerduty.ca_pem_path, per_minute=1_000_000)
    assert client.parent.per_minute == 960


def test_dry_run_reads_tens_of_thousands_bisecting_full_windows(sqlite_url) -> None:  # type: ignore[no-untyped-def]
    big = make_history(25_000, since=SINCE, until=SINCE + timedelta(days=170), services=20, seed=3)
    with PagerDutyStandIn() as standin:
        big.attach(standin)
        # The pacing under PagerDuty's 960 a minute is checked on its own (test_requests_are_paced_...):
        # here it is recorded instead of waited out (~1,000 requests, a minute at 16 a second).
        paced: list[float] = []
        client, stats = make_client("tok", standin.url, ca_bundle=standin.ca_pem_path, per_minute=1_000_000,
                                    sleep=paced.append)
        engine = make_engine(sqlite_url)
        opts = svc.Options(since=SINCE, until=SINCE + timedelta(days=170), dry_run=True, window_days=180)
        summary = _run(engine, make_settings(sqlite_url), client, stats, opts)
        engine.dispose()
        assert summary.windows == 1 and summary.incidents == 25_000
        imported = {"acknowledge_log_entry", "resolve_log_entry", "escalate_log_entry", "annotate_log_entry"}
        assert summary.log_entries == len([e for e in big.entries if e["type"] in imported])
        pages = [c.params for c in standin.calls("GET /incidents")]
        assert max(int(p.get("offset", 0)) + int(p.get("limit", 25)) for p in pages) <= 10_000
        spans = {(p["since"], p["until"]) for p in pages}
        assert len(spans) > 2, "the 170-day window was bisected (over 10,000 incidents)"
        assert min(dtparser.isoparse(a) for a, _ in spans) == SINCE
        assert paced and stats.requests >= len(pages), "every request went through the pacer"


def test_backfill_over_live_history_adds_nothing_twice(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    from incident_bot.demo import pagerduty_payloads as pdp

    from .conftest import start_bot

    small = make_history(40, since=SINCE, until=SINCE + timedelta(days=20), services=3, seed=5)
    # One incident that live webhooks already delivered (trigger, acknowledge, resolve at PagerDuty's times).
    inc = next(i for i in small.incidents
               if sorted(e["type"] for e in small.entries if e["incident"]["id"] == i["id"])
               == ["acknowledge_log_entry", "resolve_log_entry", "trigger_log_entry"])
    entries = {e["type"]: e for e in small.entries if e["incident"]["id"] == inc["id"]}
    bot = start_bot(db_url, slack)
    try:
        data = pdp.incident_data(inc["id"], title=inc["title"], created_at=dtparser.isoparse(inc["created_at"]),
                                 service_id=inc["service"]["id"], service_name=inc["service"]["summary"])
        for event_type, kind in (("incident.triggered", "trigger_log_entry"),
                                 ("incident.acknowledged", "acknowledge_log_entry"),
                                 ("incident.resolved", "resolve_log_entry")):
            e = entries[kind]
            agent = e["agent"]["summary"] if e["agent"]["type"] == "user_reference" else None
            doc = pdp.delivery(event_type, data, occurred_at=dtparser.isoparse(e["created_at"]), agent=agent)
            assert bot.send_pd(doc).status_code == 202
        bot.drain()
        with Session(bot.rt.engine) as s:
            live = s.execute(select(Incident)).scalar_one()
            rows_before = [(t.kind, t.occurred_at, t.actor) for t in s.execute(
                select(TimelineEvent).where(TimelineEvent.incident_id == live.id)).scalars()]
            outbox_before = s.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
            slack_calls = len(slack.calls())
        with PagerDutyStandIn() as standin:
            small.attach(standin)
            client, stats = make_client("tok", standin.url, ca_bundle=standin.ca_pem_path, per_minute=100_000)
            opts = svc.Options(since=SINCE, until=SINCE + timedelta(days=20))
            summary = _run(bot.rt.engine, bot.rt.settings, client, stats, opts)
        assert summary.incidents == 40
        bot.drain()
        with Session(bot.rt.engine) as s:
            rows_after = [(t.kind, t.occurred_at, t.actor) for t in s.execute(
                select(TimelineEvent).where(TimelineEvent.incident_id == live.id)).scalars()]
            assert sorted(rows_after, key=str) == sorted(rows_before, key=str), "nothing said twice"
            again = s.get(Incident, live.id)
            assert (again.acknowledged_at, again.resolved_at, again.origin) == (
                live.acknowledged_at, live.resolved_at, "pagerduty")
            assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == 40
            assert s.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == outbox_before
        assert len(slack.calls()) == slack_calls, "the import made no Slack call"
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()


def test_progress_line_on_a_terminal_only() -> None:
    import io

    from incident_bot.pagerduty.backfill import Stats

    out = io.StringIO()
    progress = svc.Progress(out, enabled=True)
    progress.update(svc.Summary(windows=12, incidents=1234, log_entries=5678), Stats(requests=42, throttled=1), 3,
                    force=True)
    progress.done()
    line = out.getvalue()
    assert "window 3/12" in line and "1,234 incidents" in line and "5,678 log entries" in line
    assert "42 requests" in line and "429s: 1" in line and line.endswith("\n")
    quiet = io.StringIO()
    svc.Progress(quiet).update(svc.Summary(windows=1), Stats(), 1, force=True)  # StringIO is not a TTY
    assert quiet.getvalue() == ""
