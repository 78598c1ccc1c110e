"""Stale-communications reminders, driven by the scheduler on an injected clock (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from incident_bot.core.nudge import due_slot, parse_intervals
from incident_bot.scheduler import Scheduler
from incident_bot.slack.intents import draw
from incident_bot.usecases import incident_changes as commands
from incident_bot.usecases import nudge, rca
from incident_bot.usecases.incidents import NewIncident, open_incident
from storage import repo
from storage.db import session_scope
from storage.models import OutboxMessage

from .conftest import make_settings

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def declare(engine: Engine, severity: str = "SEV2") -> int:
    with session_scope(engine) as s:
        inc = open_incident(s, NewIncident(title="Queue backlog", detected_at=T0, severity=severity, origin="slack",
                                           reporter_id="U0ADA"), announce_channel=None, invite_oncall=False)
        inc.commander_id, inc.slack_channel_id, inc.created_at = "U0ADA", "C0INC1", T0
        return inc.id or 0


def nudges(engine: Engine) -> list[OutboxMessage]:
    with session_scope(engine) as s:
        rows = s.execute(select(OutboxMessage).where(OutboxMessage.dedup_key.like("status-nudge:%"))  # type: ignore[union-attr]
                         .order_by(OutboxMessage.id)).scalars().all()
        s.expunge_all()
        return list(rows)


def test_one_reminder_per_interval_even_with_two_replicas(engine: Engine, db_url: str) -> None:
    settings = make_settings(db_url)
    inc_id = declare(engine)
    clock = Clock(T0 + timedelta(minutes=29))
    a = Scheduler(engine, settings, instance_id="a", clock=clock, lease_seconds=30)
    b = Scheduler(engine, settings, instance_id="b", clock=clock, lease_seconds=30)
    a.tick(), b.tick()
    assert nudges(engine) == [], "quiet for 29 minutes of a 30-minute interval: no reminder yet"
    for minute in (30, 31, 45, 59):
        clock.now = T0 + timedelta(minutes=minute)
        a.tick()
        # A second replica that takes over (the lease of the first ran out) must not post again.
        clock.now += timedelta(seconds=31)
        b.tick()
    [first] = nudges(engine)
    drawn = draw(first.payload, None)  # as the Slack job draws it when it sends
    assert drawn["channel"] == "$incident" and "<@U0ADA>" in drawn["blocks"][0]["text"]["text"]
    assert "status_nudge_snooze" in str(drawn["blocks"])
    clock.now = T0 + timedelta(minutes=60, seconds=5)
    a.tick(), b.tick()
    assert len(nudges(engine)) == 2, "a second interval of silence: a second reminder"
    # A status update starts a new quiet stretch.
    with session_scope(engine) as s:
        inc = repo.incident_by_ref(s, "INC-1")
        assert inc is not None
        clock.now = T0 + timedelta(minutes=61)
        repo.add_timeline(s, incident_id=inc_id, occurred_at=clock.now, source="slack", kind="status_update",
                          actor="U0ADA", text="Backlog draining")
    for minute in (62, 90):
        clock.now = T0 + timedelta(minutes=minute)
        a.tick()
    assert len(nudges(engine)) == 2
    clock.now = T0 + timedelta(minutes=91)
    a.tick()
    assert len(nudges(engine)) == 3
    # The RCA lists the update under Communications, the reminders in the appendix.
    with session_scope(engine) as s:
        text = rca.export_rca(s, "INC-1", "md").text
    comms = text[text.index("## Communications"):text.index("## Detection")]
    assert "Backlog draining" in comms
    assert text[text.index("## Appendix"):].count("no status update") == 3


def test_snooze_gives_one_more_interval_and_resolved_incidents_are_quiet(engine: Engine, db_url: str) -> None:
    settings = make_settings(db_url, status_update_interval="SEV1=15m,default=1h")
    declare(engine, severity="SEV3")
    with session_scope(engine) as s:
        assert nudge.enqueue_nudges(s, settings, T0 + timedelta(minutes=59)) == 0
        assert nudge.enqueue_nudges(s, settings, T0 + timedelta(minutes=60)) == 1
        inc = repo.incident_by_ref(s, "INC-1")
        assert inc is not None
        assert nudge.snooze(s, settings, inc, user_id="U0ADA", now=T0 + timedelta(minutes=65)) == "1h 00m 00s"
    with session_scope(engine) as s:
        assert nudge.enqueue_nudges(s, settings, T0 + timedelta(minutes=124)) == 0
        assert nudge.enqueue_nudges(s, settings, T0 + timedelta(minutes=125)) == 1
        inc = repo.incident_by_ref(s, "INC-1")
        assert inc is not None
        commands.milestone(s, settings, inc, user_id="U0ADA", command="resolve")
    with session_scope(engine) as s:
        assert nudge.enqueue_nudges(s, settings, T0 + timedelta(hours=10)) == 0


def test_interval_setting() -> None:
    assert parse_intervals(None) == {"SEV1": 1800, "SEV2": 1800, "default": 3600}
    assert parse_intervals("0") == {"default": 0}
    assert due_slot(T0 + timedelta(hours=5), T0, 0) is None
    assert due_slot(T0 + timedelta(minutes=90), T0, 1800) == 3
    for bad in ("SEV1=5x", "P1=30m", "30s"):
        with pytest.raises(ValueError, match="STATUS_UPDATE_INTERVAL"):
            parse_intervals(bad)
