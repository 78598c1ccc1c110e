"""CAPA tracker: rules, lifecycle, overdue across time zones, daily reminders, closing an incident."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz as dtz
from sqlalchemy import Engine, select

from incident_bot import cli
from incident_bot.core import capa
from incident_bot.core.lifecycle import Signal
from incident_bot.slack.intents import draw
from incident_bot.usecases import actions
from incident_bot.usecases.incidents import NewIncident, apply_signals, open_incident
from storage import repo
from storage.db import session_scope
from storage.models import ActionItem, Incident, OutboxMessage, TimelineEvent

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DUE = date(2026, 11, 26)
NOW = datetime(2026, 11, 26, 11, 30, tzinfo=UTC)  # Auckland: 27 Nov 00:30; Los Angeles: 26 Nov 03:30


def open_resolved(engine: Engine, title: str = "Checkout 500s", *, resolve: bool = True) -> str:
    with session_scope(engine) as s:
        inc = open_incident(
            s,
            NewIncident(title=title, detected_at=T0, severity="SEV2", origin="slack"),
            announce_channel=None,
            invite_oncall=False,
        )
        if resolve:
            tr = apply_signals(
                s, inc, [Signal("resolve", T0 + timedelta(hours=1))], strict=True, source="slack"
            )
            assert tr.refused is None
        return inc.ref


def incident(s, ref: str) -> Incident:  # type: ignore[no-untyped-def]
    inc = repo.incident_by_ref(s, ref)
    assert inc is not None
    return inc


# -- pure rules --------------------------------------------------------------------------------------


def test_vocabulary_is_validated() -> None:
    assert capa.validate_type("Preventive") == "preventive"
    assert (
        capa.validate_status("in progress") == "in_progress" and capa.validate_status("won't-do") == "wont_do"
    )
    with pytest.raises(capa.CapaError, match="use one of corrective, preventive, mitigation, process"):
        capa.validate_type("fix")
    with pytest.raises(capa.CapaError, match="priority"):
        capa.validate_priority("urgent")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", date(2026, 12, 1)),
        ("today", DUE),
        ("tomorrow", date(2026, 11, 27)),
        ("in 3 days", date(2026, 11, 29)),
        ("+2w", date(2026, 12, 10)),
        ("in 1 month", date(2026, 12, 26)),
        ("friday", date(2026, 11, 27)),
        ("next thu", date(2026, 12, 3)),
        ("dec 15", date(2026, 12, 15)),
        ("1 March", date(2027, 3, 1)),
        ("1 Nov 2027", date(2027, 11, 1)),
        ("next week", date(2026, 12, 3)),
    ],
)
def test_parse_due(text: str, expected: date) -> None:
    assert capa.parse_due(text, DUE) == expected  # DUE is a Thursday


@pytest.mark.parametrize("text", ["12/01", "2026-02-30", "someday", ""])
def test_parse_due_refuses(text: str) -> None:
    with pytest.raises(capa.CapaError):
        capa.parse_due(text, DUE)


def test_parse_action_text() -> None:
    p = capa.parse_action_text(
        "Add retries to the payment client <@U0BOB|bob> due friday preventive high", DUE
    )
    assert p == capa.ParsedAction(
        "Add retries to the payment client", "U0BOB", date(2026, 11, 27), "preventive", "high"
    )
    # A title that ends in a type word keeps it; "due to" in a title is not a due date.
    p = capa.parse_action_text("Document the deploy process due to drift", DUE)
    assert (
        p.title == "Document the deploy process due to drift"
        and p.due_date is None
        and p.type == "corrective"
    )
    p = capa.parse_action_text("Write a runbook type:process priority:low due 2026-12-01", DUE)
    assert (p.title, p.type, p.priority, p.due_date) == (
        "Write a runbook",
        "process",
        "low",
        date(2026, 12, 1),
    )
    with pytest.raises(capa.CapaError):
        capa.parse_action_text("<@U0BOB> due friday", DUE)


def test_overdue_depends_on_the_team_time_zone() -> None:
    auckland = capa.today_in(ZoneInfo("Pacific/Auckland"), NOW)
    los_angeles = capa.today_in(dtz.gettz("America/Los_Angeles"), NOW)  # type: ignore[arg-type]
    assert (auckland, los_angeles) == (date(2026, 11, 27), date(2026, 11, 26))
    assert capa.is_overdue("open", DUE, auckland) and capa.is_overdue("in_progress", DUE, auckland)
    assert not capa.is_overdue("open", DUE, los_angeles)  # due today is not late
    assert not capa.is_overdue("done", DUE, auckland) and not capa.is_overdue("open", None, auckland)


# -- lifecycle in the database ---------------------------------------------------------------------


def test_action_lifecycle(engine: Engine) -> None:
    ref = open_resolved(engine)
    with session_scope(engine) as s:
        item = actions.add_action(
            s,
            incident(s, ref),
            "  Alert on 5xx   rate ",
            "preventive",
            "high",
            "<@U0BOB>",
            DUE,
            "https://jira.example.com/OPS-1",
            "U0ALICE",
            at=NOW - timedelta(hours=2),
        )
        aid = item.id
        assert (item.title, item.owner_id, item.status, item.closed_at) == (
            "Alert on 5xx rate",
            "U0BOB",
            "open",
            None,
        )
        with pytest.raises(capa.CapaError, match="not an http"):
            actions.add_action(s, incident(s, ref), "x", ticket_url="javascript:alert(1)")
        with pytest.raises(capa.CapaError, match="Slack user id"):
            actions.add_action(s, incident(s, ref), "x", owner_id="bob")
    with session_scope(engine) as s:
        assert actions.set_status(s, aid, "in_progress", at=NOW - timedelta(hours=1)).closed_at is None  # type: ignore[arg-type]
        done = actions.set_status(s, aid, "done", at=NOW)  # type: ignore[arg-type]
        assert done.status == "done" and done.closed_at == NOW
    with session_scope(engine) as s:
        assert actions.set_status(s, aid, "open", at=NOW + timedelta(hours=1)).closed_at is None  # type: ignore[arg-type]
        with pytest.raises(LookupError):
            actions.set_status(s, 9999, "done")
        texts = [e.text for e in repo.timeline(s, incident(s, ref).id or 0) if e.kind.startswith("action_")]
    assert texts == [
        f"CAPA action #{aid} added (preventive, high, owner U0BOB, due 2026-11-26): Alert on 5xx rate",
        f"CAPA action #{aid} open → in_progress: Alert on 5xx rate",
        f"CAPA action #{aid} in_progress → done: Alert on 5xx rate",
        f"CAPA action #{aid} done → open: Alert on 5xx rate",
    ]


def test_list_actions_filters_and_overdue_across_zones(engine: Engine) -> None:
    ref = open_resolved(engine)
    other = open_resolved(engine, "Login errors")
    with session_scope(engine) as s:
        a = actions.add_action(s, incident(s, ref), "Due on the 26th", owner_id="U0BOB", due_date=DUE).id
        b = actions.add_action(
            s, incident(s, ref), "Due later", "process", "high", "U0BOB", date(2026, 12, 9)
        ).id
        c = actions.add_action(
            s, incident(s, other), "Closed one", owner_id="U0EVE", due_date=date(2026, 11, 1)
        ).id
        actions.set_status(s, c, "wont_do")  # type: ignore[arg-type]
    auckland, los_angeles = date(2026, 11, 27), date(2026, 11, 26)
    with session_scope(engine) as s:
        ids = lambda rows: [r.item.id for r in rows]  # noqa: E731
        assert ids(actions.list_actions(s, overdue=True, today=auckland)) == [a]
        assert ids(actions.list_actions(s, overdue=True, today=los_angeles)) == []
        assert ids(actions.list_actions(s, today=auckland)) == [b, a, c]  # high first
        assert ids(actions.list_actions(s, open_only=True, today=auckland)) == [b, a]
        assert ids(actions.list_actions(s, owner="U0EVE", today=auckland)) == [c]
        assert ids(actions.list_actions(s, incident_ref=other.lower(), today=auckland)) == [c]
        doc = actions.action_dict(actions.list_actions(s, overdue=True, today=auckland)[0])
    assert doc["overdue"] is True and doc["due_date"] == "2026-11-26" and doc["incident"] == ref
    assert doc["created_at"].endswith("Z") and doc["closed_at"] is None


# -- reminders -------------------------------------------------------------------------------------


def _reminder_fixture(engine: Engine) -> dict[str, int]:
    ref, other = open_resolved(engine), open_resolved(engine, "Login <b>errors</b>")
    with session_scope(engine) as s:
        inc, inc2 = incident(s, ref), incident(s, other)
        made = {
            "bob1": actions.add_action(
                s, inc, "Fix <!channel> pool", owner_id="U0BOB", due_date=date(2026, 11, 20)
            ),
            "bob2": actions.add_action(
                s, inc2, "Add alert", "preventive", "high", "U0BOB", date(2026, 11, 25)
            ),
            "eve": actions.add_action(s, inc2, "Runbook", "process", "low", "U0EVE", date(2026, 11, 24)),
            "future": actions.add_action(s, inc, "Later", owner_id="U0BOB", due_date=date(2026, 12, 24)),
            "done": actions.add_action(s, inc, "Done", owner_id="U0DAN", due_date=date(2026, 11, 1)),
            "nobody": actions.add_action(s, inc, "No owner", due_date=date(2026, 11, 1)),
        }
        actions.set_status(s, made["done"].id or 0, "done")
        return {k: v.id or 0 for k, v in made.items()}


def _dms(engine: Engine) -> list[OutboxMessage]:
    with session_scope(engine) as s:
        return list(
            s.execute(
                select(OutboxMessage)
                .where(OutboxMessage.order_key.like("dm:%"))  # type: ignore[attr-defined]
                .order_by(OutboxMessage.id)
            ).scalars()
        )


def test_one_reminder_per_owner_per_day_batched(engine: Engine) -> None:
    ids = _reminder_fixture(engine)
    today = date(2026, 11, 27)
    with session_scope(engine) as s:
        assert actions.enqueue_overdue_reminders(s, today=today, tz="Pacific/Auckland") == 2
    with session_scope(engine) as s:
        assert (
            actions.enqueue_overdue_reminders(s, today=today, tz="Pacific/Auckland") == 0
        )  # second call, same day
    dms = _dms(engine)
    assert [(m.order_key, m.method, m.payload["channel"], m.dedup_key) for m in dms] == [
        ("dm:U0BOB", "chat.postMessage", "U0BOB", "capa-reminder:U0BOB:2026-11-27"),
        ("dm:U0EVE", "chat.postMessage", "U0EVE", "capa-reminder:U0EVE:2026-11-27"),
    ]
    drawn = draw(dms[0].payload, None)  # as the Slack job draws it when it sends
    bob = json.dumps(drawn["blocks"], ensure_ascii=False)
    assert drawn["text"] == "You own 2 overdue CAPA actions"
    assert bob.index(f"*#{ids['bob2']}* Add alert") < bob.index(f"*#{ids['bob1']}* Fix &lt;!channel&gt; pool")
    assert "as of 2026-11-27 (Pacific/Auckland)" in bob and "(7 days overdue)" in bob
    assert "Login &lt;b&gt;errors&lt;/b&gt;" in bob and "Later" not in bob
    with session_scope(engine) as s:  # the next day, the owners are reminded again
        assert actions.enqueue_overdue_reminders(s, today=today + timedelta(days=1), tz=ZoneInfo("UTC")) == 2


def test_two_replicas_enqueue_one_reminder(engine: Engine) -> None:
    """Two sessions race (the first holds its transaction open): one DM per owner in total."""
    _reminder_fixture(engine)
    today, counts, first_inserted = date(2026, 11, 27), [], threading.Event()

    def replica(wait: threading.Event | None) -> None:
        if wait is not None:
            assert wait.wait(10)
        with session_scope(engine) as s:
            counts.append(actions.enqueue_overdue_reminders(s, today=today, tz="UTC"))
            if wait is None:
                first_inserted.set()
                threading.Event().wait(0.3)  # still uncommitted while the other replica tries

    threads = [
        threading.Thread(target=replica, args=(None,)),
        threading.Thread(target=replica, args=(first_inserted,)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(counts) == [0, 2]
    assert len(_dms(engine)) == 2


# -- closing ---------------------------------------------------------------------------------------


def test_close_refused_with_open_corrective_action_unless_overridden(engine: Engine) -> None:
    ref = open_resolved(engine)
    at = T0 + timedelta(days=2)
    with session_scope(engine) as s:
        inc = incident(s, ref)
        fix = actions.add_action(s, inc, "Fix the pool", "corrective").id
        actions.add_action(s, inc, "Load test", "preventive")  # preventive actions do not block closing
        out = actions.close_incident(s, inc, actor="U0ALICE", at=at)
        assert not out.closed and out.open_corrective == [fix] and f"#{fix}" in (out.refused or "")
        assert actions.open_corrective_count(s, inc.id or 0) == 1
    with session_scope(engine) as s:
        inc = incident(s, ref)
        assert inc.status == "resolved" and inc.closed_at is None
        out = actions.close_incident(s, inc, actor="U0ALICE", at=at, override_reason="Tracked in OPS-9 ")
        assert out.closed and out.refused is None
    with session_scope(engine) as s:
        inc = incident(s, ref)
        assert (inc.status, inc.closed_at, inc.close_override_reason) == ("closed", at, "Tracked in OPS-9")
        rows = list(
            s.execute(
                select(TimelineEvent.kind, TimelineEvent.text, TimelineEvent.milestone).where(
                    TimelineEvent.incident_id == inc.id, TimelineEvent.occurred_at == at
                )
            )
        )
        assert ("closed", "Closed", "closed_at") in rows
        assert (
            "close_override",
            f"Closed with open corrective action(s) #{fix}; reason: Tracked in OPS-9",
            None,
        ) in rows
        again = actions.close_incident(s, inc, actor="U0ALICE", at=at, override_reason="x")
        assert not again.closed and again.refused == "already closed"


def test_close_without_open_corrective_actions_and_lifecycle_refusal(engine: Engine) -> None:
    done_ref, open_ref = open_resolved(engine), open_resolved(engine, "Still burning", resolve=False)
    with session_scope(engine) as s:
        inc = incident(s, done_ref)
        a = actions.add_action(s, inc, "Fixed already", "corrective")
        actions.set_status(s, a.id or 0, "done")
        out = actions.close_incident(s, inc, actor="U0ALICE", at=T0 + timedelta(days=1))
        assert out.closed and inc.close_override_reason is None and inc.status == "closed"
        refused = actions.close_incident(s, incident(s, open_ref), actor="U0ALICE", at=T0 + timedelta(days=1))
        assert not refused.closed and "resolve it first" in (refused.refused or "")


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_actions(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from storage.db import make_engine

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TIMEZONE", "Pacific/Auckland")
    ref = open_resolved(make_engine(sqlite_url))
    assert (
        cli.main(
            [
                "actions",
                "add",
                ref,
                "Alert on 5xx",
                "--type",
                "preventive",
                "--priority",
                "high",
                "--owner",
                "U0BOB",
                "--due",
                "2020-01-01",
                "--format",
                "json",
            ]
        )
        == 0
    )
    added = json.loads(capsys.readouterr().out)
    assert (added["incident"], added["type"], added["due_date"], added["status"]) == (
        ref,
        "preventive",
        "2020-01-01",
        "open",
    )
    assert cli.main(["actions", "add", ref, "Bad", "--due", "12/01"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert cli.main(["actions", "list", "--overdue", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["id"], d["overdue"]) for d in listed] == [(added["id"], True)]
    assert cli.main(["actions", "set", str(added["id"]), "--status", "done"]) == 0
    assert "is now done" in capsys.readouterr().out
    assert cli.main(["actions", "list", "--open"]) == 0
    assert capsys.readouterr().out.strip() == "no action items"
    assert cli.main(["actions", "list"]) == 0
    assert "Alert on 5xx" in capsys.readouterr().out
    assert cli.main(["actions", "set", "999", "--status", "done"]) == 1


def test_actions_are_stored_as_rows(engine: Engine) -> None:
    ref = open_resolved(engine)
    with session_scope(engine) as s:
        actions.add_action(
            s, incident(s, ref), "Row check", "mitigation", "low", "U0BOB", DUE, None, "U0ALICE"
        )
    with session_scope(engine) as s:
        row = s.execute(select(ActionItem)).scalar_one()
        assert (row.type, row.priority, row.due_date, row.created_by) == ("mitigation", "low", DUE, "U0ALICE")


def test_action_edit_parsing() -> None:
    """`/incident action #N ...`: every word understood, or refused with the word that was not."""
    from incident_bot.core.capa import ActionEdit, is_action_edit, parse_action_edit

    today = date(2026, 12, 1)
    assert parse_action_edit("#3 <@U0BOB|bob> due 2026-12-20 priority:high in progress", today) == ActionEdit(
        3, owner_id="U0BOB", due_date=date(2026, 12, 20), priority="high", status="in_progress")
    assert parse_action_edit("#12 owner none due none low won't do", today) == ActionEdit(
        12, clear_owner=True, clear_due=True, priority="low", status="wont_do")
    assert parse_action_edit("#2 Done", today) == ActionEdit(2, status="done")
    assert parse_action_edit("#2", today).empty
    assert is_action_edit(" #4 done") and not is_action_edit("Fix #4 for good")
    for bad, why in (("#2 fix it", "'fix'"), ("#2 due someday", "after due is not a date"),
                     ("#2 type:process", "'type:process'"), ("#2 <@U0A> <@U0B>", "one owner")):
        with pytest.raises(capa.CapaError, match=why):
            parse_action_edit(bad, today)
