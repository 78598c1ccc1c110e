"""PagerDuty fields at their edges, through the real webhook: over-long ids, whole priority names,
``incident.service_updated``."""

from __future__ import annotations

import copy
import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from storage.limits import EVENT_ID_LEN, PAGERDUTY_ID_LEN
from storage.models import InboxDelivery, Incident, IncidentMetrics, TimelineEvent

from .conftest import start_bot

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
EXAMPLES = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def rows(engine) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return tuple(int(s.execute(select(func.count()).select_from(m)).scalar_one())  # type: ignore[return-value]
                     for m in (InboxDelivery, Incident, TimelineEvent))


# (where in the delivery, the column it lands in)
ID_FIELDS = {
    "event.id": EVENT_ID_LEN,
    "event.data.id": PAGERDUTY_ID_LEN,
    "event.data.service.id": PAGERDUTY_ID_LEN,
    "event.data.escalation_policy.id": PAGERDUTY_ID_LEN,
    "event.agent.id": PAGERDUTY_ID_LEN,
}


def with_id(doc: dict, where: str, value: str) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    *path, last = where.split(".")
    for key in path:
        node = node[key]
    node[last] = value
    return doc


@given(where=st.sampled_from(sorted(ID_FIELDS)), extra=st.integers(1, 20_000),
       fill=st.characters(min_codepoint=48, max_codepoint=122))
@EXAMPLES
def test_an_id_longer_than_its_column_is_refused_not_cut(bot, where: str, extra: int, fill: str) -> None:  # type: ignore[no-untyped-def]
    before = rows(bot.rt.engine)
    doc = pd.delivery("incident.triggered", pd.incident_data(f"PD{uuid.uuid4().hex[:10]}", created_at=T0))
    r = bot.send_pd(with_id(doc, where, fill * (ID_FIELDS[where] + extra)))
    assert r.status_code == 400, r.text
    assert where in r.json()["error"] and str(ID_FIELDS[where]) in r.json()["error"]
    assert rows(bot.rt.engine) == before, "a refused delivery writes nothing"


def test_ids_at_the_column_size_are_kept_whole_and_distinct(bot) -> None:  # type: ignore[no-untyped-def]
    """Two long ids that share everything but their last character are two incidents, two deliveries."""
    prefix = "P" * (PAGERDUTY_ID_LEN - 1)
    event_prefix = "e" * (EVENT_ID_LEN - 1)
    for last in "AB":
        doc = pd.delivery("incident.triggered", pd.incident_data(prefix + last, created_at=T0),
                          event_id=event_prefix + last)
        assert bot.send_pd(doc).json()["status"] == "accepted"
    bot.drain()
    with Session(bot.rt.engine) as s:
        ids = sorted(s.execute(select(Incident.pagerduty_incident_id)).scalars())
        events = sorted(s.execute(select(InboxDelivery.event_id)).scalars())
    assert ids == [prefix + "A", prefix + "B"]
    assert events == [event_prefix + "A", event_prefix + "B"]


def severity(engine) -> str:  # type: ignore[no-untyped-def]
    """The incident's severity once everything accepted so far has been applied."""
    from incident_bot.pipeline.outbox import wait_until_drained

    assert wait_until_drained(engine, 20)
    with Session(engine) as s:
        return s.execute(select(Incident.severity)).scalar_one()


def test_whole_priority_names_map_without_case_or_spacing(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    b = start_bot(db_url, slack, severity_map="P1 - Critical Outage=SEV1,P3 - Minor glitch in one region=SEV2")
    try:
        data = pd.incident_data("PDPRIO1", created_at=T0, priority="p1  -  critical OUTAGE", urgency="low")
        assert b.send_pd(pd.delivery("incident.triggered", data, occurred_at=T0)).status_code == 202
        assert severity(b.rt.engine) == "SEV1"
        with Session(b.rt.engine) as s:
            assert s.execute(select(Incident.pagerduty_priority)).scalar_one() == "p1  -  critical OUTAGE"
        data = pd.incident_data("PDPRIO1", created_at=T0, priority="P3 - Minor glitch in one region")
        r = b.send_pd(pd.delivery("incident.priority_updated", data, occurred_at=T0 + timedelta(minutes=1)))
        assert r.status_code == 202
        assert severity(b.rt.engine) == "SEV2", "a name over 16 characters is matched whole"
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def test_an_unmapped_priority_keeps_the_severity_and_warns_once(bot, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="incident_bot.pagerduty.translate")
    data = pd.incident_data("PDPRIO2", created_at=T0, priority="P1", urgency="high")
    assert bot.send_pd(pd.delivery("incident.triggered", data, occurred_at=T0)).status_code == 202
    assert severity(bot.rt.engine) == "SEV1"
    name = f"Custom {uuid.uuid4().hex[:6]} - Sev Zero"
    for minute in (1, 2):  # low urgency used to move a SEV1 to SEV4
        data = pd.incident_data("PDPRIO2", created_at=T0, priority=name, urgency="low")
        r = bot.send_pd(pd.delivery("incident.priority_updated", data, occurred_at=T0 + timedelta(minutes=minute)))
        assert r.status_code == 202
        assert severity(bot.rt.engine) == "SEV1"
    warnings = [r for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "SEVERITY_MAP" in warnings[0].getMessage()
    bot.drain()
    with Session(bot.rt.engine) as s:
        texts = [t for t in s.execute(select(TimelineEvent.text).where(TimelineEvent.kind == "priority_updated"))
                 .scalars()]
    assert texts and all("severity unchanged" in t for t in texts)


def test_service_updated_moves_the_incident_and_its_metrics(bot) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data("PDSVC1", created_at=T0, service_id="PSVC001", service_name="checkout-api")
    assert bot.send_pd(pd.delivery("incident.triggered", data, occurred_at=T0)).status_code == 202
    moved = pd.incident_data("PDSVC1", created_at=T0, service_id="PSVC002", service_name="payments-api")
    r = bot.send_pd(pd.delivery("incident.service_updated", moved, occurred_at=T0 + timedelta(minutes=3)))
    assert r.status_code == 202 and r.json()["status"] == "accepted"
    bot.drain()
    with Session(bot.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
        assert (inc.service, inc.pagerduty_service_id) == ("payments-api", "PSVC002")
        assert s.execute(select(IncidentMetrics.service)).scalar_one() == "payments-api"
        kinds = list(s.execute(select(TimelineEvent.kind)).scalars())
    assert "service_updated" in kinds
    bot.drain()
    with Session(bot.rt.engine) as s:  # the channel exists once the outbox has run
        channel = s.execute(select(Incident.slack_channel_id)).scalar_one()
    assert any("payments-api" in str(m) for m in bot.slack.messages(channel)), "the channel is told"


@pytest.mark.parametrize("priority", ["P2", "p2", " P2 "])
def test_default_names_ignore_case_and_spaces(bot, priority: str) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data(f"PD{uuid.uuid4().hex[:8]}", created_at=T0, priority=priority, urgency="low")
    assert bot.send_pd(pd.delivery("incident.triggered", data)).status_code == 202
    assert severity(bot.rt.engine) == "SEV2"
