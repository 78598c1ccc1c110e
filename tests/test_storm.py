"""Alert storms: 1,000 PagerDuty triggers on 5 services in 2 minutes fold into 5 incidents (issue 13)."""

from __future__ import annotations

import concurrent.futures
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.demo.pagerduty_standin import PagerDutyStandIn
from storage.models import Incident, IncidentMetrics, OutboxMessage, PagerDutyLink, TimelineEvent

from .conftest import start_bot

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
SERVICES = [(f"PSVC{k}", f"svc-{k}") for k in range(5)]
# Where a test counts no storm line, the line is held briefly: each drain waited out the 5 s default.
# The coalescing under the default is the 1,000-trigger storm's.
SHORT_HOLD = 0.2


@pytest.fixture
def pagerduty():  # type: ignore[no-untyped-def]
    with PagerDutyStandIn() as standin:
        standin.add_user("PBOT", "incident-bot", "bot@example.com")
        standin.add_user("PADA", "Ada", "ada@example.com")
        standin.add_escalation_policy("PEP0001", ["PADA"])
        for sid, name in SERVICES:
            standin.add_service(sid, name, "PEP0001")
        yield standin


@pytest.fixture
def stormbot(db_url, slack, pagerduty):  # type: ignore[no-untyped-def]
    slack.add_user("U0ADA", "ada", "ada@example.com")
    # Slack's real Tier 2 limit on channel creation; the outbox must stay under it.
    slack.rate_limit("conversations.create", 20)
    b = start_bot(db_url, slack, pagerduty_api_token="pd-token", pagerduty_api_url=pagerduty.url,
                  pagerduty_ca_bundle=pagerduty.ca_pem_path, pagerduty_from_email="bot@example.com",
                  slack_channel_create_per_minute=19, group_by="service")
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def _trigger(k: int) -> tuple[str, dict]:
    sid, name = SERVICES[k % 5]
    pd_id = f"PSTORM{k:05d}"
    created = T0 + timedelta(seconds=k * 120 / 1000)  # 1,000 triggers in 2 minutes of PagerDuty time
    data = pd.incident_data(pd_id, title=f"{name}: 5xx above 5% (alert {k})", created_at=created, service_id=sid,
                            service_name=name, escalation_policy_id="PEP0001", number=k)
    return pd_id, pd.delivery("incident.triggered", data, occurred_at=created, agent=None)


def test_storm_of_1000_triggers_makes_5_channels_and_resolves_all(stormbot, pagerduty) -> None:  # type: ignore[no-untyped-def]
    deliveries = [_trigger(k) for k in range(1000)]
    for pd_id, doc in deliveries:
        pagerduty.seed_incident(pd_id, doc["event"]["data"]["service"]["id"], doc["event"]["data"]["title"],
                                doc["event"]["data"]["created_at"])
    # Four deliveries in flight at a time (SQLite has one writer: the accept INSERTs queue behind the fold).
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda d: stormbot.send_pd(d[1]).status_code, deliveries))
    assert statuses == [202] * 1000, "every delivery is acknowledged at once"
    stormbot.drain(timeout=120)

    with Session(stormbot.rt.engine) as s:
        incidents = s.execute(select(Incident)).scalars().all()
        links = s.execute(select(PagerDutyLink)).scalars().all()
        joined_rows = s.execute(select(func.count()).select_from(TimelineEvent)
                                .where(TimelineEvent.kind == "linked")).scalar_one()
        metrics_rows = s.execute(select(func.count()).select_from(IncidentMetrics)).scalar_one()
    assert len(incidents) == 5 and metrics_rows == 5, "one incident (and one metrics row) per service"
    assert len(links) == 1000 and sum(link.primary for link in links) == 5
    assert joined_rows == 995, "a timeline row for each PagerDuty incident that joined"
    by_service = {i.pagerduty_service_id: i for i in incidents}
    for sid, _ in SERVICES:
        group = [link for link in links if link.service_id == sid]
        assert len(group) == 200 and {link.incident_id for link in group} == {by_service[sid].id}
        # Detection is the earliest trigger of the group.
        assert by_service[sid].detected_at == min(link.triggered_at for link in group)

    creates = stormbot.slack.calls("conversations.create")
    assert len(creates) == 5 and all(c.status == 200 for c in creates)
    assert not [c for c in stormbot.slack.calls() if c.status == 429], "no Slack 429"
    # The joins are coalesced: a handful of "+N PagerDuty incidents" lines per channel adding up to 199.
    for inc in incidents:
        lines = [m for m in stormbot.slack.messages(inc.slack_channel_id) if "PagerDuty incident" in m.get("text", "")
                 and m.get("text", "").startswith("+")]
        counts = [int(m["text"].split()[0].lstrip("+")) for m in lines]
        assert sum(counts) == 199 and len(lines) <= 10, counts

    # Resolve one channel from Slack: every PagerDuty incident of its group is resolved, in bulk calls.
    from .conftest import command

    target = by_service["PSVC0"]
    assert "resolved" in command(stormbot, "resolve", channel=target.slack_channel_id)
    stormbot.drain(timeout=60)
    resolved = {i["id"] for i in pagerduty.incidents() if i["status"] == "resolved"}
    assert resolved == {link.pagerduty_incident_id for link in links if link.service_id == "PSVC0"}
    bulk = [c for c in pagerduty.calls("PUT /incidents") if c.method == "PUT /incidents"]
    assert len(bulk) == 2, "200 PagerDuty incidents in 2 bulk calls of 100"
    for inc in incidents:
        if inc.id != target.id:
            assert command(stormbot, "resolve", channel=inc.slack_channel_id).endswith("is resolved.")
    stormbot.drain(timeout=60)
    assert all(i["status"] == "resolved" for i in pagerduty.incidents()), "all 1,000 resolved"
    with Session(stormbot.rt.engine) as s:
        dead = s.execute(select(func.count()).select_from(OutboxMessage)
                         .where(OutboxMessage.status == "dead")).scalar_one()
    assert dead == 0


def test_group_by_none_opens_one_incident_per_trigger(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    bot = start_bot(db_url, slack, group_by="none")
    try:
        for k in range(3):
            assert bot.send_pd(_trigger(k * 5)[1]).status_code == 202
        bot.drain()
        with Session(bot.rt.engine) as s:
            assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == 3
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()


def test_trigger_after_the_window_opens_a_new_incident(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    bot = start_bot(db_url, slack, group_by="service", group_window="5m", group_line_hold=SHORT_HOLD)
    try:
        sid, name = SERVICES[0]
        for k, minutes in enumerate((0, 4, 11)):
            at = T0 + timedelta(minutes=minutes)
            data = pd.incident_data(f"PWIN{k}", created_at=at, service_id=sid, service_name=name)
            assert bot.send_pd(pd.delivery("incident.triggered", data, occurred_at=at)).status_code == 202
            bot.drain()
        with Session(bot.rt.engine) as s:
            owners = dict(s.execute(select(PagerDutyLink.pagerduty_incident_id, PagerDutyLink.incident_id)).all())
        assert owners["PWIN0"] == owners["PWIN1"] != owners["PWIN2"]
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()


def test_merge_from_cli_and_unlink_from_slack(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from .conftest import command, slack_event

    slack.add_user("U0ADA", "ada", "ada@example.com")
    bot = start_bot(db_url, slack, group_by="service", group_line_hold=SHORT_HOLD)
    try:
        sid, name = SERVICES[0]
        for k, minutes in enumerate((0, 1, 30)):  # PM0 and PM1 group; PM2 (30 min later) opens its own
            at = T0 + timedelta(minutes=minutes)
            data = pd.incident_data(f"PM{k}", created_at=at, service_id=sid, service_name=name)
            assert bot.send_pd(pd.delivery("incident.triggered", data, occurred_at=at)).status_code == 202
            bot.drain()
        with Session(bot.rt.engine) as s:
            first, second = s.execute(select(Incident).order_by(Incident.id)).scalars().all()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))},
               "DATABASE_URL": db_url}
        out = subprocess.run([sys.executable, "-m", "incident_bot", "incidents", "merge", first.ref, second.ref],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        bot.drain()
        with Session(bot.rt.engine) as s:
            owners = dict(s.execute(select(PagerDutyLink.pagerduty_incident_id, PagerDutyLink.incident_id)).all())
            assert set(owners.values()) == {first.id}
            assert s.get(Incident, second.id).status == "closed"
            assert s.execute(select(func.count()).select_from(IncidentMetrics)).scalar_one() == 1, "counted once"
        # Each channel is told, in the words it was always told (drawn from the merge's intents).
        [merged_in] = [m for m in slack.messages(first.slack_channel_id) if m["text"].endswith(f"into {first.ref}")]
        assert merged_in["blocks"][0]["text"]["text"] == (
            f"🔗 *{second.ref}* ({second.title}) was merged into this incident with 1 PagerDuty incident(s).")
        assert slack.messages(second.slack_channel_id)[-1]["blocks"][0]["text"]["text"] == (
            f"🔗 Merged into *{first.ref}*: follow the response there (<#{first.slack_channel_id}>).")
        # The digest lists the incident with its PagerDuty count; metrics count it once.
        out = subprocess.run([sys.executable, "-m", "incident_bot", "digest", "--since", "2026-11-26", "--until",
                              "2026-11-27", "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        import json

        doc = json.loads(out.stdout)
        assert doc["incidents"]["total"] == 1
        assert [(m["ref"], m["pagerduty_count"]) for m in doc["incidents"]["major"]] == [(first.ref, 3)]
        # Split PM1 out again, from the group's channel.
        slack_event(bot, {"type": "member_joined_channel", "user": "U0ADA", "channel": first.slack_channel_id})
        answer = command(bot, "unlink PM1", channel=first.slack_channel_id)
        assert "split out" in answer, answer
        bot.drain()
        with Session(bot.rt.engine) as s:
            link = s.get(PagerDutyLink, "PM1")
            new = s.get(Incident, link.incident_id)
            assert new.id not in (first.id, second.id) and link.primary and new.slack_channel_id
            assert new.detected_at == T0 + timedelta(minutes=1)
        assert slack.messages(first.slack_channel_id)[-1]["blocks"][0]["text"]["text"] == (
            f"✂️ PagerDuty incident PM1 now has its own incident, *{new.ref}*.")
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()
