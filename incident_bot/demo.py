"""``incident-bot demo``: one incident end to end, with no credentials.

The real server runs on 127.0.0.1 with a temporary SQLite database, a built-in Slack Web API stand-in
and a PagerDuty REST stand-in. Signed PagerDuty webhooks drive one incident from trigger to resolve;
the demo then prints what a Slack user would have seen, and the incident's milestones and metrics.
Later stages (Slack commands, RCA, digest) are added by :data:`STAGES` as they exist.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from incident_bot.config import Settings
from incident_bot.testing import pagerduty_payloads as pd
from incident_bot.testing.live_server import LiveServer
from incident_bot.testing.pagerduty_standin import PagerDutyStandIn
from incident_bot.testing.slack_standin import SlackStandIn
from storage import outbox as outbox_q
from storage.db import session_scope

PEOPLE = [("U0ADA", "ada", "ada@example.com"), ("U0BOB", "bob", "bob@example.com"),
          ("U0CAT", "cat", "cat@example.com")]


@dataclass
class Demo:
    out_dir: Path
    say: Callable[[str], None] = print
    slack: SlackStandIn = field(default_factory=SlackStandIn)
    pagerduty: PagerDutyStandIn = field(default_factory=PagerDutyStandIn)
    server: LiveServer | None = None
    settings: Settings | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    webhook_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    signing_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    state: dict[str, Any] = field(default_factory=dict)

    # -- set-up ------------------------------------------------------------------------------------
    def start(self) -> None:
        from incident_bot.commands.serve import build_app

        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.slack.start()
        self.pagerduty.start()
        for uid, name, email in PEOPLE:
            self.slack.add_user(uid, name, email, tz="Europe/Berlin")
            self.pagerduty.add_user(f"P{uid[1:]}", name.capitalize(), email)
        self.pagerduty.add_escalation_policy("PEP0001", ["P0ADA", "P0BOB"])
        self.pagerduty.add_service("PSVC001", "checkout-api", "PEP0001")
        announce = self.slack.add_channel("incidents", ["U0ADA", "U0BOB", "U0CAT"])
        db = self.out_dir / "incident-bot.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        self.settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=f"sqlite:///{db}",
            slack_bot_token="xoxb-demo",
            slack_signing_secret=self.signing_secret,
            slack_api_url=self.slack.url,
            pagerduty_webhook_secrets=self.webhook_secret,  # type: ignore[arg-type]
            pagerduty_api_token="demo-token",
            pagerduty_api_url=self.pagerduty.url,
            pagerduty_ca_bundle=str(self.pagerduty.ca_pem_path),
            pagerduty_from_email="incident-bot@example.com",
            incident_announce_channel=announce,
            digest_channel=announce,
            timezone="Europe/Berlin",
            outbox_poll_interval=0.05,
        )
        self.state["announce"] = announce
        self.server = LiveServer(build_app(self.settings)).start()

    def stop(self) -> None:
        self.http.close()
        if self.server:
            self.server.stop()
        self.pagerduty.stop()
        self.slack.stop()

    # -- helpers -----------------------------------------------------------------------------------
    def send_pagerduty(self, doc: dict[str, Any]) -> int:
        assert self.server
        body = pd.encode(doc)
        r = self.http.post(f"{self.server.url}/pagerduty/webhook", content=body,
                           headers=pd.signed_headers(body, self.webhook_secret))
        return r.status_code

    def wait_for_outbox(self, timeout: float = 30.0) -> None:
        assert self.server
        engine = self.server.server.config.app.state.runtime.engine
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(engine) as s:
                if not outbox_q.has_work(s):
                    return
            time.sleep(0.05)
        raise RuntimeError("the outbox did not drain")

    def slack_command(self, text: str, *, user: str, channel: str) -> str:
        from incident_bot.testing.slack_requests import FORM, slash_body

        return self._slack(slash_body(text, user=user, channel=channel), FORM)

    def slack_event(self, event: dict[str, Any]) -> str:
        from incident_bot.testing.slack_requests import event_body

        return self._slack(event_body(event), "application/json")

    def _slack(self, body: str, content_type: str) -> str:
        from incident_bot.testing.slack_requests import signed

        assert self.server
        raw, headers = signed(body, self.signing_secret)
        r = self.http.post(f"{self.server.url}/slack/events", content=raw,
                           headers={**headers, "Content-Type": content_type})
        try:
            return str(r.json().get("text", ""))
        except ValueError:
            return r.text

    @property
    def engine(self) -> Any:
        assert self.server
        return self.server.server.config.app.state.runtime.engine


def stage_pagerduty(demo: Demo) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    created = now - timedelta(minutes=47)
    data = pd.incident_data("Q1DEMO0PD1", title="Checkout API 5xx rate above 5%", created_at=created,
                            priority="P1", service_id="PSVC001", escalation_policy_id="PEP0001")
    steps = [
        ("incident.triggered", data, created + timedelta(seconds=2)),
        ("incident.acknowledged", data, created + timedelta(minutes=4, seconds=10)),
        ("incident.annotated", pd.note_data(data["id"], "Rolled back checkout-api to 1.41; error rate falling."),
         created + timedelta(minutes=19)),
        ("incident.resolved", data, created + timedelta(minutes=38)),
    ]
    demo.say("== PagerDuty sends signed webhooks for one incident ==")
    for event_type, payload, at in steps:
        status = demo.send_pagerduty(pd.delivery(event_type, payload, occurred_at=at))
        demo.say(f"  POST /pagerduty/webhook  {event_type:<24} -> {status}")
    demo.wait_for_outbox()
    demo.state["pd_ref"] = "INC-1"


def stage_show(demo: Demo) -> None:
    from incident_bot.commands.incidents import render_text
    from incident_bot.services.views import incident_detail
    from storage import repo

    demo.say("\n== What Slack users saw ==")
    for ch in demo.slack.ws.channels.values():
        if ch.is_im:
            continue
        demo.say("")
        demo.say(demo.slack.describe_channel(ch.id))
        demo.say(demo.slack.transcript(ch.id))
    demo.say("\n== The incidents, as `incident-bot incidents show` prints them ==")
    with session_scope(demo.engine) as s:
        from incident_bot.services.views import list_incidents

        for inc in reversed(list_incidents(s, "all")):
            demo.say("")
            demo.say(render_text(incident_detail(s, repo.incident_by_ref(s, inc.ref))))  # type: ignore[arg-type]


def stage_slack(demo: Demo) -> None:
    """An engineer declares an incident no alert caught, pins a message, and hands over command."""
    from storage import repo

    demo.say("\n== An on-call engineer declares an incident from Slack ==")
    say = lambda cmd, out: demo.say(f"  {cmd}\n    -> {out}")  # noqa: E731
    general = demo.state["announce"]
    say("/incident declare Search results empty for some users",
        demo.slack_command("declare Search results empty for some users", user="U0CAT", channel=general))
    demo.wait_for_outbox()
    with session_scope(demo.engine) as s:
        inc = repo.incident_by_ref(s, "INC-2")
        assert inc is not None and inc.slack_channel_id
        channel = inc.slack_channel_id
    for text in ("started 20m ago", "ack", "role commander <@U0ADA|ada>", "sev 2",
                 "update Index rebuild running; next update in 15 minutes"):
        say(f"/incident {text}", demo.slack_command(text, user="U0CAT", channel=channel))
    demo.wait_for_outbox()
    with demo.slack.ws.lock:
        ws = demo.slack.ws
        ws.channels[channel].members.append("U0BOB")
        msg = ws.append_message(ws.channels[channel], {"user": "U0BOB", "text":
                                "Root cause found: the index alias points at an empty index since 12:02."})
    demo.say("  bob reacts with :pushpin: on his message")
    demo.slack_event({"type": "reaction_added", "user": "U0BOB", "reaction": "pushpin", "item_user": "U0BOB",
                      "item": {"type": "message", "channel": channel, "ts": msg["ts"]}, "event_ts": msg["ts"]})
    for text in ("mitigated alias switched back", "resolve search healthy for 15 minutes"):
        say(f"/incident {text}", demo.slack_command(text, user="U0ADA", channel=channel))
    demo.wait_for_outbox()


STAGES: list[Callable[[Demo], None]] = [stage_pagerduty, stage_slack]


def run(out_dir: Path, say: Callable[[str], None] = print) -> int:
    demo = Demo(out_dir=out_dir, say=say)
    try:
        demo.start()
        assert demo.server
        say(f"incident-bot demo: server on {demo.server.url}, Slack stand-in on {demo.slack.url}, "
            f"database {demo.settings.database_url if demo.settings else '?'}")
        for stage in [*STAGES, stage_show, *LATE_STAGES]:
            stage(demo)
    finally:
        demo.stop()
    say(f"\nDone. Files are in {out_dir}/")
    return 0


LATE_STAGES: list[Callable[[Demo], None]] = []
