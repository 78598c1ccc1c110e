"""The intro message's history lookup, through the real pipeline (signed PagerDuty webhook, fold, outbox,
Slack stand-in), on SQLite and PostgreSQL: a recurrence shown in the channel is put on the incident's
timeline once (so the RCA and the web page say when and why); a lookup that fails or times out leaves the
intro without the section, and says so in the log."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import select, text

from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.usecases import similar
from incident_bot.usecases.rca import export_rca
from incident_bot.usecases.similar import IntroLookup
from storage.db import make_engine, read_scope, session_scope
from storage.models import Incident, TimelineEvent

from .conftest import start_bot
from .similar_history import add_incident, done_action

CHANNEL = "inc-2-checkout-api-5xx-rate-above-5"


def intro_blocks(bot) -> str:  # type: ignore[no-untyped-def]
    ch = bot.slack.wait_for(lambda: bot.slack.channel_by_name(CHANNEL))
    intro = bot.slack.messages(ch["id"])[0]
    assert [b.get("block_id") for b in intro["blocks"]].count("incident_actions") == 1  # the buttons are there
    return json.dumps(intro["blocks"])


def test_a_recurrence_goes_on_the_timeline_once(bot) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with session_scope(bot.rt.engine) as s:
        past = add_incident(s, "Checkout API 5xx: DB connection pool exhausted", service="checkout-api",
                            detected=now - timedelta(days=20), resolved=now - timedelta(days=20, hours=-1),
                            root_causes="Pool too small after deploy")
        fix = done_action(s, past, now - timedelta(days=6, minutes=1), title="Raise the pool size")
        past_ref, fix_id = past.ref, fix.id
    assert bot.send_pd(pd.delivery("incident.triggered", pd.incident_data(created_at=now))).status_code == 202
    bot.drain()
    blocks = intro_blocks(bot)
    assert "Recurrence after CAPA" in blocks and past_ref in blocks and "Raise the pool size" in blocks
    with session_scope(bot.rt.engine) as s:
        rows = s.execute(select(TimelineEvent.source, TimelineEvent.text)
                         .where(TimelineEvent.kind == "recurrence")).all()
        assert rows == [("bot", f"Flagged as a recurrence after CAPA: {past_ref} (Checkout API 5xx: DB connection "
                                f"pool exhausted) had a CAPA action marked done 6 days before it was detected "
                                f"(#{fix_id} Raise the pool size); same service (checkout-api); shared words: "
                                "checkout, api, 5xx")]
        inc_id = s.execute(select(Incident.id).where(Incident.ref == "INC-2")).scalar_one()
    # Said again (an intro re-posted after a crash): the same row, not a second one.
    learned = bot.rt.worker.ctx.history(inc_id)
    with session_scope(bot.rt.engine) as s:
        similar.record_recurrence(s, inc_id, learned.recurrence)
    with session_scope(bot.rt.engine) as s:
        assert len(s.execute(select(TimelineEvent.id).where(TimelineEvent.kind == "recurrence")).all()) == 1
        rca = export_rca(s, "INC-2", "md").text
    assert f"Flagged as a recurrence after CAPA: {past_ref}" in rca  # in the RCA's timeline
    assert "## Previous incident and its actions" in rca


def seed_past(bot) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with session_scope(bot.rt.engine) as s:
        past = add_incident(s, "Checkout API 5xx: DB connection pool exhausted", service="checkout-api",
                            detected=now - timedelta(days=20), resolved=now - timedelta(days=20, hours=-1))
        done_action(s, past, now - timedelta(days=6))


def open_and_read_intro(bot, caplog: pytest.LogCaptureFixture) -> str:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR, logger="incident_bot.usecases.similar"):
        assert bot.send_pd(pd.delivery("incident.triggered", pd.incident_data())).status_code == 202
        bot.drain()
        return intro_blocks(bot)


def assert_without_history(bot, blocks: str, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    assert "Similar past incidents" not in blocks and "Recurrence" not in blocks
    assert "Checkout API 5xx rate above 5%" in blocks  # the intro itself
    [record] = [r for r in caplog.records if "lookup failed; intro posted without them" in r.getMessage()]
    assert record.exc_info is not None and record.levelno == logging.ERROR
    with session_scope(bot.rt.engine) as s:
        assert s.execute(select(TimelineEvent.id).where(TimelineEvent.kind == "recurrence")).first() is None


def test_the_intro_goes_out_without_history_when_the_lookup_fails(bot, caplog) -> None:  # type: ignore[no-untyped-def]
    seed_past(bot)
    with bot.rt.engine.begin() as conn:  # a table the lookup reads is gone (a half-applied migration, say)
        conn.execute(text("DROP TABLE incident_search_words"))
    assert_without_history(bot, open_and_read_intro(bot, caplog), caplog)


@pytest.mark.postgres
def test_the_intro_goes_out_without_history_when_the_lookup_times_out(pg_url: str, slack, caplog) -> None:  # type: ignore[no-untyped-def]
    bot = start_bot(pg_url, slack)
    try:
        seed_past(bot)
        bot.rt.worker.ctx.history.budget_s = 0.3  # 5 s in service
        # Another session holds a lock the lookup must wait for: the lookup gives up after its budget.
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as holder:
            holder.execute("LOCK TABLE incident_search_words IN ACCESS EXCLUSIVE MODE")
            blocks = open_and_read_intro(bot, caplog)
            holder.rollback()
        assert_without_history(bot, blocks, caplog)
        assert "canceling statement due to statement timeout" in caplog.text
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()


def test_on_sqlite_the_lookup_neither_waits_for_nor_holds_the_write_lock(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        now = datetime.now(UTC)
        with session_scope(engine) as s:
            past = add_incident(s, "Checkout API 5xx: DB connection pool exhausted", service="checkout-api",
                                detected=now - timedelta(days=20), resolved=now - timedelta(days=20, hours=-1))
            new = add_incident(s, "Checkout API 5xx", service="checkout-api", detected=now, resolved=None)
        writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None, timeout=0)
        writer.execute("BEGIN IMMEDIATE")  # the fold, say, in the middle of a batch
        try:
            learned = IntroLookup(engine, timedelta(days=30))(new.id or 0)
            assert learned is not None and [p.ref for p in learned.similar] == [past.ref]
        finally:
            writer.rollback()
        # And the other way round: a write goes on while a lookup's transaction is open.
        with read_scope(engine) as s:
            s.execute(text("SELECT count(*) FROM incident_search")).scalar_one()
            writer.execute("BEGIN IMMEDIATE")  # timeout=0: fails at once if the lookup held the lock
            writer.execute("UPDATE counters SET value = value WHERE name = 'incident'")
            writer.commit()
        writer.close()
    finally:
        engine.dispose()
