"""The PagerDuty REST side, against the HTTPS stand-in: on-call invites, /incident page, resolving."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.demo.pagerduty_standin import PagerDutyStandIn
from storage.models import Incident, PagerDutyLink, TimelineEvent

from .conftest import slash, start_bot

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@pytest.fixture
def pagerduty():  # type: ignore[no-untyped-def]
    with PagerDutyStandIn() as standin:
        standin.add_user("PBOT", "incident-bot", "bot@example.com")
        standin.add_user("PADA", "Ada", "ada@example.com")
        standin.add_user("PBOB", "Bob", "bob@example.com")
        standin.add_user("PZED", "Zed", "zed@elsewhere.example")
        standin.add_escalation_policy("PEP0001", ["PADA", "PZED"])
        standin.add_escalation_policy("PEPPAY", ["PBOB"])
        standin.add_service("PSVC001", "checkout-api", "PEP0001")
        standin.add_service("PSVCPAY", "payments", "PEPPAY")
        yield standin


@pytest.fixture
def pdbot(db_url, slack, pagerduty):  # type: ignore[no-untyped-def]
    slack.add_user("U0ADA", "ada", "ada@example.com")
    slack.add_user("U0BOB", "bob", "bob@example.com")
    b = start_bot(db_url, slack, pagerduty_api_token="pd-token", pagerduty_api_url=pagerduty.url,
                  pagerduty_ca_bundle=pagerduty.ca_pem_path, pagerduty_from_email="bot@example.com")
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def test_trigger_invites_oncall_matched_by_email(pdbot, pagerduty) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(created_at=T0, escalation_policy_id="PEP0001")
    assert pdbot.send_pd(pd.delivery("incident.triggered", data)).status_code == 202
    pdbot.drain()
    with Session(pdbot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
        notes = [e.text for e in s.execute(select(TimelineEvent).where(TimelineEvent.kind == "responders")).scalars()]
    members = pdbot.slack.channel_by_name(inc.slack_channel_name)["members"]
    assert "U0ADA" in members
    assert notes == ["Invited 1 on-call responder(s) from PagerDuty; not found in Slack: Zed"]
    assert any(c.method.startswith("GET /oncalls") for c in pagerduty.calls())


def test_page_creates_linked_pagerduty_incident_and_acks_invite(pdbot, pagerduty) -> None:  # type: ignore[no-untyped-def]
    r = slash(pdbot, "declare Checkout and payments failing")
    assert r.status_code == 200
    pdbot.drain()
    with Session(pdbot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
    r = slash(pdbot, "page payments", channel=inc.slack_channel_id)
    assert "Paging" in r.json()["text"]
    pdbot.drain()
    created = pagerduty.incidents()
    assert len(created) == 1 and created[0]["service"]["id"] == "PSVCPAY"
    assert f"#{inc.slack_channel_name}" in json.dumps(created[0])
    with Session(pdbot.rt.engine) as s:
        link = s.execute(select(PagerDutyLink)).scalar_one()
    assert link.incident_id == inc.id and link.pagerduty_incident_id == created[0]["id"]
    # Bob acknowledges in PagerDuty: the webhook for the linked incident invites him to our channel.
    data = pd.incident_data(created[0]["id"], title=created[0]["title"], created_at=T0, service_id="PSVCPAY")
    ack = pd.delivery("incident.acknowledged", data, occurred_at=datetime.now(UTC))
    ack["event"]["agent"]["id"], ack["event"]["agent"]["summary"] = "PBOB", "Bob"
    assert pdbot.send_pd(ack).status_code == 202
    pdbot.drain()
    assert "U0BOB" in pdbot.slack.channel_by_name(inc.slack_channel_name)["members"]
    with Session(pdbot.rt.engine) as s:
        assert s.execute(select(Incident)).scalars().all() == [s.get(Incident, inc.id)], "no second incident"

    # Resolving in Slack resolves the linked PagerDuty incident; PagerDuty's echo changes nothing.
    slash(pdbot, "resolve", channel=inc.slack_channel_id)
    pdbot.drain()
    assert pagerduty.incidents()[0]["status"] == "resolved"
    before = len(pdbot.slack.messages(inc.slack_channel_id))
    echo = pd.delivery("incident.resolved", data, occurred_at=datetime.now(UTC) + timedelta(seconds=1))
    assert pdbot.send_pd(echo).status_code == 202
    pdbot.drain()
    assert len(pdbot.slack.messages(inc.slack_channel_id)) == before, "the echo is not announced again"
    assert len([c for c in pagerduty.calls() if c.method.startswith("PUT /incidents")]) == 1


def test_page_unknown_service_tells_the_channel(pdbot, pagerduty) -> None:  # type: ignore[no-untyped-def]
    slash(pdbot, "declare Something odd")
    pdbot.drain()
    with Session(pdbot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
    slash(pdbot, "page no-such-service", channel=inc.slack_channel_id)
    pdbot.drain()
    assert any("No PagerDuty service named" in json.dumps(m["blocks"])
               for m in pdbot.slack.messages(inc.slack_channel_id))
    assert pagerduty.incidents() == []
