"""``incident-bot demo``: one incident end to end, with no credentials.

The real server runs on 127.0.0.1 with a temporary SQLite database, a built-in Slack Web API stand-in
and a PagerDuty REST stand-in. Signed PagerDuty webhooks drive one incident from trigger to resolve;
the demo then prints what a Slack user would have seen, and the incident's milestones and metrics.
Later stages (Slack commands, RCA, digest) are added by :data:`STAGES` as they exist.

The story is scripted on a clock (:class:`Script`): every event is sent at its scripted time (the
server and the Slack stand-in read the same clock), so the transcript is the same on every run, and
every figure the narrative quotes (minutes, times) is computed from the milestones the bot recorded.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from incident_bot.config import Settings
from incident_bot.core.durations import format_duration, utc_clock, utc_text
from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.demo.live_server import LiveServer
from incident_bot.demo.pagerduty_standin import PagerDutyStandIn
from incident_bot.demo.slack_standin import SlackStandIn
from incident_bot.pipeline import outbox as outbox_q
from incident_bot.usecases import runner
from storage.models import set_clock

PEOPLE = [("U0ADA", "Ada Lovelace", "ada@example.com"), ("U0BOB", "Bob Kahn", "bob@example.com"),
          ("U0CAT", "Cat Ng", "cat@example.com")]
# The demo's day: a fixed date, so every run prints the same transcript.
START = datetime(2026, 11, 26, 9, 12, 0, tzinfo=UTC)


@dataclass
class Script:
    """The demo's clock: it only moves when the script says so."""

    now: datetime = START

    def at(self, when: datetime) -> datetime:
        if when < self.now:
            raise ValueError(f"the demo script goes back in time: {when} < {self.now}")
        self.now = when
        return when

    def after(self, **delta: float) -> datetime:
        return self.at(self.now + timedelta(**delta))

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()


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
    clock: Script = field(default_factory=Script)

    # -- set-up ------------------------------------------------------------------------------------
    def start(self) -> None:
        from incident_bot.bootstrap import build_app

        self.out_dir.mkdir(parents=True, exist_ok=True)
        set_clock(self.clock)
        self.slack.ws.clock = self.clock.epoch
        self.slack.start()
        self.pagerduty.start()
        for uid, name, email in PEOPLE:
            self.slack.add_user(uid, name, email, tz="Europe/Berlin")
            self.pagerduty.add_user(f"P{uid[1:]}", name, email)
        self.pagerduty.add_user("PUSER01", "Ada Oncall", "ada@example.com")  # the agent of the demo's events
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
            # The demo's Slack is the stand-in, which has no rate limits: pacing to Slack's would only make
            # the run slower and the order of a topic against the messages around it vary between runs.
            slack_channel_create_per_minute=6000,
            slack_rate_budgets={"conversations.invite": 6000, "conversations.setTopic": 6000,
                                "users.lookupByEmail": 6000},
            **web_settings(self),
        )
        self.state["announce"] = announce
        self.server = LiveServer(build_app(self.settings, listen_host="127.0.0.1"),
                                 port=self.state["web_port"]).start()

    def stop(self) -> None:
        set_clock(None)
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
        if not outbox_q.wait_until_drained(self.engine, timeout):
            raise RuntimeError("the outbox did not drain")

    def slack_command(self, text: str, *, user: str, channel: str) -> str:
        """A signed slash command; returns what the user was told (the ack, or the answer the fold
        worker sent to the command's response_url)."""
        import uuid

        from incident_bot.demo.slack_requests import FORM, slash_body

        token = uuid.uuid4().hex
        acked = self._slack(slash_body(text, user=user, channel=channel,
                                       response_url=self.slack.response_url(token)), FORM)
        if acked:
            return acked
        answers = self.slack.wait_for(lambda: self.slack.responses(token), timeout=30)
        return str(answers[0].get("text") or "")

    def slack_event(self, event: dict[str, Any]) -> str:
        from incident_bot.demo.slack_requests import event_body

        return self._slack(event_body(event), "application/json")

    def _slack(self, body: str, content_type: str) -> str:
        from incident_bot.demo.slack_requests import signed

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
    """One PagerDuty incident, each event sent at its own time and drained before the next."""
    created = demo.clock.at(START)
    data = pd.incident_data("Q1DEMO0PD1", title="Checkout API 5xx rate above 5%", created_at=created,
                            priority="P1", service_id="PSVC001", escalation_policy_id="PEP0001")
    steps = [
        ("incident.triggered", data, timedelta(seconds=2)),
        ("incident.acknowledged", data, timedelta(minutes=4, seconds=10)),
        ("incident.annotated", pd.note_data(data["id"], "Rolled back checkout-api to 1.41; error rate falling."),
         timedelta(minutes=19)),
        ("incident.resolved", data, timedelta(minutes=38)),
    ]
    demo.say("== PagerDuty sends signed webhooks for one incident ==")
    for event_type, payload, offset in steps:
        at = demo.clock.at(created + offset)
        status = demo.send_pagerduty(pd.delivery(event_type, payload, occurred_at=at))
        demo.say(f"  {utc_clock(at)}  POST /pagerduty/webhook  {event_type:<24} -> {status}")
        demo.wait_for_outbox()  # each step's messages go out before the next event: the channel reads in order
    demo.state["pd_ref"] = "INC-1"


def stage_show(demo: Demo) -> None:
    from incident_bot.core.incident_text import render_text
    from incident_bot.usecases.json_shapes import incident_detail, list_incidents

    demo.say("\n== What Slack users saw ==")
    for ch in demo.slack.ws.channels.values():
        if ch.is_im:
            continue
        demo.say("")
        demo.say(demo.slack.describe_channel(ch.id))
        demo.say(demo.slack.transcript(ch.id))
    demo.say("\n== The incidents, as `incident-bot incidents show` prints them ==")
    docs = runner.read(demo.engine, lambda s: [incident_detail(s, inc) for inc in reversed(list_incidents(s, "all"))])
    for doc in docs:
        demo.say("")
        demo.say(render_text(doc))


def stage_slack(demo: Demo) -> None:
    """An engineer declares an incident no alert caught, pins a message, and hands over command.

    Every text that quotes a time or a duration is computed from the script, so it agrees with the
    milestones the bot records.
    """
    from storage import repo

    demo.say("\n== An on-call engineer declares an incident from Slack ==")
    general = demo.state["announce"]
    clock = demo.clock

    def say(text: str, user: str, channel: str, **after: float) -> None:
        at = clock.after(**after)
        demo.say(f"  {utc_clock(at)}  /incident {text}\n    -> {demo.slack_command(text, user=user, channel=channel)}")
        demo.wait_for_outbox()

    clock.at(START + timedelta(minutes=53))
    say("declare Search results empty for some users", "U0CAT", general)
    inc = runner.read(demo.engine, repo.incident_by_ref, "INC-2")
    assert inc is not None and inc.slack_channel_id
    channel = inc.slack_channel_id
    impact_minutes = 20
    say(f"started {impact_minutes}m ago", "U0CAT", channel, seconds=20)
    impact_start = clock.now - timedelta(minutes=impact_minutes)
    say("ack", "U0CAT", channel, seconds=40)
    say("role commander <@U0ADA|ada>", "U0CAT", channel, minutes=1)
    say("sev 2", "U0ADA", channel, seconds=30)
    say("update Index rebuild running; next update in 15 minutes", "U0ADA", channel, minutes=3)
    clock.after(minutes=6)
    with demo.slack.ws.lock:
        ws = demo.slack.ws
        ws.channels[channel].members.append("U0BOB")
        msg = ws.append_message(ws.channels[channel], {"user": "U0BOB", "text":
                                "Root cause found: the index alias points at an empty index since "
                                f"{utc_clock(impact_start)[:5]}Z."})
    demo.say(f"  {utc_clock(clock.now)}  Bob reacts with :pushpin: on his message")
    demo.slack_event({"type": "reaction_added", "user": "U0BOB", "reaction": "pushpin", "item_user": "U0BOB",
                      "item": {"type": "message", "channel": channel, "ts": msg["ts"]}, "event_ts": msg["ts"]})
    demo.wait_for_outbox()
    say("update Alias switched back to the previous index; results are returning", "U0ADA", channel, minutes=2)
    say("mitigated alias switched back", "U0ADA", channel, seconds=30)
    healthy = 15
    say(f"resolve search healthy for {healthy} minutes", "U0ADA", channel, minutes=healthy)
    for text in ("action Alert when the search alias points at an empty index <@U0BOB> due in 1 week preventive",
                 "action Make the reindex job swap the alias only after a document count check <@U0ADA> "
                 "due tomorrow corrective priority:high",
                 "action Write a runbook for alias rollback <@U0CAT> due in 2 weeks process priority:low"):
        say(text, "U0ADA", channel, minutes=2)
    demo.state["slack_channel"] = channel


STAGES: list[Callable[[Demo], None]] = [stage_pagerduty, stage_slack]


def run(out_dir: Path, say: Callable[[str], None] = print, *, keep_web: bool = False) -> int:
    demo = Demo(out_dir=out_dir, say=say)
    try:
        demo.start()
        assert demo.server
        # No ports or paths here: they change from run to run, and the transcript must not.
        say(f"incident-bot demo: the real server on 127.0.0.1 with Slack and PagerDuty stand-ins; "
            f"the story is replayed on a scripted clock starting {utc_text(START)}")
        for stage in [*STAGES, stage_show, *LATE_STAGES, stage_web]:
            stage(demo)
        if keep_web:
            serve_web_until_interrupted(demo)
    finally:
        demo.stop()
    say(f"\nDone. Files are in {out_dir.name}/")
    return 0


def demo_narrative(inc: Any) -> dict[str, str]:
    """The RCA narrative of the demo's Slack incident, its figures taken from the recorded milestones."""
    ttm = int((inc.mitigated_at - inc.impact_started_at).total_seconds())
    return {
        "summary": f"Search returned empty results for about 40% of queries for {format_duration(ttm)} "
                   f"({utc_clock(inc.impact_started_at)} to {utc_clock(inc.mitigated_at)}) after a reindex "
                   "job switched the search alias to an index that was still empty.",
        "impact": "About 40% of search queries returned no results; checkout conversion from search fell by "
                  "a third while it lasted.",
        "users_affected": "about 40% of searching users (~12,000 sessions)",
        "customer_facing": "yes",
        "slo_budget_spent": "search availability SLO (99.5%, 30 days): "
                            f"{ttm * 0.4 / (30 * 86400 * 0.005):.0%} of the error budget",
        "root_causes": "The reindex job swaps the alias as soon as the new index exists, without checking "
                       "that it holds documents. The job had been changed the day before to run in parallel.",
        "trigger": "The nightly reindex ran late, during traffic, after the parallelism change.",
        "went_well": "The index audit log showed the alias change within minutes.",
        "went_wrong": "No alert fired: we alert on errors, and empty results are not errors.",
        "lucky": "The previous index had not been deleted yet, so switching back was instant.",
    }


def stage_rca(demo: Demo) -> None:
    """The commander fills in the narrative, sends the RCA for review, signs it off, and exports it."""
    from incident_bot.core import capa
    from incident_bot.usecases import actions as capa_svc
    from incident_bot.usecases import rca as rca_svc
    from incident_bot.usecases.directory import directory
    from storage import repo

    demo.say("\n== The RCA: `incident-bot rca INC-2 --format md|html` ==")
    assert demo.settings
    demo.clock.after(hours=2)
    inc = runner.read(demo.engine, repo.incident_by_ref, "INC-2")
    assert inc is not None
    runner.run(demo.engine, rca_svc.set_narrative, "INC-2", demo_narrative(inc))
    for status, kwargs in (("review", {"reviewers": ["U0BOB"], "authors": ["U0ADA"]}), ("final", {})):
        demo.clock.after(hours=1)
        new, findings = runner.run(demo.engine, rca_svc.set_status, "INC-2", status, actor="U0ADA",
                                   **kwargs)  # type: ignore[arg-type]
        demo.say(f"  /incident rca status {status}{' @Bob Kahn' if status == 'review' else ''}  -> {new}"
                 + (f" ({len(findings)} open finding(s))" if findings else ""))
    templates_dir = demo.settings.rca_templates_dir
    today = capa.today_in(demo.settings.tzinfo, demo.clock.now)

    def read(s: Any) -> tuple[dict[str, Any], list[Any], list[Any], Any]:
        """What the RCA and CAPA commands print, read in one transaction."""
        exported = {fmt: rca_svc.export_rca(s, "INC-2", fmt, templates_dir) for fmt in ("md", "html")}
        findings, _ = rca_svc.check_language(s, "INC-2")
        rows = capa_svc.list_actions(s, today=today)
        return exported, findings, rows, directory(s, [r.item.owner_id for r in rows])

    exported, findings, rows, people = runner.read(demo.engine, read)
    for fmt, result in exported.items():
        path = demo.out_dir / f"INC-2-rca.{fmt}"
        path.write_text(result.text, encoding="utf-8")
        demo.say(f"  wrote {path.name} ({len(result.text):,} characters)")
    demo.say(f"  blameless language check: {len(findings)} warning(s)")
    md = (demo.out_dir / "INC-2-rca.md").read_text(encoding="utf-8").splitlines()
    demo.say("  --- first lines of the Markdown ---")
    for line in md[:30]:
        demo.say(f"  {line}")
    demo.say("\n== CAPA actions: `incident-bot actions list` ==")
    for row in rows:
        a = row.item
        demo.say(f"  #{a.id} {row.incident_ref} {a.priority:<6} {a.type:<10} {a.status:<11} "
                 f"owner {people.name(a.owner_id, '-'):<12} due {a.due_date or '-'}  {a.title}")


def stage_digest(demo: Demo) -> None:
    from incident_bot.core.schedule import week_containing
    from incident_bot.usecases.digest import demo_digest_text

    assert demo.settings
    since, until = week_containing(demo.clock.now, demo.settings.tzinfo)
    demo.say("\n== The weekly SEV digest of this week: `incident-bot digest` ==")
    text = runner.read(demo.engine, demo_digest_text, demo.settings, since, until, now=demo.clock.now)
    path = demo.out_dir / "digest.md"
    path.write_text(text, encoding="utf-8")
    for line in text.splitlines():
        demo.say(f"  {line}")
    demo.say(f"  (also written to {path.name})")


LATE_STAGES: list[Callable[[Demo], None]] = [stage_rca, stage_digest]


# -- the web view (issue 15): the pages, signed in through the Slack stand-in ---------------------------

def web_settings(demo: Demo) -> dict[str, Any]:
    """Sign in with Slack against the stand-in: an OAuth client, the demo's people as identities, and
    the port picked before the server starts (the redirect URL must name it)."""
    import socket

    from incident_bot.demo.slack_standin_state import TEAM_ID

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    demo.state["web_port"] = port
    client_id, client_secret = "1000.demo", secrets.token_urlsafe(24)
    demo.slack.oidc.register_client(client_id, client_secret)
    for uid, name, email in PEOPLE:
        demo.slack.oidc.add_identity(uid, name, email)
    return {"slack_client_id": client_id, "slack_client_secret": client_secret, "slack_team_id": TEAM_ID,
            "web_base_url": f"http://127.0.0.1:{port}", "web_session_secret": secrets.token_urlsafe(32),
            "slack_oidc_authorize_url": demo.slack.authorize_url}


def stage_web(demo: Demo) -> None:
    """Sign in as ada through the stand-in (as a browser would) and open the incident list."""
    assert demo.server
    base = demo.server.url
    demo.say("\n== The web view: signed in with (the stand-in of) Slack ==")
    demo.slack.oidc.sign_in_as("U0ADA")
    try:
        with httpx.Client(timeout=30, follow_redirects=True) as browser:
            page = browser.get(f"{base}/ui/auth/slack", params={"next": "/ui/incidents"})
            incident = browser.get(f"{base}/ui/incidents/INC-2")
    finally:
        demo.slack.oidc.sign_in_as(None)  # a person opening the URL chooses who signs in
    demo.say(f"  signed in as ada: {page.url.path} -> {page.status_code}, INC-2 -> {incident.status_code}")
    demo.say(f"  open {base}/ui/incidents (while the demo runs; `incident-bot demo --web` keeps it running)")


def serve_web_until_interrupted(demo: Demo) -> None:
    import time

    assert demo.server
    demo.say(f"\nServing the web view at {demo.server.url}/ui/incidents: press Ctrl-C to stop.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        demo.say("stopped")
