"""The outbox under Slack failures: 429 Retry-After, 500s, timeouts, an outage, calls that never work.

Every message must arrive exactly once, in order per channel, once Slack recovers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from storage.models import Incident, OutboxMessage

from .conftest import start_bot

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def story(bot, pd_id: str = "PDINC1", title: str = "Disk full on db-7") -> list[int]:  # type: ignore[no-untyped-def]
    data = pd.incident_data(pd_id, title=title, created_at=T0)
    events = [
        pd.delivery("incident.triggered", data, occurred_at=T0),
        pd.delivery("incident.acknowledged", data, occurred_at=T0 + timedelta(minutes=2)),
        pd.delivery("incident.annotated", pd.note_data(pd_id, "note one"), occurred_at=T0 + timedelta(minutes=3)),
        pd.delivery("incident.annotated", pd.note_data(pd_id, "note two", "N2"),
                    occurred_at=T0 + timedelta(minutes=4)),
        pd.delivery("incident.resolved", data, occurred_at=T0 + timedelta(minutes=9)),
    ]
    return [bot.send_pd(e).status_code for e in events]


def channel_messages(bot, pd_id: str = "PDINC1") -> list[dict]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        inc = s.execute(select(Incident).where(Incident.pagerduty_incident_id == pd_id)).scalar_one()
    assert inc.slack_channel_id, "the channel was created"
    return bot.slack.messages(inc.slack_channel_id)


def assert_exactly_once_in_order(bot, pd_id: str = "PDINC1") -> None:  # type: ignore[no-untyped-def]
    msgs = channel_messages(bot, pd_id)
    texts = [m["text"] for m in msgs]
    assert len(msgs) == 5, texts  # intro, ack, two notes, resolved
    assert "Acknowledged" in texts[1] and "note one" in texts[2] and "note two" in texts[3]
    assert "Resolved" in texts[4]
    ids = [m["metadata"]["event_payload"]["outbox_id"] for m in msgs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    dups = bot.slack.duplicate_messages()
    assert dups == [], [(d.get("channel", ""), d.get("text"), d.get("ts")) for d in dups]
    with Session(bot.rt.engine) as s:
        assert s.execute(select(OutboxMessage).where(OutboxMessage.status != "done")).first() is None


def test_429_retry_after_is_honoured(bot) -> None:  # type: ignore[no-untyped-def]
    bot.slack.fail_next("chat.postMessage", 2, status=429, retry_after=1)
    assert story(bot) == [202] * 5
    bot.drain()
    assert_exactly_once_in_order(bot)
    posts = bot.slack.calls("chat.postMessage")
    limited = [c for c in posts if c.status == 429]
    assert len(limited) == 2
    after = [c for c in posts if c.at > limited[-1].at]
    assert after and after[0].at - limited[-1].at >= 0.9, "the next call waited for Retry-After"


def test_500s_are_retried(bot) -> None:  # type: ignore[no-untyped-def]
    bot.slack.fail_next("*", 4, status=500)
    story(bot)
    bot.drain()
    assert_exactly_once_in_order(bot)
    assert bot.slack.channel_by_name("inc-1-disk-full-on-db-7") is not None


def test_timeouts_after_slack_applied_the_call_do_not_duplicate(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    b = start_bot(db_url, slack, slack_timeout=1)
    try:
        # Slack posts the message, then answers too late: the client times out and must not post it again.
        slack.delay("chat.postMessage", 1.6)
        story(b)
        time.sleep(2.5)
        slack.clear_faults()
        b.drain(40)
        assert_exactly_once_in_order(b)
        with Session(b.rt.engine) as s:
            retried = s.execute(select(OutboxMessage).where(OutboxMessage.attempts > 1)).scalars().all()
        assert retried, "some calls timed out and were retried"
    finally:
        b.http.close()
        b.server.stop()


def test_slack_down_for_a_while_then_back(bot) -> None:  # type: ignore[no-untyped-def]
    bot.slack.down()
    try:
        assert story(bot) == [202] * 5, "webhooks are acknowledged while Slack is down"
        time.sleep(1.5)
    finally:
        bot.slack.up()
    bot.drain(30)
    assert_exactly_once_in_order(bot)


def test_order_is_kept_per_channel_across_incidents_with_faults(bot) -> None:  # type: ignore[no-untyped-def]
    bot.slack.fail_next("chat.postMessage", 3, status=500)
    bot.slack.fail_next("conversations.create", 1, status=429, retry_after=1)
    for i in range(3):
        story(bot, pd_id=f"PDINC{i}", title=f"Incident {i}")
    bot.drain(40)
    for i in range(3):
        assert_exactly_once_in_order(bot, pd_id=f"PDINC{i}")


def test_a_call_that_can_never_succeed_is_parked_dead(bot) -> None:  # type: ignore[no-untyped-def]
    bot.slack.fail_next("conversations.setTopic", 1, status=200, error="channel_not_found")
    story(bot)
    bot.drain()
    with Session(bot.rt.engine) as s:
        dead = s.execute(select(OutboxMessage).where(OutboxMessage.status == "dead")).scalars().all()
    assert [(d.method, d.last_error, d.attempts) for d in dead] == [
        ("conversations.setTopic", "channel_not_found", 1)]
    assert len(channel_messages(bot)) == 5, "later rows still go out"
    metrics = bot.http.get(f"{bot.url}/metrics").text
    assert 'incident_bot_outbox_rows{status="dead"} 1.0' in metrics
    # Counters are per process (and this process runs many tests): the dead call is counted.
    line = next(x for x in metrics.splitlines()
                if x.startswith('incident_bot_outbox_calls_total{method="conversations.setTopic",outcome="dead"}'))
    assert float(line.rsplit(" ", 1)[1]) >= 1.0


def test_name_taken_gets_a_suffix(bot) -> None:  # type: ignore[no-untyped-def]
    bot.slack.add_channel("inc-1-disk-full-on-db-7")
    story(bot)
    bot.drain()
    assert bot.slack.channel_by_name("inc-1-disk-full-on-db-7-2") is not None
    assert len(channel_messages(bot)) == 5
