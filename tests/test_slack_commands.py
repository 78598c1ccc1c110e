"""/incident through signed HTTP requests to the real app: each command's stored effect and Slack calls."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from storage.models import ChannelMember, Incident, TimelineEvent

from .conftest import slack_event, slack_interaction, slack_post, slash


@pytest.fixture
def people(slack):  # type: ignore[no-untyped-def]
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob"), ("U0EVE", "eve")):
        slack.add_user(uid, name, f"{name}@example.com", tz="Europe/Berlin")
    return slack


def incident(bot, ref: str = "INC-1") -> Incident:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return s.execute(select(Incident).where(Incident.ref == ref)).scalar_one()


def timeline(bot) -> list[TimelineEvent]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return list(s.execute(select(TimelineEvent).order_by(TimelineEvent.occurred_at, TimelineEvent.id)).scalars())


def declared(bot, title: str = "Checkout errors spiking") -> Incident:  # type: ignore[no-untyped-def]
    r = slash(bot, f"declare {title}")
    assert r.status_code == 200, r.text
    bot.drain()
    return incident(bot)


def test_url_verification_and_signatures(bot) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "token": "x"})
    r = slack_post(bot, body, "application/json")
    assert r.status_code == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in r.text
    assert slack_post(bot, body, "application/json", secret="wrong").status_code == 401
    stale = int(time.time()) - 600
    assert slack_post(bot, body, "application/json", timestamp=stale).status_code == 401
    r = bot.http.post(f"{bot.url}/slack/events", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    big = "x" * 300_000
    assert slash(bot, f"note {big}").status_code == 413


def test_help_anywhere(bot) -> None:  # type: ignore[no-untyped-def]
    r = slash(bot, "help")
    assert r.status_code == 200
    text = json.dumps(r.json())
    for word in ("declare", "status", "sev", "role", "started", "timeline", "page"):
        assert word in text


def test_declare_with_title_opens_channel_with_reporter(bot, people) -> None:  # type: ignore[no-untyped-def]
    r = slash(bot, "declare Checkout errors spiking")
    assert "INC-1" in r.json()["text"]
    bot.drain()
    inc = incident(bot)
    assert (inc.origin, inc.reporter_id, inc.commander_id, inc.status) == ("slack", "U0ADA", "U0ADA", "triggered")
    ch = people.channel_by_name("inc-1-checkout-errors-spiking")
    assert ch is not None and "U0ADA" in ch["members"]
    assert len(people.messages(bot.announce)) == 1
    with Session(bot.rt.engine) as s:
        assert s.get(ChannelMember, (ch["id"], "U0ADA")) is not None
    assert next(e.kind for e in timeline(bot)) == "declared"


def test_declare_modal_and_submission(bot, people) -> None:  # type: ignore[no-untyped-def]
    assert slash(bot, "declare").status_code == 200
    opened = people.wait_for(lambda: people.calls("views.open"))
    view = opened[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "declare_incident"
    values = {
        "title": {"value": {"type": "plain_text_input", "value": "Search latency doubled"}},
        "severity": {"value": {"type": "static_select", "selected_option": {"value": "SEV2"}}},
        "service": {"value": {"type": "plain_text_input", "value": "search"}},
        "description": {"value": {"type": "plain_text_input", "value": None}},
        "impact_started": {"value": {"type": "plain_text_input", "value": "20m ago"}},
    }
    payload = {"type": "view_submission", "team": {"id": "T0STANDIN"}, "user": {"id": "U0BOB"},
               "api_app_id": "A0STANDIN", "trigger_id": "1.2.3",
               "view": {"id": "V1", "callback_id": "declare_incident", "private_metadata": "",
                        "state": {"values": values}, "type": "modal"}}
    assert slack_interaction(bot, payload).status_code == 200
    bot.drain()
    inc = incident(bot)
    assert (inc.title, inc.severity, inc.service, inc.reporter_id) == ("Search latency doubled", "SEV2", "search",
                                                                        "U0BOB")
    assert inc.detected_at - inc.impact_started_at >= timedelta(minutes=19)
    # A bad time comes back as a field error in the modal, and nothing is declared.
    values["impact_started"]["value"]["value"] = "tomorrow-ish"
    r = slack_interaction(bot, payload)
    assert r.json()["response_action"] == "errors" and "impact_started" in r.json()["errors"]
    with Session(bot.rt.engine) as s:
        assert len(s.execute(select(Incident)).scalars().all()) == 1


def test_commands_need_an_incident_channel_and_membership(bot, people) -> None:  # type: ignore[no-untyped-def]
    r = slash(bot, "ack", channel="C0GENERAL")
    assert "incident channel" in r.json()["text"]
    inc = declared(bot)
    r = slash(bot, "ack", user="U0EVE", channel=inc.slack_channel_id)
    assert "Only members" in r.json()["text"]
    assert incident(bot).acknowledged_at is None
    # Reading is fine for anyone who can see the channel.
    assert "blocks" in slash(bot, "status", user="U0EVE", channel=inc.slack_channel_id).json()


def test_status_milestones_and_order_refusals(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declared(bot)
    ch = inc.slack_channel_id
    assert "not resolved" in slash(bot, "reopen", channel=ch).json()["text"]
    assert "acknowledged" in slash(bot, "ack", channel=ch).json()["text"]
    assert "already acknowledged" in slash(bot, "ack", channel=ch).json()["text"]
    assert "mitigated" in slash(bot, "mitigated rolled back", channel=ch).json()["text"]
    assert "resolved" in slash(bot, "resolve all green", channel=ch).json()["text"]
    bot.drain()
    inc = incident(bot)
    assert inc.status == "resolved" and inc.acknowledged_at and inc.mitigated_at and inc.resolved_at
    assert inc.acknowledged_at <= inc.mitigated_at <= inc.resolved_at
    card = json.dumps(slash(bot, "status", channel=ch).json())
    assert "INC-1" in card and "resolved" in card and "commander" in card
    marks = [e.milestone for e in timeline(bot) if e.milestone]
    assert {"acknowledged_at", "mitigated_at", "resolved_at"} <= set(marks)
    texts = [json.dumps(m["blocks"]) for m in people.messages(ch)]
    assert any("Mitigated by" in t and "rolled back" in t for t in texts)
    assert any("Resolved by" in t for t in texts)
    assert "triggered" in slash(bot, "reopen", channel=ch).json()["text"]
    assert incident(bot).resolved_at is None


def test_sev_role_update_note(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declared(bot)
    ch = inc.slack_channel_id
    assert "SEV1" in slash(bot, "sev 1", channel=ch).json()["text"]
    assert "Give a severity" in slash(bot, "sev 9", channel=ch).json()["text"]
    assert "commander" in slash(bot, "role commander <@U0BOB|bob>", channel=ch).json()["text"]
    assert "Usage" in slash(bot, "role boss <@U0BOB>", channel=ch).json()["text"]
    slash(bot, "update Rolling back now, next update in 15m", channel=ch)
    slash(bot, "note checked the dashboards", channel=ch)
    bot.drain()
    inc = incident(bot)
    assert inc.severity == "SEV1" and inc.commander_id == "U0BOB"
    assert "SEV1" in people.channel_by_name(inc.slack_channel_name)["topic"]["value"]
    top = [m for m in people.messages(bot.announce) if m.get("thread_ts") in (None, m["ts"])]
    assert len(top) == 2, "raised to SEV1: announced again"
    dms = [c for c in people.calls("chat.postMessage") if c.params.get("channel") == "U0BOB"]
    assert dms and "commander" in dms[0].params["text"]
    assert "U0BOB" in people.channel_by_name(inc.slack_channel_name)["members"]
    thread = [m for m in people.ws.channels[bot.announce].messages if m.get("thread_ts") == inc.announce_ts
              and m["ts"] != inc.announce_ts]
    assert thread and "Rolling back now" in json.dumps(thread[0]["blocks"])
    kinds = [e.kind for e in timeline(bot)]
    assert {"severity", "role", "status_update", "note"} <= set(kinds)


def test_started_moves_impact_earlier_and_refuses_future(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declared(bot)
    ch = inc.slack_channel_id
    r = slash(bot, "started 25m ago", channel=ch)
    assert "Impact start" in r.json()["text"]
    moved = incident(bot)
    assert timedelta(minutes=24) <= moved.detected_at - moved.impact_started_at <= timedelta(minutes=26)
    r = slash(bot, "started in 5 minutes", channel=ch)
    assert "25m ago" in r.json()["text"], "a refusal shows what works"
    future = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%MZ")
    assert "future" in slash(bot, f"started {future}", channel=ch).json()["text"]
    assert incident(bot).impact_started_at == moved.impact_started_at


def test_timeline_is_paged_within_block_limits(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declared(bot)
    for i in range(95):
        slash(bot, f"note step {i}", channel=inc.slack_channel_id)
    r = slash(bot, "timeline", channel=inc.slack_channel_id).json()
    assert len(r["blocks"]) <= 50 and "page 1 of 3" in json.dumps(r["blocks"])
    r3 = slash(bot, "timeline 3", channel=inc.slack_channel_id).json()
    assert "step 94" in json.dumps(r3["blocks"])


def test_page_without_pagerduty_says_so(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declared(bot)
    r = slash(bot, "page payments", channel=inc.slack_channel_id)
    assert "not configured" in r.json()["text"]


def test_pushpin_adds_message_once_at_its_time(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declared(bot)
    ch = inc.slack_channel_id
    people.ws.channels[ch].members.append("U0BOB")
    with people.ws.lock:
        posted = people.ws.append_message(people.ws.channels[ch], {"user": "U0BOB",
                                                                   "text": "Found it: the cache TTL was set to 0"})
    ev = {"type": "reaction_added", "user": "U0ADA", "reaction": "pushpin", "item_user": "U0BOB",
          "item": {"type": "message", "channel": ch, "ts": posted["ts"]}, "event_ts": "1.2"}
    assert slack_event(bot, ev, event_id="Ev0PIN1").status_code == 200
    slack_event(bot, ev, event_id="Ev0PIN1", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    slack_event(bot, ev, event_id="Ev0PIN2")  # pinned again by someone else: still once
    slack_event(bot, {**ev, "type": "reaction_removed"}, event_id="Ev0PIN3")
    other = people.add_channel("random", ["U0ADA"])
    slack_event(bot, {**ev, "item": {"type": "message", "channel": other, "ts": posted["ts"]}}, event_id="Ev0PIN4")
    time.sleep(0.3)
    bot.drain()
    pins = [e for e in timeline(bot) if e.kind == "pinned"]
    assert len(pins) == 1
    assert pins[0].text == "Found it: the cache TTL was set to 0" and pins[0].actor == "U0BOB"
    assert pins[0].occurred_at == datetime.fromtimestamp(float(posted["ts"]), UTC)


def test_app_home_lists_open_incidents(bot, people) -> None:  # type: ignore[no-untyped-def]
    declared(bot)
    slack_event(bot, {"type": "app_home_opened", "user": "U0ADA", "channel": "D1", "tab": "home",
                      "event_ts": "1.1"})
    time.sleep(0.3)
    bot.drain()
    home = people.home_view("U0ADA")
    assert home is not None and "INC-1" in json.dumps(home)


def test_mrkdwn_injection_is_neutralised_everywhere(bot, people) -> None:  # type: ignore[no-untyped-def]
    evil = "Pay <!channel> <@U0BOB> <https://evil.example|click> & more"
    inc = declared(bot, evil)
    slash(bot, "update <!here> look <https://evil.example|here>", channel=inc.slack_channel_id)
    slash(bot, "resolve <!everyone>", channel=inc.slack_channel_id)
    bot.drain()
    posts = [c.params for c in people.calls("chat.postMessage") if c.status == 200]
    assert posts
    def mrkdwn_texts(node: object) -> list[str]:
        # Slack acts on mentions and links in mrkdwn text and the fallback text; plain_text is inert.
        if isinstance(node, dict):
            own = [node["text"]] if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str) else []
            return own + [t for v in node.values() for t in mrkdwn_texts(v)]
        if isinstance(node, list):
            return [t for v in node for t in mrkdwn_texts(v)]
        return []

    texts = []
    for p in posts:
        blocks = p.get("blocks") or []
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
        raw = " ".join(mrkdwn_texts(blocks)) + (p.get("text") or "")
        texts.append(raw)
        # Mass mentions never ping, whoever typed them (escaping model, README).
        for bad in ("<!channel>", "<!here>", "<!everyone>"):
            assert bad not in raw, (bad, raw[:300])
    # A title is plain text: its mention and link are shown, not acted on.
    intro = json.dumps(people.messages(inc.slack_channel_id)[0]["blocks"])
    assert "<@U0BOB>" not in intro and "<https://evil.example|" not in intro and "@channel" in intro
    # A link the responder typed in an update is their own: it stays a link.
    update = next(t for t in texts if "Status update" in t)
    assert "<https://evil.example|here>" in update and "@here" in update


def test_ack_comes_before_any_web_api_call(bot, people) -> None:  # type: ignore[no-untyped-def]
    """The ack does not wait for Slack: the stand-in holds every call 1.5 s before it applies and records
    it, and when the ack is in hand it has recorded no Web API call; the calls come after, from the outbox."""
    people.delay_before("*", 1.5)  # every Slack call is slow
    started = time.monotonic()
    r = slash(bot, "declare Slow Slack day")
    recorded_at_ack = [c.method for c in people.calls() if c.method != "auth.test"]
    assert r.status_code == 200 and "INC-1" in r.json()["text"]
    assert recorded_at_ack == [], "the ack waited for a Slack call"
    people.wait_for(lambda: people.calls("conversations.create"), timeout=10)
    first_call = min(c.at for c in people.calls() if c.method != "auth.test")
    assert first_call >= started, "no Slack call came before the command"
    people.clear_faults()
    bot.drain(30)
