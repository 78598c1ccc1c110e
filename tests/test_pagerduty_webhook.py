"""POST /pagerduty/webhook through the real app: signatures, bad input, dedup, the Slack side effects."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.pagerduty.signature import sign
from storage.models import (
    InboxDelivery,
    Incident,
    OutboxMessage,
    TimelineEvent,
)

from .conftest import PD_SECRET

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def count(engine, model) -> int:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def all_counts(engine) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    return tuple(count(engine, m) for m in (InboxDelivery, Incident, TimelineEvent, OutboxMessage))


def test_trigger_opens_channel_topic_intro_and_announcement(bot) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(title="Checkout API 5xx rate above 5%", created_at=T0, priority="P1")
    r = bot.send_pd(pd.delivery("incident.triggered", data, occurred_at=T0 + timedelta(seconds=5)))
    assert r.status_code == 202
    assert r.json() == {"status": "accepted"}
    bot.drain()

    ch = bot.slack.channel_by_name("inc-1-checkout-api-5xx-rate-above-5")
    assert ch is not None, [c.params for c in bot.slack.calls("conversations.create")]
    assert "SEV1" in ch["topic"]["value"] and data["html_url"] in ch["topic"]["value"]
    msgs = bot.slack.messages(ch["id"])
    assert len(msgs) == 1
    intro = json.dumps(msgs[0]["blocks"])
    assert "Checkout API 5xx rate above 5%" in intro and "checkout-api" in intro
    assert "PagerDuty triggered" in intro
    announce = bot.slack.messages(bot.announce)
    assert len(announce) == 1
    assert f"<#{ch['id']}>" in json.dumps(announce[0]["blocks"]), "the announcement links the channel"

    with Session(bot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
        assert (inc.ref, inc.severity, inc.status) == ("INC-1", "SEV1", "triggered")
        assert inc.detected_at == T0 and inc.impact_started_at == T0
        assert inc.slack_channel_id == ch["id"] and inc.announce_ts == announce[0]["ts"]
        kinds = [e.kind for e in s.execute(select(TimelineEvent)).scalars()]
        assert kinds.count("triggered") == 1
        # No PagerDuty REST token: invitations are skipped with a note on the timeline.
        assert "responders" in kinds


def test_null_priority_uses_urgency_and_null_agent_is_fine(bot) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(priority=None, urgency="low", created_at=T0)
    assert bot.send_pd(pd.delivery("incident.triggered", data, agent=None)).status_code == 202
    assert bot.send_pd(pd.delivery("incident.acknowledged", data, agent=None,
                                   occurred_at=T0 + timedelta(minutes=2))).status_code == 202
    bot.drain()
    with Session(bot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
        assert inc.severity == "SEV4"
        assert inc.acknowledged_at == T0 + timedelta(minutes=2)


def test_lifecycle_events_reach_channel_timeline_and_milestones(bot) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(created_at=T0)
    events = [
        pd.delivery("incident.triggered", data, occurred_at=T0),
        pd.delivery("incident.acknowledged", data, occurred_at=T0 + timedelta(minutes=3)),
        pd.delivery("incident.escalated", data, occurred_at=T0 + timedelta(minutes=4)),
        pd.delivery("incident.reassigned", data, occurred_at=T0 + timedelta(minutes=5)),
        pd.delivery("incident.annotated", pd.note_data(data["id"], "rolled back 1.42"),
                    occurred_at=T0 + timedelta(minutes=6)),
        pd.delivery("incident.priority_updated", pd.incident_data(created_at=T0, priority="P1"),
                    occurred_at=T0 + timedelta(minutes=7)),
        pd.delivery("incident.resolved", data, occurred_at=T0 + timedelta(minutes=30)),
        pd.delivery("incident.reopened", data, occurred_at=T0 + timedelta(minutes=35)),
    ]
    for ev in events:
        assert bot.send_pd(ev).status_code == 202
    bot.drain()
    with Session(bot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
        assert inc.status == "triggered" and inc.severity == "SEV1", "reopened: paging again, as PagerDuty"
        assert inc.acknowledged_at == T0 + timedelta(minutes=3)
        assert inc.resolved_at is None, "a reopen clears resolved_at"
        rows = list(s.execute(select(TimelineEvent).order_by(TimelineEvent.occurred_at)).scalars())
    by_kind = {r.kind: r for r in rows}
    assert by_kind["acknowledged"].milestone == "acknowledged_at"
    assert by_kind["acknowledged"].occurred_at == T0 + timedelta(minutes=3)
    assert by_kind["note"].text == "rolled back 1.42"
    assert by_kind["resolved"].milestone == "resolved_at"
    texts = [m["text"] for m in bot.slack.messages(inc.slack_channel_id)]
    for word in ("Acknowledged", "Escalated", "Reassigned", "rolled back 1.42", "Priority", "Resolved",
                 "Reopened"):
        assert any(word in t for t in texts), (word, texts)
    topic = bot.slack.channel_by_name(inc.slack_channel_name)["topic"]["value"]
    assert topic.startswith("SEV1 triggered")


def test_redelivery_has_no_second_effect(bot) -> None:  # type: ignore[no-untyped-def]
    ev = pd.delivery("incident.triggered", pd.incident_data())
    assert bot.send_pd(ev).json()["status"] == "accepted"
    bot.drain()
    before = all_counts(bot.rt.engine)
    assert bot.send_pd(ev).json()["status"] == "duplicate"
    assert all_counts(bot.rt.engine) == before


def test_second_trigger_for_same_pagerduty_incident_opens_nothing(bot) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data()
    bot.send_pd(pd.delivery("incident.triggered", data))
    bot.send_pd(pd.delivery("incident.triggered", data))  # a new event id, same incident
    bot.drain()
    assert count(bot.rt.engine, Incident) == 1


def test_same_delivery_20_times_in_parallel(bot) -> None:  # type: ignore[no-untyped-def]
    ev = pd.delivery("incident.triggered", pd.incident_data())
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: bot.send_pd(ev).status_code, range(20)))
    assert statuses == [202] * 20
    bot.drain()
    assert count(bot.rt.engine, Incident) == 1
    assert len(bot.slack.calls("conversations.create")) == 1
    assert len(bot.slack.messages(bot.announce)) == 1


def test_unknown_event_type_is_accepted_and_recorded(bot) -> None:  # type: ignore[no-untyped-def]
    ev = pd.delivery("service.updated", {"id": "PSVC", "type": "service"})
    r = bot.send_pd(ev)
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    with Session(bot.rt.engine) as s:
        row = s.execute(select(InboxDelivery)).scalar_one()
        assert (row.event_type, row.outcome) == ("service.updated", "ignored")
    assert count(bot.rt.engine, Incident) == 0


def test_rotated_secrets_any_v1_may_match(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    from .conftest import start_bot

    b = start_bot(db_url, slack, pagerduty_webhook_secrets="old-secret,new-secret")
    try:
        body = pd.encode(pd.delivery("incident.triggered", pd.incident_data()))
        header = f"{sign(body, 'unrelated')},{sign(body, 'new-secret')}"
        r = b.http.post(f"{b.url}/pagerduty/webhook", content=body,
                        headers={"X-PagerDuty-Signature": header, "Content-Type": "application/json"})
        assert r.status_code == 202
    finally:
        b.http.close()
        b.server.stop()


BAD = [
    ("missing signature", lambda body: {}, 401),
    ("wrong secret", lambda body: {"X-PagerDuty-Signature": sign(body, "not-the-secret")}, 401),
    ("not v1", lambda body: {"X-PagerDuty-Signature": "v0=" + sign(body, PD_SECRET)[3:]}, 401),
    ("garbage", lambda body: {"X-PagerDuty-Signature": "v1=zz,,v1="}, 401),
]


@pytest.mark.parametrize(("name", "headers", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_signatures_are_401_and_write_nothing(bot, name, headers, status) -> None:  # type: ignore[no-untyped-def]
    body = pd.encode(pd.delivery("incident.triggered", pd.incident_data()))
    r = bot.http.post(f"{bot.url}/pagerduty/webhook", content=body,
                      headers={"Content-Type": "application/json", **headers(body)})
    assert r.status_code == status
    assert all_counts(bot.rt.engine) == (0, 0, 0, 0)


def test_tampered_body_is_401(bot) -> None:  # type: ignore[no-untyped-def]
    body = pd.encode(pd.delivery("incident.triggered", pd.incident_data()))
    headers = pd.signed_headers(body, PD_SECRET)
    r = bot.http.post(f"{bot.url}/pagerduty/webhook", content=body.replace(b"Checkout", b"Checkoux"),
                      headers=headers)
    assert r.status_code == 401
    assert all_counts(bot.rt.engine) == (0, 0, 0, 0)


MALFORMED = [
    b"{not json",
    b"[]",
    b'{"event": "x"}',
    b'{"event": {"event_type": "incident.triggered"}}',
    b'{"event": {"id": "abc"}}',
    b'{"event": {"id": "abc", "event_type": "incident.triggered", "occurred_at": "yesterday"}}',
    b'{"event": {"id": "abc", "event_type": "incident.acknowledged", "data": {}}}',
    "\udcff".encode("utf-8", "surrogatepass"),
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_signed_bodies_are_400_and_write_nothing(bot, body: bytes) -> None:  # type: ignore[no-untyped-def]
    r = bot.http.post(f"{bot.url}/pagerduty/webhook", content=body, headers=pd.signed_headers(body, PD_SECRET))
    assert r.status_code == 400, r.text
    assert "error" in r.json()
    assert all_counts(bot.rt.engine) == (0, 0, 0, 0)


def test_oversized_body_is_413(bot) -> None:  # type: ignore[no-untyped-def]
    doc = pd.delivery("incident.triggered", pd.incident_data(title="x" * 300_000))
    r = bot.send_pd(doc)
    assert r.status_code == 413
    # Also without a Content-Length header (chunked): the stream is cut at the limit.
    body = pd.encode(doc)
    r = bot.http.post(f"{bot.url}/pagerduty/webhook", content=iter([body[:200_000], body[200_000:]]),
                      headers=pd.signed_headers(body, PD_SECRET))
    assert r.status_code == 413
    assert all_counts(bot.rt.engine) == (0, 0, 0, 0)


def test_note_before_its_incident_is_kept_and_applied_later(bot) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(created_at=T0)
    note = pd.delivery("incident.annotated", pd.note_data(data["id"], "first responder note"),
                       occurred_at=T0 + timedelta(minutes=1))
    assert bot.send_pd(note).json()["status"] == "accepted"
    bot.drain()
    with Session(bot.rt.engine) as s:
        assert s.execute(select(InboxDelivery.status)).scalar_one() == "deferred"
    assert bot.send_pd(pd.delivery("incident.triggered", data, occurred_at=T0)).status_code == 202
    bot.drain()
    with Session(bot.rt.engine) as s:
        texts = [e.text for e in s.execute(select(TimelineEvent)).scalars()]
    assert "first responder note" in texts


def test_health_ready_and_metrics(bot) -> None:  # type: ignore[no-untyped-def]
    assert bot.http.get(f"{bot.url}/healthz").json() == {"status": "ok"}
    assert bot.http.get(f"{bot.url}/readyz").status_code == 200
    bot.send_pd(pd.delivery("incident.triggered", pd.incident_data()))
    bot.send_pd({"event": {}})  # signed but without event.id: 400, counted as malformed
    bot.drain()
    text = bot.http.get(f"{bot.url}/metrics").text
    assert 'incident_bot_deliveries_total{outcome="accepted",source="pagerduty"}' in text
    assert 'incident_bot_inbox_rows{status="pending"} 0.0' in text
    assert 'incident_bot_deliveries_total{outcome="malformed",source="pagerduty"}' in text
    assert 'incident_bot_outbox_rows{status="done"}' in text
    assert "incident_bot_request_seconds_bucket" in text
