"""CAPA <-> GitHub Issues, end to end: the real app under uvicorn, the Slack stand-in and an HTTPS stand-in
of GitHub's API; tickets created through the outbox, webhooks signed as GitHub signs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from storage.models import ActionItem, InboxDelivery, OutboxMessage
from tests.standins.github_standin import GitHubStandIn, signed

from .conftest import command, start_bot

SECRET = "gh-webhook-secret"
ISSUES = "POST /repos/acme/ops/issues"
# The web pages on, so that tickets link the RCA page.
WEB = {"web_base_url": "https://bot.example.com", "slack_client_id": "123.456", "slack_client_secret": "s3cret",
       "web_session_secret": "a-session-secret-of-enough-length-0123456789", "slack_team_id": "T0STANDIN"}


@pytest.fixture
def gh():  # type: ignore[no-untyped-def]
    with GitHubStandIn("acme/ops") as standin:
        standin.add_user("ada-gh", "ada@example.com")
        yield standin


def tracker_env(gh, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"capa_tracker": "github", "github_token": "ghp_test", "github_repository": "acme/ops",
            "github_api_url": gh.url, "github_webhook_secret": SECRET, "tracker_ca_bundle": gh.ca_pem_path,
            "tracker_timeout": 1.0, **WEB, **extra}


def people(slack) -> None:  # type: ignore[no-untyped-def]
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob")):
        slack.add_user(uid, name, f"{name}@example.com")


@pytest.fixture
def tbot(db_url, slack, gh):  # type: ignore[no-untyped-def]
    people(slack)
    b = start_bot(db_url, slack, **tracker_env(gh))
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def declare(bot) -> str:  # type: ignore[no-untyped-def]
    command(bot, "declare Checkout errors spiking")
    bot.drain()
    return str(bot.slack.channel_by_name("inc-1-checkout-errors-spiking")["id"])


def actions(bot) -> list[ActionItem]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return list(s.execute(select(ActionItem).order_by(ActionItem.id)).scalars())


def send(bot, doc, *, secret: str = SECRET, delivery: str | None = None):  # type: ignore[no-untyped-def]
    body, headers = signed(doc, secret, delivery=delivery)
    return bot.http.post(f"{bot.url}/github/webhook", content=body, headers=headers)


def inbox_rows(bot) -> int:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return int(s.execute(select(func.count()).select_from(InboxDelivery)
                             .where(InboxDelivery.source == "github")).scalar_one())


def wait_status(bot, action_id: int, status: str) -> None:  # type: ignore[no-untyped-def]
    bot.slack.wait_for(lambda: next(a for a in actions(bot) if a.id == action_id).status == status, timeout=15)


def test_ticket_per_action_owner_mapping_and_close_loop(tbot, gh) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage <@U0ADA> due 2026-12-20", channel=ch)
    tbot.drain()  # its ticket first: the tracker numbers tickets in the order they are created
    command(tbot, "action Alert on checkout 5xx <@U0BOB> priority:high", channel=ch)
    tbot.drain()
    assert len(gh.calls(ISSUES)) == 2 and len(gh.issues) == 2
    one, two = gh.issues[1], gh.issues[2]
    assert {lb["name"] for lb in one["labels"]} >= {"incident:INC-1", "capa:corrective", "priority:medium"}
    assert one["assignees"] == [{"login": "ada-gh"}]
    assert "https://bot.example.com/ui/incidents/INC-1" in one["body"] and "2026-12-20" in one["body"]
    assert "incident-bot:capa=1" in one["body"]
    # Bob has no GitHub account we can find: unassigned, and the ticket says why.
    assert two["assignees"] == [] and "no GitHub account for bob@example.com" in two["body"]
    a1, a2 = actions(tbot)
    assert (a1.ticket_key, a1.ticket_url) == ("acme/ops#1", "https://github.standin/acme/ops/issues/1")
    assert a2.ticket_key == "acme/ops#2"
    out = json.loads(subprocess.run(
        [sys.executable, "-m", "incident_bot", "actions", "list", "--format", "json"], check=True,
        capture_output=True, text=True, env={**os.environ, "DATABASE_URL": str(tbot.rt.settings.database_url)}).stdout)
    assert [d["ticket_url"] for d in out if d["id"] == 1] == ["https://github.standin/acme/ops/issues/1"]
    said = [m["blocks"][0]["text"]["text"] for m in tbot.slack.messages(ch) if m["text"].endswith(("#1", "#2"))]
    assert said == [
        "🎫 Action #1 is tracked in GitHub: <https://github.standin/acme/ops/issues/1|acme/ops#1>, "
        "assigned to ada (Slack U0ADA).",
        "🎫 Action #2 is tracked in GitHub: <https://github.standin/acme/ops/issues/2|acme/ops#2>, "
        "unassigned (no GitHub account for bob@example.com)."], said

    command(tbot, "resolve all green", channel=ch)
    assert "open corrective action" in command(tbot, "close", channel=ch)

    # Closed in GitHub -> done here, and the channel hears it; a redelivery changes nothing.
    event = gh.close(1, by="ada-gh")
    assert send(tbot, event, delivery="d-1").json()["status"] == "accepted"
    wait_status(tbot, 1, "done")
    assert send(tbot, event, delivery="d-1").json()["status"] == "duplicate"
    tbot.slack.wait_for(lambda: any("closed by ada-gh" in json.dumps(m) for m in tbot.slack.messages(ch)))
    assert tbot.slack.messages(ch)[-1]["blocks"][0]["text"]["text"] == (
        "🎫 GitHub <https://github.standin/acme/ops/issues/1|acme/ops#1> closed by ada-gh → action is *done*: "
        "#1 Add a canary stage")
    assert "open corrective action" in command(tbot, "close", channel=ch)  # #2 is still open

    send(tbot, gh.close(2, reason="not_planned"))
    wait_status(tbot, 2, "wont_do")
    assert "is closed" in command(tbot, "close", channel=ch)

    # Reopened in GitHub -> open again.
    send(tbot, gh.reopen(1))
    wait_status(tbot, 1, "open")


def test_forged_and_ignored_webhooks(tbot, gh) -> None:  # type: ignore[no-untyped-def]
    doc = {"action": "closed", "issue": {"number": 1, "state": "closed"}, "repository": {"full_name": "acme/ops"}}
    assert send(tbot, doc, secret="wrong").status_code == 401
    body, headers = signed(doc, SECRET)
    headers.pop("X-Hub-Signature-256")
    assert tbot.http.post(f"{tbot.url}/github/webhook", content=body, headers=headers).status_code == 401
    tampered = body.replace(b"closed", b"reopened", 1)
    _, good = signed(doc, SECRET)
    assert tbot.http.post(f"{tbot.url}/github/webhook", content=tampered, headers=good).status_code == 401
    assert inbox_rows(tbot) == 0
    # Signed but not ours to act on: recorded as ignored, without its body.
    ping, h = signed({"zen": "hi", "hook_id": 1}, SECRET, event="ping")
    assert tbot.http.post(f"{tbot.url}/github/webhook", content=ping, headers=h).json()["status"] == "ignored"
    other = dict(doc, repository={"full_name": "acme/other"})
    assert send(tbot, other).json()["status"] == "ignored"
    assert send(tbot, b"[]" and ["not", "an", "object"]).status_code == 400  # type: ignore[arg-type]


def test_create_once_under_429_and_a_timeout_after_the_create(tbot, gh) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    gh.fail_next(ISSUES, status=429, retry_after=1)
    gh.delay(ISSUES, 2.0)  # the issue is created, the answer comes after the client gave up (1 s)
    command(tbot, "action Add a canary stage <@U0ADA>", channel=ch)
    gh.wait_for(lambda: [c for c in gh.calls(ISSUES) if c.status == 201], timeout=15)
    gh.delay(ISSUES, 0)
    tbot.drain(timeout=30)
    assert [c.status for c in gh.calls(ISSUES)] == [429, 201]  # one create: the retry found it
    assert len(gh.issues) == 1 and actions(tbot)[0].ticket_key == "acme/ops#1"
    assert gh.calls("GET /repos/acme/ops/issues"), "the uncertain retry looked for its own ticket"


def test_changes_update_the_ticket_and_our_own_echo_is_ignored(tbot, gh) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage <@U0BOB>", channel=ch)
    tbot.drain()
    env = {**os.environ, "DATABASE_URL": str(tbot.rt.settings.database_url), "CAPA_TRACKER": "github",
           "TIMEZONE": "UTC"}
    subprocess.run([sys.executable, "-m", "incident_bot", "actions", "set", "1", "--owner", "U0ADA",
                    "--priority", "high", "--status", "done"], check=True, env=env, capture_output=True)
    tbot.slack.wait_for(lambda: gh.issues[1]["state"] == "closed", timeout=15)
    issue = gh.issues[1]
    assert issue["state_reason"] == "completed" and issue["assignees"] == [{"login": "ada-gh"}]
    labels = {lb["name"] for lb in issue["labels"]}
    assert "priority:high" in labels and "priority:medium" not in labels
    # GitHub tells us about the close we made: not a change, nothing said in the channel.
    said = len(tbot.slack.messages(ch))
    assert send(tbot, {"action": "closed", "issue": issue, "sender": {"login": "incident-bot"},
                       "repository": {"full_name": "acme/ops"}}).json()["status"] == "accepted"
    tbot.slack.wait_for(lambda: inbox_outcomes(tbot) == ["stale"])
    tbot.drain()
    assert len(tbot.slack.messages(ch)) == said and actions(tbot)[0].status == "done"


def inbox_outcomes(bot) -> list[str]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return [str(r) for r in s.execute(select(InboxDelivery.outcome).where(
            InboxDelivery.source == "github", InboxDelivery.status == "done")).scalars()]


def test_bad_credentials_park_the_job_once(db_url, slack, gh) -> None:  # type: ignore[no-untyped-def]
    people(slack)
    bot = start_bot(db_url, slack, **tracker_env(gh, github_token="ghp_revoked"))
    try:
        ch = declare(bot)
        command(bot, "action One", channel=ch)
        command(bot, "action Two", channel=ch)
        bot.drain()
        with Session(bot.rt.engine) as s:
            rows = list(s.execute(select(OutboxMessage).where(OutboxMessage.method == "tracker.create")).scalars())
        assert [r.status for r in rows] == ["dead", "dead"]
        assert all("GITHUB_TOKEN" in (r.last_error or "") for r in rows)
        # Once the token is known bad no job tries it again; jobs already running on the other outbox
        # threads at that moment may each have made their one call.
        assert 1 <= len(gh.calls(ISSUES)) <= bot.rt.settings.outbox_workers
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()


def test_reconcile_command_applies_missed_changes(tbot, gh) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage", channel=ch)
    tbot.drain()  # its ticket first: the tracker numbers tickets in the order they are created
    command(tbot, "action Alert on 5xx", channel=ch)
    tbot.drain()
    gh.close(2)  # no webhook reaches us
    env = {**os.environ, "DATABASE_URL": str(tbot.rt.settings.database_url), "CAPA_TRACKER": "github",
           "GITHUB_TOKEN": "ghp_test", "GITHUB_REPOSITORY": "acme/ops", "GITHUB_API_URL": gh.url,
           "GITHUB_WEBHOOK_SECRET": SECRET, "TRACKER_CA_BUNDLE": gh.ca_pem_path}
    run = subprocess.run([sys.executable, "-m", "incident_bot", "actions", "sync", "--format", "json"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) | {} == {"tracker": "GitHub", "tickets": 2, "applied": 1, "unchanged": 1,
                                            "unknown": 0, "tickets_queued": 0}
    assert [a.status for a in actions(tbot)] == ["open", "done"]
    again = subprocess.run([sys.executable, "-m", "incident_bot", "actions", "sync"], env=env,
                           capture_output=True, text=True)
    assert "0 action(s) changed" in again.stdout
    missing = subprocess.run([sys.executable, "-m", "incident_bot", "actions", "sync"],
                             env={**env, "GITHUB_TOKEN": ""}, capture_output=True, text=True)
    assert missing.returncode != 0 and "GITHUB_TOKEN is required" in missing.stderr


def test_scheduler_queues_one_reconcile_a_day_and_the_worker_applies_it(tbot, gh) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from incident_bot.scheduler import Scheduler

    ch = declare(tbot)
    command(tbot, "action Add a canary stage", channel=ch)
    tbot.drain()
    gh.close(1)  # the webhook is lost
    at = datetime(2026, 12, 2, 6, 0, 30, tzinfo=UTC)
    for name in ("r1", "r2"):  # another replica the same day queues nothing more
        Scheduler(tbot.rt.engine, tbot.rt.settings, instance_id=name, clock=lambda: at).tick()
    with Session(tbot.rt.engine) as s:
        rows = list(s.execute(select(OutboxMessage).where(OutboxMessage.method == "tracker.sync")).scalars())
    assert len(rows) == 1 and rows[0].dedup_key == "tracker-sync:github:2026-12-02"
    tbot.rt.worker.notify()
    wait_status(tbot, 1, "done")
