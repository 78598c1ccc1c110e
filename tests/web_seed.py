"""Data for the web view tests, written through the use cases (as the bot writes it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from incident_bot.config import Settings
from incident_bot.core import schedule
from incident_bot.core.lifecycle import Signal
from incident_bot.usecases import actions, rca
from incident_bot.usecases.digest import post_digest
from incident_bot.usecases.incidents import NewIncident, apply_signals, milestone_for, open_incident
from storage import repo
from storage.db import session_scope
from storage.models import Incident, PagerDutyLink, SlackUser, utcnow

HOSTILE = "Checkout <script>alert(1)</script> & 500s"
TICKET = "https://jira.example.com/browse/OPS-7"
PD_URL = "https://acme.pagerduty.com/incidents/PABC123"


def _step(s, inc: Incident, kind: str, signal: str, at: datetime, actor: str | None = None) -> None:  # type: ignore[no-untyped-def]
    tr = apply_signals(s, inc, [Signal(signal, at)], strict=False, source="pagerduty", actor=actor)  # type: ignore[arg-type]
    repo.add_timeline(s, incident_id=inc.id or 0, occurred_at=at, source="pagerduty", kind=kind,
                      text=kind.capitalize(), actor=actor, milestone=milestone_for(kind, tr.changed))


LONG_NOTES = 650  # more than two windows of the incident page's timeline (300 rows by default)


def _long_incident(s, now: datetime) -> Incident:  # type: ignore[no-untyped-def]
    """An incident whose timeline takes three windows of the page: notes three to a second (rows of
    the same time meet at a window's edge), a status update and a bookkeeping row every 50 notes, a
    milestone that no row marks (mitigated) in the middle, and the resolve at the end."""
    at = now - timedelta(days=1, hours=4)
    inc = open_incident(s, NewIncident(
        title="Queue backlog growing for hours", detected_at=at, severity="SEV2", origin="slack",
        service="queue-api", impact_started_at=at - timedelta(minutes=5)), announce_channel=None, invite_oncall=False)
    _step(s, inc, "acknowledged", "acknowledge", at + timedelta(minutes=1), actor="U0ALICE")
    first = at + timedelta(minutes=2)
    for k in range(LONG_NOTES):
        ts = first + timedelta(seconds=10 * (k // 3))
        repo.add_timeline(s, incident_id=inc.id or 0, occurred_at=ts, source="slack", kind="note",
                          actor="U0BOB" if k % 2 else "U0ALICE", text=f"long note {k} &amp; more")
        if k % 50 == 49:
            repo.add_timeline(s, incident_id=inc.id or 0, occurred_at=ts, source="slack", kind="status_update",
                              actor="U0ALICE", text=f"Status {k // 50}: still draining the backlog")
            repo.add_timeline(s, incident_id=inc.id or 0, occurred_at=ts, source="bot", kind="status_nudge",
                              text=f"Reminder {k // 50}: post a status update")
    apply_signals(s, inc, [Signal("mitigate", first + timedelta(seconds=10 * (LONG_NOTES // 6), milliseconds=500))],
                  strict=False, source="slack")
    _step(s, inc, "resolved", "resolve", first + timedelta(seconds=10 * (LONG_NOTES // 3) + 5))
    return inc


def seed(engine: Engine, settings: Settings, *, now: datetime | None = None) -> dict[str, str]:
    """Twelve incidents over the last weeks (mixed severity, service, status), one with a full RCA,
    PagerDuty links, CAPA (one overdue, one with a ticket), and one posted digest; then one with a
    long timeline (``refs["long"]``)."""
    now = now or utcnow()
    refs: dict[str, str] = {}
    with session_scope(engine) as s:
        s.add(SlackUser(user_id="U0ALICE", name="Alice Example"))
        s.add(SlackUser(user_id="U0BOB", name="Bob Builder"))
        for n in range(12):
            at = now - timedelta(days=3 + n * 4, hours=n)
            inc = open_incident(s, NewIncident(
                title=HOSTILE if n == 0 else f"Incident number {n} on {'search' if n % 2 else 'checkout'}",
                detected_at=at, severity=f"SEV{1 + n % 4}", origin="pagerduty",
                service="search-api" if n % 2 else "checkout-api", impact_started_at=at - timedelta(minutes=3),
                fired_by="PagerDuty triggered", pagerduty_incident_id=f"PABC{n:03d}",
                pagerduty_url=PD_URL if n == 0 else None), announce_channel=None, invite_oncall=False)
            if n == 0:
                inc.commander_id, inc.slack_channel_id, inc.slack_channel_name = "U0ALICE", "C0INC1", "inc-1-checkout"
                s.add(PagerDutyLink(pagerduty_incident_id="PXYZ999", incident_id=inc.id or 0, primary=False,
                                    url="https://acme.pagerduty.com/incidents/PXYZ999", service_name="payments-api"))
                for k in range(30):
                    repo.add_timeline(s, incident_id=inc.id or 0, occurred_at=at + timedelta(minutes=1, seconds=k),
                                      source="slack", kind="note", actor="U0BOB",
                                      # typed in Slack, stored as Slack sends it (escaping model: README)
                                      text=f"note {k} &lt;b&gt;not bold&lt;/b&gt;")
                refs["full"] = inc.ref
            if n % 3 != 2:
                _step(s, inc, "acknowledged", "acknowledge", at + timedelta(minutes=2 + n), actor="U0ALICE")
                mitigate = Signal("mitigate", at + timedelta(minutes=20 + n))
                apply_signals(s, inc, [mitigate], strict=False, source="slack")
                _step(s, inc, "resolved", "resolve", at + timedelta(minutes=40 + 5 * n))
            elif "open" not in refs:
                refs["open"] = inc.ref
        full = repo.incident_by_ref(s, refs["full"])
        assert full is not None
        today = schedule.local_date(now, settings.tzinfo)
        actions.add_action(s, full, "Add a pool-size guard", "corrective", "high", "U0ALICE",
                           today - timedelta(days=2), TICKET, "U0ALICE", at=now - timedelta(days=3))
        actions.add_action(s, full, "Load-test config pushes", "preventive", "medium", "U0BOB",
                           today + timedelta(days=20), None, "U0ALICE", at=now - timedelta(days=3))
        actions.add_action(s, full, "Runbook for rollbacks", "preventive", "low", None, None, None, "U0ALICE",
                           at=now - timedelta(days=3))
        rca.set_narrative(s, refs["full"], {"summary": "Checkout returned 500s for 40 minutes.",
                                            "root_causes": "The pool size change was not load tested."})
        refs["long"] = _long_incident(s, now).ref
    with session_scope(engine) as s:
        week = schedule.last_complete_week(now, settings.tzinfo)
        assert post_digest(s, settings, week, now=now)
        refs["digest"] = schedule.period_key(*week, settings.tzinfo)
    return refs


def today_utc() -> date:
    return datetime.now(UTC).date()
