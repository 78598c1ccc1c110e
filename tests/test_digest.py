"""The weekly SEV digest: figures on a hand-made set across two weeks, formats, Slack limits, posting once.

The set is in Europe/Berlin around the end of summer time (Sunday 25 October 2026): the previous week
2026-W43 is 169 hours long, the current week is 2026-W44. Every figure below was worked out by hand
from the rows in :func:`seed` (nearest-rank percentiles, means rounded half to even).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from incident_bot.cli import main
from incident_bot.core import digest as core
from incident_bot.core import digest_view, schedule
from incident_bot.core import targets as target_rules
from incident_bot.slack.digest_blocks import MAX_BLOCKS, digest_message
from incident_bot.slack.intents import draw
from incident_bot.usecases import digest as service
from incident_bot.usecases.incidents import refresh_metrics
from storage.db import session_scope
from storage.models import ActionItem, DigestRun, Incident, OutboxMessage, SlackUser
from tests.conftest import make_settings

BERLIN = schedule.zone_named("Europe/Berlin")
W43 = schedule.iso_week("2026-W43", BERLIN)
W44 = schedule.iso_week("2026-W44", BERLIN)
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # Monday 09:00 CET, when the digest of W44 is posted
RCA = {"summary": "What happened.", "root_causes": "Why it happened."}


def t(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def add(s: Session, number: int, severity: str, service_name: str | None, *, impact: datetime,
        detected: datetime, ack: datetime | None = None, mitigated: datetime | None = None,
        resolved: datetime | None = None, rca: dict | None = None, commander: str | None = None,
        title: str | None = None) -> Incident:
    status = "resolved" if resolved else ("acknowledged" if ack else "triggered")
    inc = Incident(number=number, ref=f"INC-{number}", title=title or f"Incident {number}", severity=severity,
                   service=service_name, status=status, impact_started_at=impact, detected_at=detected,
                   acknowledged_at=ack, mitigated_at=mitigated, resolved_at=resolved, rca=rca or {},
                   commander_id=commander, slack_channel_id=f"C0INC{number}",
                   slack_channel_name=f"inc-{number}-incident")
    s.add(inc)
    s.flush()
    refresh_metrics(s, inc)
    return inc


def seed(engine: Engine) -> None:
    with session_scope(engine) as s:
        # -- previous week, 2026-W43 [2026-10-18T22:00Z, 2026-10-25T23:00Z) --------------------------
        i1 = add(s, 1, "SEV1", "api", impact=t(20, 10), detected=t(20, 10, 5), ack=t(20, 10, 25),
                 mitigated=t(20, 10, 40), resolved=t(20, 11), rca=RCA, commander="U0ADA")
        # Sunday 25 Oct 23:30 CET: still W43 thanks to the extra hour (168 h after the start it is not).
        add(s, 2, "SEV3", "db", impact=t(25, 22, 30), detected=t(25, 22, 30), ack=t(25, 22, 32),
            mitigated=t(25, 22, 50), resolved=t(25, 22, 55))
        # Detected in W43, resolved in W44: counted in W43, its durations in W44.
        add(s, 9, "SEV2", "db", impact=t(24, 10), detected=t(24, 10), ack=t(24, 10, 30),
            mitigated=t(26, 9), resolved=t(26, 10), rca={"summary": "Half written", "root_causes": ""})
        # -- current week, 2026-W44 [2026-10-25T23:00Z, 2026-11-01T23:00Z) ---------------------------
        i3 = add(s, 3, "SEV1", "api", impact=t(26, 8), detected=t(26, 8, 20), ack=t(26, 8, 25),
                 mitigated=t(26, 8, 50), resolved=t(26, 9, 30), commander="U0ADA",
                 title="API down <!channel> & more")
        i4 = add(s, 4, "SEV2", "api", impact=t(27, 12), detected=t(27, 12), ack=t(27, 12, 1),
                 mitigated=t(27, 12, 30), resolved=t(27, 13), rca=RCA, commander="U0BOB")
        add(s, 5, "SEV2", "db", impact=t(28, 9), detected=t(28, 9, 5), ack=t(28, 9, 6))  # still open
        add(s, 6, "SEV3", "web", impact=t(30, 15), detected=t(30, 15), ack=t(30, 15, 2),
            mitigated=t(30, 15, 10), resolved=t(30, 15, 20))
        # Sunday 1 Nov 23:59:59 CET: the last second of W44; resolved after the week ends.
        add(s, 7, "SEV4", None, impact=t(1, 22, 59, 59, month=11), detected=t(1, 22, 59, 59, month=11),
            resolved=t(1, 23, 10, month=11))
        # Monday 2 Nov 00:00 CET: the first instant of W45, not in W44 (half-open).
        add(s, 8, "SEV4", "web", impact=t(1, 23, month=11), detected=t(1, 23, month=11))
        s.add_all([
            SlackUser(user_id="U0ADA", name="ada"),
            ActionItem(id=1, incident_id=i1.id, title="Add an alert", owner_id="U0ADA",
                       due_date=date(2026, 10, 28), status="done", created_at=t(21, 10), closed_at=t(27, 10)),
            ActionItem(id=2, incident_id=i3.id, title="Fix the retry storm", owner_id="U0BOB",
                       due_date=date(2026, 10, 30), status="open", created_at=t(26, 12),
                       ticket_key="OPS-7", ticket_url="https://acme.atlassian.net/browse/OPS-7"),
            ActionItem(id=3, incident_id=i3.id, title="Due on the day after the week", owner_id="U0CAT",
                       due_date=date(2026, 11, 2), status="open", created_at=t(26, 12)),
            ActionItem(id=4, incident_id=i4.id, title="Runbook", owner_id=None, due_date=date(2026, 10, 29),
                       status="in_progress", created_at=t(27, 13)),
            ActionItem(id=5, incident_id=i4.id, title="Dropped", owner_id="U0BOB", due_date=date(2026, 10, 28),
                       status="wont_do", created_at=t(27, 13), closed_at=t(28, 10)),
            ActionItem(id=6, incident_id=i4.id, title="Created after the week", owner_id="U0BOB",
                       due_date=date(2026, 10, 1), status="open", created_at=t(1, 23, 30, month=11)),
        ])


def summary(mean: int | None, p50: int | None, p90: int | None, n: int) -> dict:
    return {"mean": mean, "p50": p50, "p90": p90, "n": n}


EXPECTED = {
    "period": {"since": "2026-10-25T23:00:00Z", "until": "2026-11-01T23:00:00Z", "timezone": "Europe/Berlin",
               "partial": False},
    "incidents": {
        "total": 5,
        "by_severity": {"SEV1": 1, "SEV2": 2, "SEV3": 1, "SEV4": 1},
        "major": [
            # People are {"id", "name"}: the name from the users cache, null when it has none (U0BOB).
            {"ref": "INC-3", "title": "API down <!channel> & more", "severity": "SEV1", "ttr_s": 5400,
             "commander": {"id": "U0ADA", "name": "ada"}, "rca_url": None, "pagerduty_count": 0},
            {"ref": "INC-4", "title": "Incident 4", "severity": "SEV2", "ttr_s": 3600,
             "commander": {"id": "U0BOB", "name": None}, "rca_url": None, "pagerduty_count": 0},
            {"ref": "INC-5", "title": "Incident 5", "severity": "SEV2", "ttr_s": None, "commander": None,
             "rca_url": None, "pagerduty_count": 0},
        ],
        # Still open when the digest is made (whenever detected): INC-5 (W44) and INC-8 (W45's first instant).
        "open": [
            {"ref": "INC-5", "title": "Incident 5", "severity": "SEV2", "status": "acknowledged",
             "detected_at": "2026-10-28T09:05:00Z", "commander": None},
            {"ref": "INC-8", "title": "Incident 8", "severity": "SEV4", "status": "triggered",
             "detected_at": "2026-11-01T23:00:00Z", "commander": None},
        ],
    },
    # Resolved in W44: INC-3, INC-4, INC-6 and INC-9 (detected in W43). Not INC-7 (resolved in W45).
    "mttd_s": summary(300, 0, 1200, 4),            # [0, 0, 0, 1200]
    "mtta_s": summary(570, 120, 1800, 4),          # [60, 120, 300, 1800]
    "mttm_s": summary(43650, 1800, 169200, 4),     # [600, 1800, 3000, 169200]
    "mttr_s": summary(45750, 3600, 172800, 4),     # [1200, 3600, 5400, 172800]
    "previous": {                                  # resolved in W43: INC-1 and INC-2
        "mttd_s": summary(150, 0, 300, 2),
        "mtta_s": summary(660, 120, 1200, 2),
        "mttm_s": summary(1800, 1200, 2400, 2),
        "mttr_s": summary(2550, 1500, 3600, 2),
    },
    "capa": {"opened": 4, "done": 1, "overdue": 2, "overdue_items": [
        {"id": 4, "title": "Runbook", "owner": None, "due": "2026-10-29", "incident": "INC-4", "ticket_url": None},
        {"id": 2, "title": "Fix the retry storm", "owner": {"id": "U0BOB", "name": None}, "due": "2026-10-30",
         "incident": "INC-3", "ticket_url": "https://acme.atlassian.net/browse/OPS-7"},
    ]},
    # INC-7 has no service: counted as null ("(no service)" in text), not left out.
    "top_services": [{"service": "api", "count": 2}, {"service": "db", "count": 1}, {"service": "web", "count": 1},
                     {"service": None, "count": 1}],
    # Issue 16, by hand: api had INC-1, INC-3, INC-4 in the 4 weeks, MTBF (27 Oct 12:00 - 20 Oct 10:05) / 2;
    # db INC-9, INC-2, INC-5: (28 Oct 09:05 - 24 Oct 10:00) / 2. INC-1's action #1, done 27 Oct 10:00, did
    # not hold: INC-4 on api was detected two hours later (a recurrence, 0 days); INC-3 came before it.
    "keeps_breaking": {
        "recurrence_window_s": 30 * 86400,
        "repeated_services": [
            {"service": "db", "incidents": 3, "mtbf_s": 171150, "last_detected_at": "2026-10-28T09:05:00Z"},
            {"service": "api", "incidents": 3, "mtbf_s": 305850, "last_detected_at": "2026-10-27T12:00:00Z"}],
        "capa_effectiveness": {"held": 0, "recurred": 1, "pending": 0, "no_service": 0, "judged": 1, "share": 0,
                               "recurred_items": [{"action_id": 1, "title": "Add an alert", "incident": "INC-1",
                                                   "service": "api", "done_at": "2026-10-27T10:00:00Z",
                                                   "recurred_by": "INC-4"}]},
        "recurrences": [{"ref": "INC-4", "title": "Incident 4", "service": "api", "previous": "INC-1",
                         "days_since": 0, "reasons": ["same service (api)", "shared words: incident, api, happened"]}],
    },
    "missing_rca": ["INC-3", "INC-9"],
    "rca_links": {},  # WEB_BASE_URL unset
    "targets": {
        "SEV1": {"ttr_s": 3600, "ttd_s": 600, "met": 0, "missed": 1},    # INC-3: TTD 20m, TTR 1h30m
        "SEV2": {"ttr_s": 14400, "ttd_s": 900, "met": 1, "missed": 1},   # INC-4 met; INC-5 open > 4h
    },
}


@pytest.fixture
def seeded(engine: Engine, db_url: str):  # type: ignore[no-untyped-def]
    seed(engine)
    return engine, make_settings(db_url, timezone="Europe/Berlin")


def test_hand_made_two_weeks_json(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, settings = seeded
    with session_scope(engine) as s:
        doc = service.build_digest(s, settings, *W44, now=NOW)
    assert doc == EXPECTED
    # Exactly the keys of issue 5 (and issue 16's keeps_breaking), nothing renamed, nothing extra.
    assert list(doc) == ["period", "incidents", "mttd_s", "mtta_s", "mttm_s", "mttr_s", "previous", "capa",
                         "top_services", "keeps_breaking", "missing_rca", "rca_links", "targets"]


def test_change_trend_and_target_share(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, settings = seeded
    with session_scope(engine) as s:
        view = service.digest_view(s, settings, *W44, now=NOW)
    changes = {m["label"]: m["change"]["text"] for m in view["metrics"]}
    assert changes == {"MTTD": "▲ 100%", "MTTA": "▼ 14%", "MTTM": "▲ 2325%", "MTTR": "▲ 1694%"}
    assert view["total"] == 5 and view["total_prev"] == 3 and view["total_change"]["text"] == "▲ 67%"
    assert [p["label"] for p in view["trend"]] == [f"2026-W{n}" for n in range(37, 45)]
    assert [p["total"] for p in view["trend"]] == [0, 0, 0, 0, 0, 0, 3, 5]
    # Two weeks with incidents are not a trend: no sparkline under three non-empty points.
    assert view["spark"]["incidents"] == ""
    # W43: INC-1 met, INC-9 missed (TTR 48 h > 4 h) -> 50 %; W44: 1 of 3 -> 33 %, down 34 %.
    assert [p["share"] for p in view["trend"]][-2:] == [50, 33]
    assert view["target_share"] == {"met": 1, "missed": 2, "pct": 33, "change": {
        "arrow": "▼", "pct": -34, "text": "▼ 34%", "worse": True, "better": False}, "change_text": "▼ 34%"}
    by_ref = {m["ref"]: m for m in view["major"]}
    assert by_ref["INC-3"]["target_text"] == "missed: TTD 20m 00s > 10m 00s, TTR 1h 30m 00s > 1h 00m 00s"
    assert by_ref["INC-4"]["target_status"] == "met"
    assert by_ref["INC-5"]["target_text"] == "missed: TTR still open > 4h 00m 00s"
    assert by_ref["INC-5"]["duration_text"] == "open for 4d 23h 00m"  # 28 Oct 09:00Z -> 2 Nov 08:00Z (now)
    assert by_ref["INC-3"]["commander_name"] == "ada" and by_ref["INC-4"]["commander_name"] == "U0BOB"
    assert by_ref["INC-3"]["channel_url"] == "https://slack.com/app_redirect?channel=C0INC3"
    assert view["period_text"] == "Mon 26 Oct 2026 – Sun 01 Nov 2026"


def test_the_dst_week_itself(seeded) -> None:  # type: ignore[no-untyped-def]
    """W43 has 169 hours: INC-2 at Sunday 23:30 CET belongs to it (a 168-hour week would miss it)."""
    engine, settings = seeded
    with session_scope(engine) as s:
        doc = service.build_digest(s, settings, *W43, now=NOW)
    assert doc["period"] == {"since": "2026-10-18T22:00:00Z", "until": "2026-10-25T23:00:00Z",
                             "timezone": "Europe/Berlin", "partial": False}
    assert doc["incidents"]["total"] == 3
    assert doc["incidents"]["by_severity"] == {"SEV1": 1, "SEV2": 1, "SEV3": 1, "SEV4": 0}
    assert doc["mttr_s"] == summary(2550, 1500, 3600, 2)
    assert doc["targets"]["SEV1"]["met"] == 1 and doc["targets"]["SEV2"]["missed"] == 1


def test_a_period_that_is_not_a_week(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, settings = seeded
    period = schedule.day_period(date(2026, 10, 1), date(2026, 11, 2), BERLIN)
    with session_scope(engine) as s:
        view = service.digest_view(s, settings, *period, now=NOW)
    assert view["label"] == "2026-10-01..2026-11-02"
    assert view["total"] == 8 and view["doc"]["mttr_s"]["n"] == 6  # all but INC-8 / all resolved by then
    assert view["target_share"]["pct"] == 40  # INC-1, INC-4 met; INC-3, INC-5, INC-9 missed
    assert view["target_share"]["change"]["text"] == "—", "no week-on-week change for a month"
    assert view["command"] == "incident-bot digest --since 2026-10-01 --until 2026-11-02"


def test_cli_formats_and_post_once(seeded, db_url, monkeypatch, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    engine, _ = seeded
    monkeypatch.chdir(tmp_path)
    for k, v in {"DATABASE_URL": db_url, "TIMEZONE": "Europe/Berlin", "DIGEST_CHANNEL": "C0DIGEST",
                 "RCA_TEMPLATES_DIR": "", "RESPONSE_TARGETS": target_rules.DEFAULT_TARGETS}.items():
        monkeypatch.setenv(k, v)
    assert main(["digest", "--week", "2026-W44", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["incidents"] == EXPECTED["incidents"] and doc["mttr_s"] == EXPECTED["mttr_s"]
    assert main(["digest", "--since", "2026-10-26", "--until", "2026-11-02", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "# SEV digest · 2026-W44" in md
    assert "| MTTR | 12h 42m 30s | 1h 00m 00s | 2d 00h 00m | 4 | ▲ 1694% (was 42m 30s) |" in md
    assert "| INC-3 | SEV1 | API down \\<!channel\\> & more | 1h 30m 00s | ada |" in md
    assert "| INC-5 | SEV2 | Incident 5 | open for " in md and "| — | [#inc-5-incident]" in md
    assert "INC-3, INC-9" in md
    assert main(["digest", "--week", "2026-W44", "--format", "html", "-o", "d.html"]) == 0
    html = (tmp_path / "d.html").read_text()
    assert html.count("<svg") == 3 and "<script" not in html.lower()
    assert "API down &lt;!channel&gt; &amp; more" in html and "<!channel>" not in html
    # Self-contained: nothing is loaded; the only links go out to Slack channels and CAPA tickets.
    assert not re.findall(r'src="(https?:[^"]+)"', html)
    assert not [u for u in re.findall(r'(?:src|href)="([^"]+)"', html)
                if not u.startswith(("https://slack.com/", "https://acme.atlassian.net/browse/"))]
    assert main(["digest", "--week", "2026-W44", "--post"]) == 0
    assert "queued for C0DIGEST" in capsys.readouterr().out
    assert main(["digest", "--week", "2026-W44", "--post"]) == 0
    assert "already posted by cli" in capsys.readouterr().out
    with session_scope(engine) as s:
        assert s.execute(select(func.count()).select_from(DigestRun)).scalar_one() == 1
        rows = s.execute(select(OutboxMessage)).scalars().all()
    assert [(r.dedup_key, r.payload["channel"]) for r in rows] == [("digest:2026-W44", "C0DIGEST")]
    assert main(["digest", "--week", "2026-W99"]) == 2


def test_post_digest_claims_and_enqueues_together(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, settings = seeded
    # A transaction that fails after the claim leaves nothing: another replica can post.
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        assert service.post_digest(s, settings, W44, now=NOW, claimed_by="a") is True
        raise RuntimeError("replica died before commit")
    with session_scope(engine) as s:
        assert service.already_posted(s, "2026-W44") is None
        assert s.execute(select(func.count()).select_from(OutboxMessage)).scalar_one() == 0
    with session_scope(engine) as s:
        assert service.post_digest(s, settings, W44, now=NOW, claimed_by="b") is True
    with session_scope(engine) as s:
        assert service.post_digest(s, settings, W44, now=NOW, claimed_by="c") is False
        run = service.already_posted(s, "2026-W44")
        out = s.execute(select(OutboxMessage)).scalars().one()
    assert run is not None and (run.claimed_by, run.status, run.outbox_id) == ("b", "enqueued", out.id)
    assert out.method == "chat.postMessage" and out.payload["channel"] == "C0DIGEST"
    drawn = draw(out.payload, None)  # as the Slack job draws it when it sends
    with session_scope(engine) as s:  # the same message as drawn straight from the view
        assert drawn["blocks"] == digest_message(service.digest_view(s, settings, *W44, now=NOW))["blocks"]
    assert len(drawn["blocks"]) <= MAX_BLOCKS
    text = json.dumps(drawn["blocks"], ensure_ascii=False)
    assert "API down &lt;!channel&gt; &amp; more" in text and "<!channel>" not in text


def _sixty_majors() -> dict:
    start = W44[0]
    incidents = [core.IncidentRow(ref=f"INC-{n}", title=f"{'Very long title ' * 60}{n}", severity="SEV2",
                                  status="resolved", detected_at=start + timedelta(hours=n),
                                  impact_started_at=start + timedelta(hours=n), ttd_s=60, ttr_s=600 + n,
                                  commander_id="U0ADA", channel_id=f"C{n:08d}")
                 for n in range(1, 61)]
    overdue = tuple(core.OverdueItem(id=n, title="x" * 1000, owner_id="U0BOB", due=date(2026, 10, 1),
                                     incident_ref=f"INC-{n}") for n in range(1, 41))
    metrics = {"incidents": {"total": 60, "by_severity": {"SEV2": 60}},
               "mttr_s": summary(700, 650, 1000, 60)}
    inp = core.DigestInput(since=W44[0], until=W44[1], timezone="Europe/Berlin", zone=BERLIN, now=NOW,
                           label="2026-W44", current=metrics, previous={}, incidents=incidents,
                           capa=core.CapaInput(opened=40, overdue_items=overdue, as_of=date(2026, 11, 2)),
                           missing_rca=[f"INC-{n}" for n in range(1, 61)],
                           targets=target_rules.parse_targets(target_rules.DEFAULT_TARGETS),
                           top_services=[("s" * 255, 60)])
    view = digest_view.build_view(inp)
    view["command"] = "incident-bot digest --week 2026-W44"
    return view


def test_slack_message_stays_within_limits_with_60_major_incidents() -> None:
    view = _sixty_majors()
    assert len(view["major"]) == 60
    message = digest_message(view)
    blocks = message["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    # Re-validate through slack_sdk's models: to_dict() raises on any Block Kit limit.
    parsed = Block.parse_all(blocks)
    assert [b.to_dict() for b in parsed] == blocks
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert texts and max(len(x) for x in texts) <= 3000
    for b in blocks:
        for f in b.get("fields", []):
            assert len(f["text"]) <= 2000
    whole = "\n".join(texts)
    assert "…and 40 more: `incident-bot digest --week 2026-W44` lists them all." in whole
    assert whole.count("*INC-") == 20  # the first 20 majors are listed
    assert "…and 30 more" in whole  # missing RCA list cut too
    assert len(message["text"]) <= 3000


def test_targets_setting() -> None:
    assert target_rules.parse_targets("SEV1:ttr=60m,ttd=10m;sev2:ttr=4h,ttd=15m;3:ttr=1d") == {
        "SEV1": target_rules.Target(ttr_s=3600, ttd_s=600), "SEV2": target_rules.Target(ttr_s=14400, ttd_s=900),
        "SEV3": target_rules.Target(ttr_s=86400)}
    assert target_rules.parse_targets("") == {}
    for bad in ("SEV1:ttr=60", "SEV9:ttr=1h", "SEV1:tta=1h", "SEV1", "SEV1:ttr=1x"):
        with pytest.raises(ValueError):
            target_rules.parse_targets(bad)


def test_new_sections_on_the_hand_made_week(seeded) -> None:  # type: ignore[no-untyped-def]
    """What a lead acts on: overdue CAPA with owner names and due dates, open incidents, RCA links,
    "(no service)" counted, and none of the stray punctuation of an empty comparison."""
    engine, settings = seeded
    settings = settings.model_copy(update={"web_base_url": "https://bot.example.com/"})
    with session_scope(engine) as s:
        view = service.digest_view(s, settings, *W44, now=NOW)
        md = service.render_digest(s, settings, *W44, "md", now=NOW)
    assert [o["ref"] for o in view["open_incidents"]] == ["INC-5", "INC-8"]
    link = "[{0}](https://bot.example.com/ui/incidents/{0})".format
    assert "## Open incidents" in md and f"| {link('INC-5')} | SEV2 | acknowledged |" in md
    assert f"{link('INC-3')}, {link('INC-9')}" in md
    assert "| [INC-3](https://bot.example.com/ui/incidents/INC-3) | SEV1 |" in md
    # Unknown name: the id. Each action links its ticket (issue 14).
    assert ("| 2 | Fix the retry storm | INC-3 | U0BOB | 2026-10-30 | 3 | "
            "[OPS-7](https://acme.atlassian.net/browse/OPS-7) |") in md
    assert "| 4 | Runbook | INC-4 | no owner | 2026-10-29 | 4 |  |" in md
    with session_scope(engine) as s:
        html = service.render_digest(s, settings, *W44, "html", now=NOW)
    assert '<a href="https://acme.atlassian.net/browse/OPS-7">OPS-7</a>' in html
    blocks = json.dumps(digest_message(view))
    assert "<https://acme.atlassian.net/browse/OPS-7|OPS-7>" in blocks
    assert "| (no service) | 1 |" in md
    assert "partial period" not in md  # W44 is over at NOW
    for stray in ("— ·", "(— vs", "(= 0% vs 0", "`·"):
        assert stray not in md, stray


def test_a_week_in_progress_is_labelled_partial(seeded) -> None:  # type: ignore[no-untyped-def]
    engine, settings = seeded
    midweek = datetime(2026, 10, 29, 12, 0, tzinfo=UTC)
    with session_scope(engine) as s:
        doc = service.build_digest(s, settings, *W44, now=midweek)
        md = service.render_digest(s, settings, *W44, "md", now=midweek)
        blocks = digest_message(service.digest_view(s, settings, *W44, now=midweek))
    assert doc["period"]["partial"] is True
    assert "**partial period: up to Thu 29 Oct 13:00**" in md
    assert "partial period" in json.dumps(blocks)


def test_empty_period_has_no_stray_punctuation(engine: Engine, db_url: str) -> None:
    settings = make_settings(db_url, timezone="Europe/Berlin")
    with session_scope(engine) as s:
        md = service.render_digest(s, settings, *W44, "md", now=NOW)
        blocks = json.dumps(digest_message(service.digest_view(s, settings, *W44, now=NOW)))
    assert "**0 incidents**\n" in md, md[:400]
    for stray in ("— ·", "(— vs", "(= 0% vs 0", "`·", "``"):
        assert stray not in md and stray not in blocks, stray
    assert "Last 8 weeks" not in blocks and "last 8 weeks `" not in md


def test_sparkline_needs_three_non_empty_points() -> None:
    from incident_bot.core.digest_view import spark

    assert spark([None, None, 0, 0, 0, 0, 1, 2]) == ""
    assert spark([None, 3, None, 0, 0, 0, 1, 2]) == "·█·▁▁▁▃▆"
