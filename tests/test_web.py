"""The web view over plain HTTP (the real ASGI app under uvicorn): on/off, configuration errors,
security headers, refusals in the sign-in round trip, bad parameters. The browser tests are in
test_web_browser.py."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import func, or_, select

from incident_bot.bootstrap import build_app
from incident_bot.config import ConfigError
from incident_bot.core.durations import utc_text
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.core.rca_parts import BOOKKEEPING_KINDS
from incident_bot.demo.live_server import LiveServer
from incident_bot.demo.slack_standin import SlackStandIn
from incident_bot.slack.mrkdwn import row_plain
from incident_bot.usecases.timeline_window import LATEST_ROWS
from incident_bot.web import session as web_session
from incident_bot.web.auth import safe_next
from incident_bot.web.settings import web_config
from storage import repo
from storage.db import session_scope
from storage.models import Incident, TimelineEvent
from tests.conftest import client_ssl, make_settings
from tests.html5 import validate
from tests.web_seed import seed

CLIENT_ID, CLIENT_SECRET = "1234.5678", "oidc-client-secret-for-tests"
SECRET = "web-session-secret-for-tests-0123456789abcdef"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def web_settings(db_url: str, slack: SlackStandIn, port: int, **over: Any):  # type: ignore[no-untyped-def]
    values: dict[str, Any] = {
        "slack_api_url": slack.url, "slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET,
        "web_base_url": f"http://127.0.0.1:{port}", "web_session_secret": SECRET, "slack_team_id": "T0STANDIN",
        "slack_oidc_authorize_url": slack.authorize_url}
    values.update(over)
    return make_settings(db_url, **values)


@pytest.fixture
def site(db_url: str) -> Iterator[dict[str, Any]]:
    port = _port()
    with SlackStandIn() as slack:
        slack.oidc.register_client(CLIENT_ID, CLIENT_SECRET)
        slack.oidc.add_identity("U0ALICE", "Alice Example", "alice@example.com")
        settings = web_settings(db_url, slack, port)
        app = build_app(settings, start_worker=False, listen_host="127.0.0.1")
        refs = seed(app.state.runtime.engine, settings)
        config = web_config(settings, listen_host="127.0.0.1")
        with (LiveServer(app, port=port) as server,
              httpx.Client(base_url=server.url, timeout=30, verify=client_ssl()) as http):
            yield {"http": http, "slack": slack, "refs": refs, "config": config, "url": server.url,
                   "engine": app.state.runtime.engine}
        app.state.runtime.engine.dispose()


def signed_in(site: dict[str, Any]) -> httpx.Client:
    value = web_session.issue_session(site["config"], user_id="U0ALICE", team_id="T0STANDIN", name="Alice")
    site["http"].cookies.set("ib_session", value)
    return site["http"]


def test_pages_are_off_without_sign_in_settings(db_url: str) -> None:
    with SlackStandIn() as slack:
        app = build_app(make_settings(db_url, slack_api_url=slack.url), start_worker=False, listen_host="0.0.0.0")
        with LiveServer(app) as server:
            for path in ("/ui/incidents", "/ui/login", "/ui/static/web.css"):
                assert httpx.get(server.url + path).status_code == 404
        app.state.runtime.engine.dispose()


@pytest.mark.parametrize(("over", "host", "message"), [
    ({"web_session_secret": None}, "0.0.0.0", "WEB_SESSION_SECRET is required"),
    ({"slack_client_secret": "replace-me"}, "0.0.0.0", "placeholder"),  # refused when settings load
    ({"web_session_secret": "short"}, "0.0.0.0", "WEB_SESSION_SECRET is too short"),
    ({"web_base_url": "http://bot.example.com"}, "0.0.0.0", "WEB_BASE_URL must be https://"),
    ({"slack_team_id": None}, "0.0.0.0", "SLACK_TEAM_ID is required"),
    ({"web_auth": "none"}, "0.0.0.0", "WEB_AUTH=none"),
])
def test_a_half_or_unsafe_set_up_stops_with_one_line(tmp_path: Any, over: dict[str, Any], host: str,
                                                     message: str) -> None:
    values = {"slack_client_id": CLIENT_ID, "slack_client_secret": CLIENT_SECRET,
              "web_base_url": "https://bot.example.com", "web_session_secret": SECRET, "slack_team_id": "T0STANDIN"}
    with pytest.raises((ConfigError, ValueError), match=message):
        settings = make_settings(f"sqlite:///{tmp_path / 'x.db'}", **{**values, **over})
        web_config(settings, listen_host=host)


def test_web_auth_none_on_loopback_opens_the_pages_without_sign_in(db_url: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with SlackStandIn() as slack:
        app = build_app(make_settings(db_url, slack_api_url=slack.url, web_auth="none"), start_worker=False,
                        listen_host="127.0.0.1")
        assert "WITHOUT sign-in" in caplog.text
        with LiveServer(app) as server:
            r = httpx.get(server.url + "/ui/incidents")
            assert r.status_code == 200 and "no sign-in (WEB_AUTH=none" in r.text
        app.state.runtime.engine.dispose()


def test_security_headers_and_a_session_cookie_with_its_flags(site: dict[str, Any]) -> None:
    http = site["http"]
    site["slack"].oidc.sign_in_as("U0ALICE")
    r = http.get("/ui/auth/slack", params={"next": "/ui/actions"})
    assert r.status_code == 303 and r.headers["location"].startswith(site["slack"].authorize_url)
    back = httpx.get(r.headers["location"], follow_redirects=False)
    r = http.get(back.headers["location"])
    assert r.status_code == 303 and r.headers["location"] == "/ui/actions"
    cookie = r.headers["set-cookie"].lower()
    assert "ib_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie and "max-age=" in cookie
    page = http.get("/ui/actions")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert "<script" not in page.text and "style=" not in page.text


def test_callback_refuses_a_foreign_state_a_replayed_code_and_a_wrong_nonce(site: dict[str, Any]) -> None:
    http, slack = site["http"], site["slack"]
    slack.oidc.sign_in_as("U0ALICE")
    start = http.get("/ui/auth/slack")
    back = httpx.get(start.headers["location"], follow_redirects=False).headers["location"]
    code = httpx.URL(back).params["code"]
    r = httpx.get(back)  # no sign-in cookie: not started in this browser (login CSRF)
    assert r.status_code == 400
    ok = http.get(back)
    assert ok.status_code == 303
    http.cookies.clear()
    http.get("/ui/auth/slack")
    r = http.get("/ui/auth/callback", params={"code": code, "state": "not-the-state"})
    assert r.status_code == 400 and "ib_session" not in http.cookies
    start = http.get("/ui/auth/slack")
    state = httpx.URL(start.headers["location"]).params["state"]
    r = http.get("/ui/auth/callback", params={"code": code, "state": state})  # the code again
    assert r.status_code == 400 and "Slack refused" in r.text
    slack.oidc.nonce_override = "another-sign-in"
    start = http.get("/ui/auth/slack")
    back = httpx.get(start.headers["location"], follow_redirects=False).headers["location"]
    r = http.get(back)
    assert r.status_code == 400 and "does not belong to this sign-in" in r.text
    assert "ib_session" not in http.cookies


def test_logout_needs_the_forms_token(site: dict[str, Any]) -> None:
    http = signed_in(site)
    assert http.post("/ui/logout", data={"csrf": "guess"}).status_code == 403
    assert http.get("/ui/incidents").status_code == 200  # still signed in
    token = web_session.read_session(site["config"], http.cookies["ib_session"]).csrf  # type: ignore[union-attr]
    r = http.post("/ui/logout", data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = http.post("/ui/logout", data={"csrf": token}, headers={"Origin": site["url"]})
    assert r.status_code == 303 and 'ib_session=""' in r.headers["set-cookie"]


def test_bad_parameters_are_a_400_and_unknown_things_a_404(site: dict[str, Any]) -> None:
    http = signed_in(site)
    long = site["refs"]["long"]
    for path in ("/ui/incidents?status=bogus", "/ui/incidents?severity=SEV9", "/ui/incidents?before=0",
                 "/ui/incidents?after=x", "/ui/incidents?before=3&after=1",
                 "/ui/incidents?period=2y", "/ui/metrics?weeks=3", "/ui/metrics?severity=P1",
                 f"/ui/incidents/{long}?before=0", f"/ui/incidents/{long}?after=1795701300000000",
                 f"/ui/incidents/{long}?before=%27%3B--_1", f"/ui/incidents/{long}?before=1_1&after=2_2",
                 f"/ui/incidents/{long}?before=-99999999999999999_1", f"/ui/incidents/{long}?rows=5000",
                 f"/ui/incidents/{long}?rows=0", f"/ui/incidents/{long}?rows=all"):
        r = http.get(path)
        assert r.status_code == 400, path
        assert "<h1>" in r.text and r.headers["content-security-policy"].startswith("default-src 'self'"), path
    for path in ("/ui/incidents/INC-99999", "/ui/incidents/drop%20table", "/ui/digests/2001-W01",
                 "/ui/incidents/INC-1/rca.pdf"):
        assert http.get(path).status_code == 404, path
    r = http.get("/ui/incidents", params={"q": "%_\\"})  # LIKE wildcards are searched for literally
    assert r.status_code == 200 and "0 incidents" in r.text


def timeline_table(html: str) -> list[tuple[str, str, str]]:
    """The rows of the page's timeline table as (time, event, source), text only."""
    section = re.search(r'<section id="timeline">(.*?)</section>', html, re.S)
    assert section, "no timeline section"
    body = re.search(r'<table class="timeline">.*?<tbody>(.*?)</tbody>', section.group(1), re.S)
    assert body, "no timeline table"
    out = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S):
        cells = [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        out.append((cells[0], cells[2], cells[3]))
    return out


def link(html: str, cls: str) -> str | None:
    found = re.search(rf'<a rel="[a-z]+" class="{cls}" href="([^"]+)"', html)
    return unescape(found.group(1)) if found else None


def expected_timeline(site: dict[str, Any], ref: str) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """The curated timeline in the database, in order, as the table shows it (time, note or kind, source),
    and the milestones' times."""
    t = TimelineEvent
    with session_scope(site["engine"]) as s:
        inc = s.execute(select(Incident).where(Incident.ref == ref)).scalar_one()
        rows = s.execute(select(t.occurred_at, t.kind, t.source, t.text).where(
            t.incident_id == inc.id, or_(t.kind.not_in(BOOKKEEPING_KINDS), t.milestone.is_not(None)))  # type: ignore[attr-defined, union-attr]
            .order_by(t.occurred_at, t.id)).all()
        milestones = {m: utc_text(getattr(inc, m)) for m in MILESTONES if getattr(inc, m)}
    table = [(utc_text(at), row_plain(src, text) if kind == "note" else kind, src) for at, kind, src, text in rows]
    return table, milestones


def test_a_long_timeline_pages_by_cursor_newest_first(site: dict[str, Any]) -> None:
    http = signed_in(site)
    ref = site["refs"]["long"]
    expected, milestones = expected_timeline(site, ref)
    assert len(expected) > 600  # three windows of 300
    path, pages, synthetic = f"/ui/incidents/{ref}", [], []
    while path:
        r = http.get(path)
        assert r.status_code == 200, path
        rows = timeline_table(r.text)
        synthetic += [x for x in rows if x[2] == "milestone"]
        stored = [x if x[1].startswith("long note") else (x[0], "", x[2]) for x in rows if x[2] != "milestone"]
        pages.insert(0, stored)
        shown = re.search(r'id="timeline-count">Showing ([0-9,]+) of ([0-9,]+) events', r.text)
        assert shown and int(shown.group(1)) == len(rows), path
        assert f'href="/ui/incidents/{ref}/rca.md"' in r.text.split('id="timeline-count"')[1].split("</p>")[0]
        # Every milestone is in the milestone table, whichever window is shown.
        table = re.search(r"<th>Milestone</th>.*?<tbody>(.*?)</tbody>", r.text, re.S)
        assert table and all(f"<td class=\"time\">{v}</td>" in table.group(1) for v in milestones.values())
        assert "◆ Mitigated" in table.group(1)
        path = link(r.text, "older")  # type: ignore[assignment]
        assert path is None or "before=" in path
    first = [x if x[1].startswith("long note") else (x[0], "", x[2]) for x in expected]
    assert len(pages) == 3 and [len(p) for p in pages[1:]] == [300, 300]
    assert [x for p in pages for x in p] == first  # no gap, no duplicate, in order
    assert [x[1] for x in pages[-1] if x[1]][-1] == "long note 649 & more"  # the latest first; mrkdwn as meant
    assert [x[1] for x in synthetic] == ["◆ Mitigated"]  # the milestone no row marks, once
    assert int(shown.group(2).replace(",", "")) == len(expected) + 1
    # The oldest window's "Newer" link leads back up without a gap either.
    newer = link(http.get(f"/ui/incidents/{ref}", params={"after": "0_0", "rows": "250"}).text, "newer")
    assert newer and "rows=250" in newer
    again = [x for x in timeline_table(http.get(newer).text) if x[2] != "milestone"]
    assert [x if x[1].startswith("long note") else (x[0], "", x[2]) for x in again] == first[250:500]


def test_a_short_timeline_has_no_pager_and_the_long_page_is_valid_html(site: dict[str, Any], tmp_path: Any) -> None:
    http = signed_in(site)
    short = http.get(f"/ui/incidents/{site['refs']['full']}").text
    assert 'id="timeline-pager"' not in short and "Showing " in short and "Every event is in" not in short
    long = http.get(f"/ui/incidents/{site['refs']['long']}", params={"rows": "40"}).text
    assert len(timeline_table(long)) == 40 and 'id="timeline-pager"' in long
    assert "<script" not in long and "style=" not in long
    (tmp_path / "long.html").write_text(long)
    assert validate([tmp_path / "long.html"]) == []


def test_status_updates_and_bookkeeping_show_the_latest_with_a_count(site: dict[str, Any]) -> None:
    http = signed_in(site)
    ref = site["refs"]["long"]
    with session_scope(site["engine"]) as s:
        inc = s.execute(select(Incident).where(Incident.ref == ref)).scalar_one()
        start = inc.resolved_at
        for k in range(LATEST_ROWS + 5):
            at = start + timedelta(seconds=k)
            repo.add_timeline(s, incident_id=inc.id, occurred_at=at, source="slack", kind="status_update",
                              actor="U0ALICE", text=f"extra update {k}")
            repo.add_timeline(s, incident_id=inc.id, occurred_at=at, source="bot", kind="action_status",
                              text=f"extra bookkeeping {k}")
        counts = dict(s.execute(select(TimelineEvent.kind, func.count()).where(
            TimelineEvent.incident_id == inc.id).group_by(TimelineEvent.kind)).all())
    page = http.get(f"/ui/incidents/{ref}").text
    comms = re.search(r'<section id="communications">(.*?)</section>', page, re.S)
    assert comms and comms.group(1).count("<tr>") == LATEST_ROWS + 1  # the header row too
    updates = counts["status_update"]
    assert f"The latest {LATEST_ROWS} of {updates} status updates" in comms.group(1)
    assert "extra update 5<" in comms.group(1) and "extra update 4<" not in comms.group(1)  # the latest 200
    appendix = re.search(r'<section id="appendix">(.*?)</section>', page, re.S)
    records = counts["action_status"] + counts["status_nudge"]
    assert appendix and f"The latest {LATEST_ROWS} of {records} records" in appendix.group(1)
    assert "extra bookkeeping 5<" in appendix.group(1) and "extra bookkeeping 4<" not in appendix.group(1)


def test_rca_download_is_the_export(site: dict[str, Any]) -> None:
    http = signed_in(site)
    ref = site["refs"]["full"]
    r = http.get(f"/ui/incidents/{ref}/rca.md")
    assert r.status_code == 200 and r.headers["content-disposition"] == f'attachment; filename="{ref}-rca.md"'
    assert "## Summary" in r.text and "Checkout returned 500s for 40 minutes." in r.text


@pytest.mark.parametrize(("value", "expected"), [
    ("/ui/metrics?weeks=4", "/ui/metrics?weeks=4"), ("//evil.example/ui/", "/ui/incidents"),
    ("https://evil.example/ui/", "/ui/incidents"), ("/ui/\\evil", "/ui/incidents"), ("/healthz", "/ui/incidents"),
    ("/ui/x\r\nSet-Cookie: a=b", "/ui/incidents"), ("", "/ui/incidents"),
])
def test_next_is_always_a_page_of_this_site(value: str, expected: str) -> None:
    assert safe_next(value) == expected


def test_slack_messages_link_to_the_pages_when_web_base_url_is_set(db_url: str, slack: SlackStandIn) -> None:
    import json

    from sqlalchemy import select
    from sqlmodel import Session

    from incident_bot.core import schedule
    from incident_bot.usecases.digest import post_digest
    from storage.db import session_scope
    from storage.models import Incident, OutboxMessage, utcnow
    from tests.conftest import slash, start_bot

    base = "https://incidents.example.com"
    slack.add_user("U0ADA", "ada", "ada@example.com")
    bot = start_bot(db_url, slack, slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET,
                    web_base_url=base, web_session_secret=SECRET, slack_team_id="T0STANDIN")
    try:
        slash(bot, "declare Queue backlog growing")
        bot.drain()
        with Session(bot.rt.engine) as s:
            inc = s.execute(select(Incident)).scalar_one()
        intro = json.dumps(slack.messages(inc.slack_channel_id)[0]["blocks"])
        assert f"<{base}/ui/incidents/{inc.ref}|{inc.ref} in the web view>" in intro
        slash(bot, "rca", channel=inc.slack_channel_id)
        bot.drain()
        uploaded = [m for m in slack.messages(inc.slack_channel_id) if m.get("files")]
        assert f"{base}/ui/incidents/{inc.ref}" in json.dumps(uploaded[-1])
        with session_scope(bot.rt.engine) as s:
            week = schedule.last_complete_week(utcnow(), bot.rt.settings.tzinfo)
            assert post_digest(s, bot.rt.settings, week)
        with Session(bot.rt.engine) as s:
            row = s.execute(select(OutboxMessage).where(OutboxMessage.dedup_key.like("digest:%"))).scalar_one()
        key = schedule.period_key(*week, bot.rt.settings.tzinfo)
        from incident_bot.slack.intents import draw  # the message as the Slack job draws it when it sends

        assert f"{base}/ui/digests/{key}" in json.dumps(draw(row.payload, None)["blocks"])
    finally:
        bot.http.close()
        bot.server.stop()
        bot.rt.engine.dispose()
