"""CAPA <-> Linear, end to end: the real app under uvicorn, the Slack stand-in and an HTTPS stand-in of
Linear's GraphQL API (queries validated against Linear's types); webhooks signed as Linear signs them."""

from __future__ import annotations

import json
import time
from datetime import date

import pytest

from tests.standins.linear_standin import LinearStandIn, signed

from .conftest import command, start_bot
from .tracker_helpers import (
    WEB,
    actions,
    cli,
    click_status,
    declare,
    inbox_outcomes,
    inbox_rows,
    outbox_rows,
    people,
    said,
    wait_status,
)

SECRET = "lin_wh_secret"
KEY = "lin_api_test"
CREATE = "POST /graphql issueCreate"


@pytest.fixture
def linear():  # type: ignore[no-untyped-def]
    with LinearStandIn(KEY, "OPS") as standin:
        standin.add_user("Ada Lovelace", "ada@example.com")
        standin.add_user("Bob Former", "bob@example.com", active=False)  # left the company: not an assignee
        standin.add_label("capa:corrective")  # a workspace label: used as it is
        standin.add_label("incident:INC-1", team_id="another-team")  # another team's: cannot go on our issues
        yield standin


def tracker_env(linear, **extra: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"capa_tracker": "linear", "linear_api_key": KEY, "linear_team_id": linear.team["id"],
            "linear_api_url": linear.api_url, "linear_webhook_secret": SECRET,
            "tracker_ca_bundle": linear.ca_pem_path, "tracker_timeout": 1.0, **WEB, **extra}


def cli_env(linear, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"CAPA_TRACKER": "linear", "LINEAR_API_KEY": KEY, "LINEAR_TEAM_ID": linear.team["id"],
            "LINEAR_API_URL": linear.api_url, "LINEAR_WEBHOOK_SECRET": SECRET,
            "TRACKER_CA_BUNDLE": linear.ca_pem_path, **extra}


@pytest.fixture
def tbot(db_url, slack, linear):  # type: ignore[no-untyped-def]
    people(slack)
    b = start_bot(db_url, slack, **tracker_env(linear))
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def send(bot, doc, *, secret: str = SECRET, delivery: str | None = None):  # type: ignore[no-untyped-def]
    body, headers = signed(doc, secret, delivery=delivery)
    return bot.http.post(f"{bot.url}/linear/webhook", content=body, headers=headers)


def creates(linear) -> list[int]:  # type: ignore[no-untyped-def]
    return [c.status for c in linear.calls(CREATE)]


def test_ticket_per_action_owner_mapping_and_the_loop_back(tbot, linear) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage <@U0ADA> due 2026-12-20", channel=ch)
    tbot.drain()  # its ticket first: the tracker numbers tickets in the order they are created
    command(tbot, "action Alert on checkout 5xx <@U0BOB> priority:high", channel=ch)
    tbot.drain()
    assert creates(linear) == [200, 200] and not linear.crashes()
    one, two = linear.by_identifier("OPS-1"), linear.by_identifier("OPS-2")
    labels = {(lb["name"], (lb["team"] or {}).get("id")) for lb in one["_labels"]}
    assert labels == {("incident:INC-1", linear.team["id"]), ("capa:corrective", None)}
    assert two["_labels"] == one["_labels"], "labels are looked up once and reused"
    assert one["assignee"]["email"] == "ada@example.com" and one["dueDate"] == "2026-12-20"
    assert one["state"]["name"] == "Todo" and one["priority"] == 3.0 and two["priority"] == 2.0
    assert "- **RCA:** https://bot.example.com/ui/incidents/INC-1" in one["description"]  # Markdown
    assert "<!-- incident-bot:capa=1 -->" in one["description"]
    assert two["assignee"] is None and "no Linear account for bob@example.com" in two["description"]
    a1, _ = actions(tbot)
    assert (a1.ticket_key, a1.ticket_url) == (one["id"], one["url"])
    out = json.loads(cli(tbot, "actions", "list", "--format", "json").stdout)
    assert [d["ticket_url"] for d in out if d["id"] == 2] == [two["url"]]
    assert said(tbot, ch, "tracked in Linear")

    command(tbot, "resolve all green", channel=ch)
    assert "open corrective action" in command(tbot, "close", channel=ch)
    send(tbot, linear.move("OPS-1", "In Progress"))
    wait_status(tbot, 1, "in_progress")
    event = linear.move("OPS-1", "Done", by="Grace Hopper")
    assert send(tbot, event, delivery="d-1").json()["status"] == "accepted"
    wait_status(tbot, 1, "done")
    assert send(tbot, event, delivery="d-1").json()["status"] == "duplicate"
    tbot.slack.wait_for(lambda: said(tbot, ch, "closed by Grace Hopper"))
    send(tbot, linear.move("OPS-2", "Duplicate"))  # a canceled-type state
    wait_status(tbot, 2, "wont_do")
    send(tbot, linear.move("OPS-1", "Todo"))
    wait_status(tbot, 1, "open")
    send(tbot, linear.set_due("OPS-1", date(2027, 1, 15)))
    tbot.slack.wait_for(lambda: actions(tbot)[0].due_date == date(2027, 1, 15), timeout=15)
    tbot.slack.wait_for(lambda: said(tbot, ch, "re-dated by Grace Hopper to 2027-01-15"))
    send(tbot, linear.move("OPS-1", "Done"))
    wait_status(tbot, 1, "done")
    assert "is closed" in command(tbot, "close", channel=ch)


def test_forged_stale_and_ignored_webhooks(tbot, linear) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage", channel=ch)
    tbot.drain()
    event = linear.move("OPS-1", "Done")
    assert send(tbot, event, secret="wrong").status_code == 401
    body, headers = signed(event, SECRET)
    unsigned = {k: v for k, v in headers.items() if k != "Linear-Signature"}
    assert tbot.http.post(f"{tbot.url}/linear/webhook", content=body, headers=unsigned).status_code == 401
    tampered = body.replace(b'"completed"', b'"unstarted"', 1)
    assert tbot.http.post(f"{tbot.url}/linear/webhook", content=tampered, headers=headers).status_code == 401
    # Correctly signed, but captured and replayed later: refused outside the one-minute window.
    now_ms = int(time.time() * 1000)
    for stamp in (now_ms - 120_000, now_ms + 120_000):
        assert send(tbot, dict(event, webhookTimestamp=stamp)).status_code == 401
    assert inbox_rows(tbot, "linear") == 0 and actions(tbot)[0].status == "open"
    assert send(tbot, dict(event, webhookTimestamp=now_ms - 30_000)).json()["status"] == "accepted"
    wait_status(tbot, 1, "done")
    # Signed, but not ours to act on: a comment, another team's issue, a created issue.
    assert send(tbot, dict(event, type="Comment")).json()["status"] == "ignored"
    other = json.loads(json.dumps(event))
    other["data"]["teamId"] = "another-team"
    assert send(tbot, other).json()["status"] == "ignored"
    assert send(tbot, dict(event, action="create")).json()["status"] == "ignored"
    assert send(tbot, ["not", "an", "object"]).status_code == 401  # type: ignore[arg-type]  (no webhookTimestamp)


def test_create_once_under_a_rate_limit_and_a_timeout(tbot, linear) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    linear.fail_next(CREATE, status=429, retry_after=1)  # Linear's way: HTTP 400, RATELIMITED, reset in ms
    command(tbot, "action Add a canary stage <@U0ADA>", channel=ch)
    linear.wait_for(lambda: linear.calls(CREATE), timeout=15)
    linear.delay(CREATE, 2.0)  # the issue is created, the answer comes after the client gave up (1 s)
    linear.wait_for(lambda: [c for c in linear.calls(CREATE) if c.status == 200], timeout=15)
    linear.delay(CREATE, 0)
    tbot.drain(timeout=30)
    assert creates(linear) == [400, 200] and len(linear.issues) == 1
    [row] = outbox_rows(tbot, "tracker.create")
    assert row.status == "done" and row.result.get("adopted") is True
    assert row.attempts == 2, "the rate limit counted no attempt"
    assert actions(tbot)[0].ticket_key == linear.by_identifier("OPS-1")["id"]
    assert linear.calls("POST /graphql issues"), "the uncertain retry looked for its own ticket"


def test_changes_update_the_ticket_and_our_own_echo_is_ignored(tbot, linear) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage <@U0BOB>", channel=ch)
    tbot.drain()
    linear.fail_next("POST /graphql issueUpdate", status=500)  # retried with backoff
    run = cli(tbot, "actions", "set", "1", "--owner", "U0ADA", "--priority", "high", "--due", "2026-12-24",
              env={"CAPA_TRACKER": "linear"})
    assert run.returncode == 0, run.stderr
    issue = linear.by_identifier("OPS-1")
    tbot.slack.wait_for(lambda: (issue["assignee"] or {}).get("email") == "ada@example.com", timeout=15)
    assert (issue["priority"], issue["dueDate"]) == (2.0, "2026-12-24")
    assert [c.status for c in linear.calls("POST /graphql issueUpdate")][:2] == [500, 200]
    # Someone moves it to "In Review" (a started state): in progress here.
    send(tbot, linear.move("OPS-1", "In Review"))
    wait_status(tbot, 1, "in_progress")
    # A later change of ours keeps "In Review": it is already a started state.
    cli(tbot, "actions", "set", "1", "--priority", "low", env={"CAPA_TRACKER": "linear"})
    tbot.slack.wait_for(lambda: issue["priority"] == 4.0, timeout=15)
    assert issue["state"]["name"] == "In Review"
    # A status button in Slack moves it to the team's first completed state.
    assert "now done" in click_status(tbot, ch, 1, "done")
    tbot.slack.wait_for(lambda: issue["state"]["name"] == "Done", timeout=15)
    tbot.drain()
    before = len(tbot.slack.messages(ch))
    assert send(tbot, linear.event("OPS-1")).json()["status"] == "accepted"
    tbot.slack.wait_for(lambda: inbox_outcomes(tbot, "linear")[-1:] == ["stale"])
    tbot.drain()
    assert len(tbot.slack.messages(ch)) == before and actions(tbot)[0].status == "done"


def test_bad_credentials_are_reported_once_and_park_the_job(db_url, slack, linear, caplog) -> None:  # type: ignore[no-untyped-def]
    people(slack)
    bot = start_bot(db_url, slack, **tracker_env(linear, linear_api_key="lin_api_revoked"))
    try:
        ch = declare(bot)
        command(bot, "action One", channel=ch)
        command(bot, "action Two", channel=ch)
        bot.drain()
        rows = outbox_rows(bot, "tracker.create")
        assert [r.status for r in rows] == ["dead", "dead"]
        assert all("LINEAR_API_KEY" in (r.last_error or "") and r.attempts == 1 for r in rows)
        assert 1 <= len(linear.calls("POST /graphql")) <= bot.rt.settings.outbox_workers
        told = [r for r in caplog.records if r.name == "incident_bot.trackers" and "refused" in r.getMessage()]
        assert len(told) == 1, "reported once, however many jobs hit it"
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()


def test_reconcile_command_reads_tickets_back(tbot, linear) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage", channel=ch)
    tbot.drain()  # its ticket first: the tracker numbers tickets in the order they are created
    command(tbot, "action Alert on 5xx", channel=ch)
    tbot.drain()
    linear.move("OPS-2", "Canceled")  # no webhook reaches us
    linear.set_due("OPS-1", date(2027, 2, 1))
    run = cli(tbot, "actions", "sync", "--format", "json", env=cli_env(linear))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"tracker": "Linear", "tickets": 2, "applied": 2, "unchanged": 0,
                                      "unknown": 0, "tickets_queued": 0}
    assert [(a.status, a.due_date) for a in actions(tbot)] == [("open", date(2027, 2, 1)), ("wont_do", None)]
    bad = cli(tbot, "actions", "sync", env=cli_env(linear, LINEAR_API_KEY="lin_api_revoked"))
    assert bad.returncode == 1 and "LINEAR_API_KEY" in bad.stderr and "Traceback" not in bad.stderr
