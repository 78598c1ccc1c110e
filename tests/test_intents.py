"""Intents: the use cases queue what a message says, the Slack job draws it (slack/intents.py).

Rows queued before intents existed (their Block Kit already drawn) must still be delivered after an
upgrade, as they were stored.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.demo.slack_standin import BOT_USER_ID
from incident_bot.pipeline import outbox
from incident_bot.slack.intents import RENDERERS
from storage import repo
from storage.db import session_scope
from storage.models import OutboxMessage

ROOT = Path(__file__).resolve().parents[1]


def test_every_queued_intent_has_a_renderer() -> None:
    """Every ``intent("name", ...)`` the code queues names a renderer of the explicit table."""
    queued: set[str] = set()
    for path in (ROOT / "incident_bot").rglob("*.py"):
        queued |= set(re.findall(r'\bintent\(\s*"([a-z_]+)"', path.read_text()))
    assert {"channel_intro", "topic", "storm_line"} <= queued, "the scan found the intents"
    assert queued <= set(RENDERERS), queued - set(RENDERERS)


def _done(engine, n: int) -> bool:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(OutboxMessage)
                         .where(OutboxMessage.status.in_(("done", "dead")))).scalar_one() >= n  # type: ignore[attr-defined]


def test_rows_queued_before_intents_are_delivered_as_stored(bot) -> None:  # type: ignore[no-untyped-def]
    channel = bot.slack.add_channel("ops", members=[BOT_USER_ID])  # a topic is set by a member
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*drawn* before the upgrade"}}]
    with session_scope(bot.rt.engine) as s:
        repo.enqueue(s, order_key="old", method="chat.postMessage",
                     payload={"channel": channel, "text": "old fallback", "blocks": blocks})
        # The alert-storm line's first shape: its counts at the top of the payload, not under "data".
        repo.enqueue(s, order_key="old", method="chat.postMessage", payload={
            "channel": channel, "render": "storm_line", "service": "checkout",
            "storm": {"count": 2, "first": "2026-11-26T14:00:00+00:00", "last": "2026-11-26T14:01:30+00:00",
                      "titles": ["5xx <above> 5%", "latency"]}})
        repo.enqueue(s, order_key="old", method="conversations.setTopic",
                     payload={"channel": channel, "topic": "SEV2 triggered | INC-1: a stored topic"})
    bot.rt.worker.notify()
    bot.slack.wait_for(lambda: _done(bot.rt.engine, 3), timeout=20)
    posted = bot.slack.messages(channel)
    assert [m["text"] for m in posted] == ["old fallback", "+2 PagerDuty incidents on checkout"]
    assert posted[0]["blocks"] == blocks
    storm = posted[1]["blocks"][0]["text"]["text"]
    assert "*+2 PagerDuty incidents* on *checkout* in the last 2 min" in storm
    assert "• 5xx &lt;above&gt; 5%" in storm, "escaped when drawn"
    assert bot.slack.channel_by_name("ops")["topic"]["value"] == "SEV2 triggered | INC-1: a stored topic"


def test_an_unknown_renderer_is_parked_not_sent(bot) -> None:  # type: ignore[no-untyped-def]
    channel = bot.slack.add_channel("ops")
    with session_scope(bot.rt.engine) as s:
        repo.enqueue(s, order_key="x", method="chat.postMessage",
                     payload={"channel": channel, **outbox.intent("no_such_message", ref="INC-1")})
    bot.rt.worker.notify()
    bot.slack.wait_for(lambda: _done(bot.rt.engine, 1), timeout=20)
    with Session(bot.rt.engine) as s:
        row = s.execute(select(OutboxMessage).where(OutboxMessage.order_key == "x")).scalar_one()
    assert row.status == "dead" and "no renderer named 'no_such_message'" in (row.last_error or "")
    assert bot.slack.messages(channel) == []


def test_an_intent_that_cannot_be_drawn_is_parked_at_once(bot) -> None:  # type: ignore[no-untyped-def]
    channel = bot.slack.add_channel("ops")
    with session_scope(bot.rt.engine) as s:  # a severity change without its incident: nothing to draw
        repo.enqueue(s, order_key="y", method="chat.postMessage",
                     payload={"channel": channel, **outbox.intent("severity", before="SEV3", after="SEV1")})
    bot.rt.worker.notify()
    bot.slack.wait_for(lambda: _done(bot.rt.engine, 1), timeout=20)
    with Session(bot.rt.engine) as s:
        row = s.execute(select(OutboxMessage).where(OutboxMessage.order_key == "y")).scalar_one()
    assert (row.status, row.attempts) == ("dead", 1), "not retried"
    assert "cannot draw 'severity': KeyError" in (row.last_error or "")
    assert bot.slack.messages(channel) == []
