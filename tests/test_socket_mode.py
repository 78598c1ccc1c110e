"""Socket Mode end to end: the real server with SLACK_APP_TOKEN, connected to a local stand-in of Slack's
Socket Mode WebSocket. Commands, buttons and 📌 arrive as envelopes; every envelope is acked."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session

from storage.models import Incident, TimelineEvent
from tests.standins.socket_mode_standin import SocketModeStandIn, slash_payload

from .conftest import ServerProcess, server_env, start_bot

APP_TOKEN = "xapp-1-A0STANDIN-1-standin"


def wait_for(predicate, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def socket_bot(db_url, slack) -> Iterator:  # type: ignore[type-arg]
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob")):
        slack.add_user(uid, name, f"{name}@example.com")
    with SocketModeStandIn(slack) as sm:
        b = start_bot(db_url, slack, slack_app_token=APP_TOKEN)
        b.socket = sm
        try:
            sm.wait_connected()
            yield b
        finally:
            b.http.close()
            b.server.stop()
            b.rt.engine.dispose()


def incident(bot) -> Incident:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return s.execute(select(Incident)).scalar_one()


def test_command_button_pin_and_unhandled_envelopes_over_socket_mode(socket_bot) -> None:  # type: ignore[no-untyped-def]
    bot, sm = socket_bot, socket_bot.socket
    assert wait_for(lambda: bot.http.get(f"{bot.url}/readyz").json().get("socket_mode") == "connected")

    # a slash command
    ack = sm.wait_ack(sm.send("slash_commands", slash_payload(
        "declare Checkout errors spiking", user="U0ADA", channel="C0GENERAL",
        response_url=bot.slack.response_url("sm-declare"))))
    assert ack["envelope_id"]  # acked at once; the answer comes through the command's response_url
    answer = wait_for(lambda: bot.slack.responses("sm-declare"))
    assert "INC-1" in answer[0]["text"], answer
    bot.drain()
    inc = incident(bot)
    ch = inc.slack_channel_id
    assert ch and bot.slack.channel_by_name("inc-1-checkout-errors-spiking") is not None

    # a button
    click = {"type": "block_actions", "team": {"id": "T0STANDIN"}, "user": {"id": "U0ADA"},
             "api_app_id": "A0STANDIN", "trigger_id": "1.2.3", "channel": {"id": ch},
             "container": {"type": "message"}, "response_url": bot.slack.response_url("sm-click"),
             "actions": [{"action_id": "incident_ack", "block_id": "b", "value": "ack", "type": "button",
                          "action_ts": "1"}]}
    sm.wait_ack(sm.send("interactive", click))
    bot.drain()
    assert incident(bot).acknowledged_at is not None

    # a 📌 on a message in the incident channel
    bot.slack.ws.channels[ch].members.append("U0BOB")
    with bot.slack.ws.lock:
        posted = bot.slack.ws.append_message(bot.slack.ws.channels[ch], {"user": "U0BOB", "text": "cache TTL is 0"})
    pin = {"type": "reaction_added", "user": "U0ADA", "reaction": "pushpin", "item_user": "U0BOB",
           "item": {"type": "message", "channel": ch, "ts": posted["ts"]}, "event_ts": "1.2"}
    envelope = {"token": "x", "team_id": "T0STANDIN", "api_app_id": "A0STANDIN", "type": "event_callback",
                "event_id": "Ev0SOCKPIN", "event_time": int(time.time()), "event": pin}
    sm.wait_ack(sm.send("events_api", envelope))
    bot.drain()

    def pinned() -> list[str]:
        with Session(bot.rt.engine) as s:
            return list(s.execute(select(TimelineEvent.text).where(TimelineEvent.kind == "pinned")).scalars())
    assert wait_for(pinned) == ["cache TTL is 0"]

    # an envelope no listener handles is still acked (or Slack redelivers it again and again)
    star = {**envelope, "event_id": "Ev0SOCKSTAR", "event": {"type": "star_added", "user": "U0ADA",
                                                            "item": {"type": "channel", "channel": ch}}}
    assert sm.wait_ack(sm.send("events_api", star))["envelope_id"]
    shortcut = {"type": "message_action", "callback_id": "not_ours", "team": {"id": "T0STANDIN"},
                "user": {"id": "U0ADA"}, "channel": {"id": ch}, "trigger_id": "1.2.3",
                "message": {"ts": posted["ts"], "text": "x"}, "response_url": "https://hooks.slack.com/x"}
    assert sm.wait_ack(sm.send("interactive", shortcut))["envelope_id"]
    malformed = {"type": "workflow_step_edit", "team": {"id": "T0STANDIN"}, "user": {"id": "U0ADA"},
               "api_app_id": "A0STANDIN", "callback_id": "nothing-here"}
    assert sm.wait_ack(sm.send("interactive", malformed))["envelope_id"]


def test_an_unreachable_socket_mode_does_not_block_start_up(db_url, slack) -> None:  # type: ignore[no-untyped-def]
    """apps.connections.open refused (Socket Mode off for the app): the server answers anyway and says so."""
    b = start_bot(db_url, slack, slack_app_token=APP_TOKEN)
    try:
        assert b.http.get(f"{b.url}/healthz").status_code == 200
        ready = b.http.get(f"{b.url}/readyz")
        assert ready.status_code == 200 and ready.json()["socket_mode"] == "connecting"
        from incident_bot.demo import pagerduty_payloads as pd

        assert b.send_pd(pd.delivery("incident.triggered", pd.incident_data("PDSOCK1"))).status_code == 202
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()
    assert not b.server.thread.is_alive(), "the server stopped with Socket Mode still connecting"


def test_serve_with_socket_mode_starts_and_stops_on_sigterm(sqlite_url, slack) -> None:  # type: ignore[no-untyped-def]
    """As an operator runs it: `incident-bot serve` with SLACK_APP_TOKEN (it used to die with
    "no running event loop"), connecting to the stand-in, and a clean exit on SIGTERM."""
    with SocketModeStandIn(slack) as sm:
        proc = ServerProcess(server_env(sqlite_url, slack, SLACK_APP_TOKEN=APP_TOKEN, LOG_LEVEL="INFO")).start()
        try:
            sm.wait_connected()
            assert wait_for(lambda: httpx.get(f"{proc.url}/readyz", timeout=5).json().get("socket_mode")
                            == "connected")
        finally:
            proc.proc.terminate()
            code = proc.proc.wait(30)
        stderr = proc.proc.stderr.read().decode()
    assert code in (0, -15), stderr[-2000:]  # uvicorn re-raises SIGTERM after a clean shutdown
    assert "Application shutdown complete" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert "will be ignored" not in stderr, "no misleading Bolt warning about the token"
