"""CAPA <-> Jira Cloud, end to end: the real app under uvicorn, the Slack stand-in and an HTTPS stand-in of
Jira's REST API v3; tickets created through the outbox, webhooks signed as Jira signs them."""

from __future__ import annotations

import json
from datetime import date

import pytest

from incident_bot.trackers.jira import adf_text
from tests.standins.jira_standin import JiraStandIn, adf_plain, signed

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

SECRET = "jira-webhook-secret"
CREATE = "POST /rest/api/3/issue"
EMAIL, TOKEN = "bot@example.com", "jira-token"


@pytest.fixture
def jira():  # type: ignore[no-untyped-def]
    with JiraStandIn("OPS", EMAIL, TOKEN) as standin:
        standin.add_user("712020:ada", "Ada Lovelace", "ada@example.com")
        # Same email domain, but an app account: never an assignee.
        standin.add_user("557058:bot", "bob@example.com automation", "bob@example.com", account_type="app")
        yield standin


def tracker_env(jira, **extra: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"capa_tracker": "jira", "jira_url": jira.url, "jira_email": EMAIL, "jira_api_token": TOKEN,
            "jira_project": "OPS", "jira_webhook_secret": SECRET, "tracker_ca_bundle": jira.ca_pem_path,
            "tracker_timeout": 1.0, "jira_search_settle": 1.5, **WEB, **extra}


def cli_env(jira, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"CAPA_TRACKER": "jira", "JIRA_URL": jira.url, "JIRA_EMAIL": EMAIL, "JIRA_API_TOKEN": TOKEN,
            "JIRA_PROJECT": "OPS", "JIRA_WEBHOOK_SECRET": SECRET, "TRACKER_CA_BUNDLE": jira.ca_pem_path, **extra}


@pytest.fixture
def tbot(db_url, slack, jira):  # type: ignore[no-untyped-def]
    people(slack)
    b = start_bot(db_url, slack, **tracker_env(jira))
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def send(bot, doc, *, secret: str | None = SECRET, identifier: str | None = None, query: str = ""):  # type: ignore[no-untyped-def]
    body, headers = signed(doc, secret, identifier=identifier)
    return bot.http.post(f"{bot.url}/jira/webhook{query}", content=body, headers=headers)


def test_ticket_per_action_owner_mapping_and_the_loop_back(tbot, jira) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage <@U0ADA> due 2026-12-20", channel=ch)
    tbot.drain()  # its ticket first: the tracker numbers tickets in the order they are created
    command(tbot, "action Alert on checkout 5xx <@U0BOB> priority:high", channel=ch)
    tbot.drain()
    assert [c.status for c in jira.calls(CREATE) if c.method == CREATE] == [201, 201]
    one, two = jira.issues["OPS-1"]["fields"], jira.issues["OPS-2"]["fields"]
    assert one["labels"] == ["incident:INC-1", "capa:corrective"] and one["issuetype"] == {"name": "Task"}
    assert one["assignee"]["accountId"] == "712020:ada" and one["duedate"] == "2026-12-20"
    assert one["description"]["type"] == "doc" and one["description"]["version"] == 1  # ADF, not wiki markup
    body = adf_text(one["description"])
    assert "https://bot.example.com/ui/incidents/INC-1" in body and "incident-bot:capa=1" in body
    links = [mark["attrs"]["href"] for mark in _marks(one["description"])]
    assert "https://bot.example.com/ui/incidents/INC-1" in links, "the RCA link is a link mark"
    # Bob's only match is an app account: unassigned, and the ticket says why.
    assert two["assignee"] is None and two["priority"] == {"name": "High"}
    assert "no Jira account for bob@example.com" in adf_text(two["description"])
    a1, _ = actions(tbot)
    assert (a1.ticket_key, a1.ticket_url, a1.ticket_state) == ("OPS-1", f"{jira.url}/browse/OPS-1", "open")
    out = json.loads(cli(tbot, "actions", "list", "--format", "json").stdout)
    assert [d["ticket_url"] for d in out if d["id"] == 2] == [f"{jira.url}/browse/OPS-2"]
    assert said(tbot, ch, "tracked in Jira")
    rca = cli(tbot, "rca", "INC-1")
    assert f"[OPS-1]({jira.url}/browse/OPS-1)" in rca.stdout, rca.stderr  # the RCA links each ticket

    command(tbot, "resolve all green", channel=ch)
    assert "open corrective action" in command(tbot, "close", channel=ch)

    # Done in Jira -> done here, the channel hears it; the same delivery again is a duplicate.
    event = jira.transition("OPS-1", "Done", by="Grace Hopper")
    assert send(tbot, event, identifier="42").json()["status"] == "accepted"
    wait_status(tbot, 1, "done")
    assert send(tbot, event, identifier="42").json()["status"] == "duplicate"
    tbot.slack.wait_for(lambda: said(tbot, ch, "closed by Grace Hopper"))
    assert "open corrective action" in command(tbot, "close", channel=ch)  # #2 is still open

    send(tbot, jira.transition("OPS-2", "Won't Do"))
    wait_status(tbot, 2, "wont_do")
    # Re-dated in Jira -> re-dated here (an open action: #1 reopened first).
    send(tbot, jira.transition("OPS-1", "To Do"))
    wait_status(tbot, 1, "open")
    send(tbot, jira.set_due("OPS-1", date(2027, 1, 15)))
    tbot.slack.wait_for(lambda: actions(tbot)[0].due_date == date(2027, 1, 15), timeout=15)
    tbot.slack.wait_for(lambda: said(tbot, ch, "re-dated by Grace Hopper to 2027-01-15"))
    send(tbot, jira.transition("OPS-1", "Done"))
    wait_status(tbot, 1, "done")
    assert "is closed" in command(tbot, "close", channel=ch)


def _marks(node):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield from (m for m in node.get("marks") or [] if m.get("type") == "link")
        for child in node.get("content") or []:
            yield from _marks(child)


def test_forged_unsigned_and_query_secret_webhooks(tbot, jira) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage", channel=ch)
    tbot.drain()
    event = jira.transition("OPS-1", "Done")
    assert send(tbot, event, secret="wrong").status_code == 401
    assert send(tbot, event, secret=None).status_code == 401  # unsigned, no secret in the URL
    body, headers = signed(event, SECRET)
    tampered = body.replace(b'"Done"', b'"To Do"', 1)
    assert tbot.http.post(f"{tbot.url}/jira/webhook", content=tampered, headers=headers).status_code == 401
    assert send(tbot, event, secret=None, query="?secret=wrong").status_code == 401
    assert inbox_rows(tbot, "jira") == 0 and actions(tbot)[0].status == "open"
    # A webhook registered without a secret carries it in its URL: accepted, compared in constant time.
    assert send(tbot, event, secret=None, query=f"?secret={SECRET}").json()["status"] == "accepted"
    wait_status(tbot, 1, "done")
    # Signed, but not ours to act on: another event type, another project. Recorded as ignored.
    assert send(tbot, dict(event, webhookEvent="jira:issue_created")).json()["status"] == "ignored"
    other = json.loads(json.dumps(event))
    other["issue"]["fields"]["project"] = {"key": "HR"}
    assert send(tbot, other).json()["status"] == "ignored"
    assert send(tbot, ["not", "an", "object"]).status_code == 400  # type: ignore[arg-type]


def test_create_once_under_429_and_a_timeout_while_search_lags(tbot, jira) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    jira.search_lag = 1.8  # Atlassian: a new issue shows in JQL search seconds after it was made (settle: 1.5 s)
    jira.fail_next(CREATE, status=429, retry_after=1)
    command(tbot, "action Add a canary stage <@U0ADA>", channel=ch)
    jira.wait_for(lambda: jira.calls(CREATE), timeout=15)  # the 429; its retry waits Retry-After (1 s)
    jira.delay(CREATE, 2.0)  # the issue is created, the answer comes after the client gave up (1 s)
    jira.wait_for(lambda: [c for c in jira.calls(CREATE) if c.method == CREATE and c.status == 201], timeout=15)
    jira.delay(CREATE, 0)
    tbot.drain(timeout=30)
    assert [c.status for c in jira.calls(CREATE) if c.method == CREATE] == [429, 201]  # one create
    assert len(jira.issues) == 1 and actions(tbot)[0].ticket_key == "OPS-1"
    searches = jira.calls("POST /rest/api/3/search/jql")
    assert len(searches) >= 2, "the first look found nothing (search lag); the job waited and looked again"
    [row] = outbox_rows(tbot, "tracker.create")
    assert row.status == "done" and row.result.get("adopted") is True
    assert row.attempts == 2, "the 429 and the wait for the search counted no attempt"


def test_changes_update_the_ticket_and_our_own_echo_is_ignored(tbot, jira) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage <@U0BOB>", channel=ch)
    tbot.drain()
    # Owner, due date and priority changed in Slack (the CLI's `actions set` is tested with Linear); Jira's
    # first answer is a 503: retried.
    jira.fail_next("PUT /rest/api/3/issue", status=503)
    told = command(tbot, "action #1 <@U0ADA> due 2026-12-24 priority:high", channel=ch)
    assert "Action #1 is now open (high" in told, told
    assert "has no action #7" in command(tbot, "action #7 done", channel=ch)
    assert "not something an action edit understands" in command(tbot, "action #1 soonish", channel=ch)
    tbot.slack.wait_for(lambda: (jira.issues["OPS-1"]["fields"]["assignee"] or {}).get("accountId") == "712020:ada",
                        timeout=15)
    fields = jira.issues["OPS-1"]["fields"]
    assert fields["priority"] == {"name": "High"} and fields["duedate"] == "2026-12-24"
    assert [c.status for c in jira.calls("PUT /rest/api/3/issue/OPS-1")][:2] == [503, 204]
    # A status button in Slack moves the ticket through Jira's transitions.
    assert "now in progress" in click_status(tbot, ch, 1, "in_progress")
    tbot.slack.wait_for(lambda: jira.issues["OPS-1"]["fields"]["status"]["name"] == "In Progress", timeout=15)
    assert "now done" in click_status(tbot, ch, 1, "done")
    tbot.slack.wait_for(lambda: jira.issues["OPS-1"]["fields"]["status"]["name"] == "Done", timeout=15)
    assert jira.issues["OPS-1"]["fields"]["resolution"] == {"name": "Done"}
    tbot.drain()
    # Jira tells us about the transition we made: not a change, nothing said in the channel.
    before = len(tbot.slack.messages(ch))
    assert send(tbot, jira.event("OPS-1")).json()["status"] == "accepted"
    tbot.slack.wait_for(lambda: inbox_outcomes(tbot, "jira") == ["stale"])
    tbot.drain()
    assert len(tbot.slack.messages(ch)) == before and actions(tbot)[0].status == "done"


def test_bad_credentials_are_reported_once_and_park_the_job(db_url, slack, jira, caplog) -> None:  # type: ignore[no-untyped-def]
    people(slack)
    bot = start_bot(db_url, slack, **tracker_env(jira, jira_api_token="revoked"))
    try:
        ch = declare(bot)
        command(bot, "action One", channel=ch)
        command(bot, "action Two", channel=ch)
        bot.drain()
        rows = outbox_rows(bot, "tracker.create")
        assert [r.status for r in rows] == ["dead", "dead"]
        assert all("JIRA_API_TOKEN" in (r.last_error or "") and r.attempts == 1 for r in rows)
        # Jobs already running on the other outbox threads when the token was found bad may each have
        # made their one call; none after that.
        assert 1 <= len([c for c in jira.calls(CREATE) if c.method == CREATE]) <= bot.rt.settings.outbox_workers
        told = [r for r in caplog.records if r.name == "incident_bot.trackers" and "refused" in r.getMessage()]
        assert len(told) == 1, "reported once, however many jobs hit it"
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()


def test_reconcile_command_reads_tickets_back(tbot, jira) -> None:  # type: ignore[no-untyped-def]
    ch = declare(tbot)
    command(tbot, "action Add a canary stage", channel=ch)
    tbot.drain()  # its ticket first: the tracker numbers tickets in the order they are created
    command(tbot, "action Alert on 5xx", channel=ch)
    tbot.drain()
    jira.transition("OPS-2", "Done")  # no webhook reaches us
    jira.set_due("OPS-1", date(2027, 2, 1))
    jira.search_lag = 3600.0  # the reconcile does not depend on the lagging search
    run = cli(tbot, "actions", "sync", "--format", "json", env=cli_env(jira))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"tracker": "Jira", "tickets": 2, "applied": 2, "unchanged": 0,
                                      "unknown": 0, "tickets_queued": 0}
    assert [(a.status, a.due_date) for a in actions(tbot)] == [("open", date(2027, 2, 1)), ("done", None)]
    assert jira.calls("POST /rest/api/3/issue/bulkfetch") and not jira.calls("POST /rest/api/3/search/jql")
    assert "0 action(s) changed" in cli(tbot, "actions", "sync", env=cli_env(jira)).stdout
    bad = cli(tbot, "actions", "sync", env=cli_env(jira, JIRA_API_TOKEN="revoked"))
    assert bad.returncode == 1 and "JIRA_API_TOKEN" in bad.stderr and "Traceback" not in bad.stderr


def test_the_webhook_shape_is_what_jira_sends() -> None:
    """The stand-in's webhook keeps v2 shapes (a string description) and our parser reads them."""
    from incident_bot.config import Settings
    from incident_bot.trackers import jira as client

    settings = Settings(_env_file=None, capa_tracker="jira", jira_url="https://acme.atlassian.net",  # type: ignore[call-arg]
                        jira_project="OPS")
    doc = {"fields": {"summary": "x", "description": {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "incident-bot:capa=7"}]}]}}}
    assert adf_plain(doc["fields"]["description"]) == "incident-bot:capa=7"
    payload = {"webhookEvent": "jira:issue_updated", "user": {"displayName": "Grace"}, "issue": {
        "key": "OPS-9", "fields": {"status": {"name": "Done", "statusCategory": {"key": "done"}},
                                   "resolution": {"name": "Won't Do"}, "updated": "2026-12-01T10:00:00.000+0000",
                                   "description": "text incident-bot:capa=7"}}}
    ticket = client.parse(json.dumps(payload), settings)
    assert (ticket.key, ticket.state, ticket.action_id, ticket.actor) == ("OPS-9", "wont_do", 7, "Grace")
    assert ticket.url == "https://acme.atlassian.net/browse/OPS-9"

