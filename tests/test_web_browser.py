"""The web view in a real headless browser (Debian's chromium, driven by selenium; ``make browser``).

One browser for the module, one running bot per database. The browser signs in through the Slack
stand-in (OpenID Connect), opens every page and checks it against the database; after each page it
checks that the console has no error (a CSP violation is one) and that no request left the bot's
origin. Refusals: no session, a forged cookie, an expired one, a user of another workspace.

``WEB_SCREENSHOTS=docs/screenshots`` also saves the screenshots shown in the README
(``scripts/screenshots``); a normal run writes nothing.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import func, select

from incident_bot.bootstrap import build_app
from incident_bot.core import schedule
from incident_bot.demo.live_server import LiveServer
from incident_bot.demo.slack_standin import SlackStandIn
from incident_bot.slack.mrkdwn import row_plain
from incident_bot.usecases.metrics import period_metrics
from incident_bot.web import session as web_session
from incident_bot.web.settings import web_config
from storage import migrate
from storage.db import dispose_all, session_scope
from storage.models import ActionItem, Incident, TimelineEvent, utcnow
from tests.conftest import PG_URL, make_settings, pg_schema_url
from tests.web_seed import PD_URL, TICKET, seed

CLIENT_ID, CLIENT_SECRET = "1234.5678", "oidc-client-secret-for-tests"
SESSION_SECRET = "web-session-secret-for-tests-0123456789abcdef"
SHOTS = os.environ.get("WEB_SCREENSHOTS")
os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no telemetry (it is not used anyway)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Site:
    def __init__(self, url: str, slack: SlackStandIn, app: Any, refs: dict[str, str], settings: Any) -> None:
        self.url, self.slack, self.app, self.refs, self.settings = url, slack, app, refs, settings
        self.engine = app.state.runtime.engine
        self.config = web_config(settings, listen_host="127.0.0.1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    schema = None
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'incident-bot.db'}"
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        db_url = pg_schema_url(schema)
    migrate.upgrade(db_url)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with SlackStandIn() as slack:
        slack.oidc.register_client(CLIENT_ID, CLIENT_SECRET)
        slack.oidc.add_identity("U0ALICE", "Alice Example", "alice@example.com")
        slack.oidc.add_identity("U0EVE", "Eve Elsewhere", "eve@other.example", team_id="T0OTHERWS")
        settings = make_settings(db_url, slack_api_url=slack.url, slack_client_id=CLIENT_ID,
                                 slack_client_secret=CLIENT_SECRET, web_base_url=base,
                                 web_session_secret=SESSION_SECRET, slack_team_id="T0STANDIN",
                                 slack_oidc_authorize_url=slack.authorize_url)
        app = build_app(settings, start_worker=False, listen_host="127.0.0.1")
        refs = seed(app.state.runtime.engine, settings)
        with LiveServer(app, port=port):
            yield Site(base, slack, app, refs, settings)
        app.state.runtime.engine.dispose()
    if schema:
        dispose_all()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# -- helpers ----------------------------------------------------------------------------------------------

def drain_logs(driver: webdriver.Chrome) -> None:
    driver.get_log("browser")
    driver.get_log("performance")


def assert_clean(driver: webdriver.Chrome, site: Site) -> None:
    """No console error (CSP violations included) and no request to another origin since the last drain."""
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls, "the performance log recorded no request"
    foreign = [u for u in urls if not u.startswith(site.url + "/")]
    assert foreign == [], foreign


def open_page(driver: webdriver.Chrome, site: Site, path: str) -> None:
    drain_logs(driver)
    driver.get(site.url + path)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def sign_in(driver: webdriver.Chrome, site: Site, user: str = "U0ALICE", path: str = "/ui/incidents") -> None:
    site.slack.oidc.sign_in_as(user)
    driver.delete_all_cookies()
    open_page(driver, site, path)
    assert urlsplit(driver.current_url).path == "/ui/login"
    driver.find_element(By.ID, "sign-in-with-slack").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url.startswith(site.url)
                                    and d.execute_script("return document.readyState") == "complete"
                                    and (urlsplit(d.current_url).path != "/ui/auth/callback"
                                         or d.find_elements(By.ID, "signin-error")))


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def shot(driver: webdriver.Chrome, name: str, width: int = 1280) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 1500)")
    driver.set_window_size(width, max(700, int(height) + 120))
    driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))
    driver.set_window_size(1280, 900)


def fits_phone(driver: webdriver.Chrome) -> bool:
    driver.set_window_size(390, 844)
    try:
        return bool(driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"))
    finally:
        driver.set_window_size(1280, 900)


# -- tests ------------------------------------------------------------------------------------------------

def test_sign_in_and_every_page(browser: webdriver.Chrome, site: Site) -> None:
    d = browser
    sign_in(d, site)
    assert urlsplit(d.current_url).path == "/ui/incidents"
    assert d.find_element(By.ID, "viewer-name").text == "Alice Example"
    cookie = d.get_cookie("ib_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie.get("expiry")
    # (The sign-in itself went to the identity provider: a top-level navigation, not a page's request.)

    with session_scope(site.engine) as s:
        total = s.execute(select(func.count()).select_from(Incident)).scalar_one()
        newest = s.execute(select(Incident.ref).order_by(Incident.number.desc())).scalars().first()
        resolved_search = s.execute(select(func.count()).select_from(Incident).where(
            Incident.status == "resolved", Incident.service == "search-api")).scalar_one()
    open_page(d, site, "/ui/incidents")
    assert d.find_element(By.ID, "incident-count").text.startswith(f"{total} incidents")
    assert texts(d, "#incidents tbody tr td:first-child")[0] == newest
    assert fits_phone(d)
    shot(d, "incidents")
    assert_clean(d, site)

    # Filters through the form, as a user does.
    d.find_element(By.CSS_SELECTOR, "select[name=status] option[value=resolved]").click()
    d.find_element(By.CSS_SELECTOR, "select[name=service] option[value=search-api]").click()
    drain_logs(d)
    d.find_element(By.CSS_SELECTOR, "form.filters button").click()
    WebDriverWait(d, 10).until(lambda x: "status=resolved" in x.current_url)
    assert len(d.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")) == resolved_search
    assert set(texts(d, "#incidents tbody td:nth-child(4)")) == {"resolved"}
    open_page(d, site, "/ui/incidents?q=SCRIPT")
    assert texts(d, "#incidents tbody tr td:first-child") == [site.refs["full"]]
    assert_clean(d, site)

    ref = site.refs["full"]
    with session_scope(site.engine) as s:
        inc = s.execute(select(Incident).where(Incident.ref == ref)).scalar_one()
        title = inc.title
        notes = [row_plain(src, text) for src, text in s.execute(
            select(TimelineEvent.source, TimelineEvent.text).where(TimelineEvent.incident_id == inc.id,
                                                                   TimelineEvent.kind == "note")).all()]
    open_page(d, site, f"/ui/incidents/{ref}")
    assert d.find_element(By.ID, "incident-title").text == f"{ref}: {title}"  # shown as text, never run
    timeline = texts(d, "#timeline table.timeline tbody td:nth-child(3)")
    missing = [n for n in notes if not any(n in row for row in timeline)]
    assert not missing, (missing, timeline)
    assert len(timeline) >= len(notes)
    tickets = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "#actions table a")]
    assert tickets == [TICKET]
    pd = [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "#pagerduty-links a")]
    assert PD_URL in pd and any("PXYZ999" in u for u in pd)
    assert "Checkout returned 500s for 40 minutes." in d.find_element(By.ID, "summary").text
    assert d.find_element(By.ID, "rca-review").text.startswith("Draft")
    assert fits_phone(d)
    shot(d, "incident")
    assert_clean(d, site)

    open_page(d, site, "/ui/metrics")
    zone = site.settings.tzinfo
    since, until = schedule.week_containing(utcnow(), zone)
    with session_scope(site.engine) as s:
        doc = period_metrics(s, since=since, until=until)
    for key in ("mttd_s", "mtta_s", "mttm_s", "mttr_s"):
        section = d.find_element(By.ID, f"metric-{key}")
        assert section.find_element(By.CSS_SELECTOR, "svg.pygal-chart")
        rows = section.find_elements(By.CSS_SELECTOR, "table.numbers tbody tr")
        assert len(rows) == 12
        assert rows[-1].find_elements(By.TAG_NAME, "td")[-1].text == str(doc[key]["n"])
    legend = d.find_element(By.ID, "metric-mttr_s").text
    assert "SEV1 target" in legend and "SEV2 target" in legend
    # The chart's CSS (moved out of the SVG into the stylesheet) applies: the mean line is blue.
    stroke = d.execute_script("return getComputedStyle(document.querySelector("
                              "'#metric-mttr_s .serie-0 .line')).stroke")
    assert stroke == "rgb(9, 105, 218)"
    shot(d, "metrics")
    assert_clean(d, site)
    open_page(d, site, "/ui/metrics?severity=SEV1&service=checkout-api&weeks=4")
    assert len(d.find_elements(By.CSS_SELECTOR, "#metric-mttr_s table.numbers tbody tr")) == 4
    assert "SEV2 target" not in d.find_element(By.ID, "metric-mttr_s").text
    assert_clean(d, site)

    open_page(d, site, "/ui/digests")
    key = site.refs["digest"]
    assert texts(d, "#digests tbody td:first-child") == [key]
    d.find_element(By.LINK_TEXT, key).click()
    WebDriverWait(d, 10).until(lambda x: key in x.current_url)
    assert d.find_element(By.CSS_SELECTOR, "#digest h1").text == f"SEV digest · {key}"
    with session_scope(site.engine) as s:
        week = schedule.last_complete_week(utcnow(), zone)
        in_week = s.execute(select(func.count()).select_from(Incident).where(
            Incident.detected_at >= week[0], Incident.detected_at < week[1])).scalar_one()
    assert d.find_element(By.CSS_SELECTOR, "#digest .kpi .v").text == str(in_week)
    shot(d, "digest")
    assert_clean(d, site)

    with session_scope(site.engine) as s:
        open_count = s.execute(select(func.count()).select_from(ActionItem).where(
            ActionItem.status.in_(("open", "in_progress")))).scalar_one()
    open_page(d, site, "/ui/actions")
    assert d.find_element(By.ID, "action-count").text.startswith(f"{open_count} open CAPA actions · 1 overdue")
    assert texts(d, "section.owner h2")[0].startswith("Alice Example")
    assert len(d.find_elements(By.CSS_SELECTOR, "tr.late")) == 1
    shot(d, "actions")
    assert_clean(d, site)
    if SHOTS:
        d.set_window_size(390, 844)
        open_page(d, site, f"/ui/incidents/{ref}")
        d.save_screenshot(str(Path(SHOTS) / "incident-phone.png"))
        d.set_window_size(1280, 900)


def test_a_long_timeline_pages_with_plain_links(browser: webdriver.Chrome, site: Site) -> None:
    d = browser
    sign_in(d, site)
    ref = site.refs["long"]
    t = TimelineEvent
    with session_scope(site.engine) as s:
        inc = s.execute(select(Incident).where(Incident.ref == ref)).scalar_one()
        notes = [row_plain(src, text) for src, text in s.execute(
            select(t.source, t.text).where(t.incident_id == inc.id, t.kind == "note")  # type: ignore[arg-type]
            .order_by(t.occurred_at, t.id)).all()]  # type: ignore[arg-type]
    open_page(d, site, f"/ui/incidents/{ref}")
    count = d.find_element(By.ID, "timeline-count").text
    assert count.startswith("Showing 30") and "the latest" in count, count
    events = texts(d, "#timeline table.timeline tbody td:nth-child(3)")
    shown = [e for e in events if e.startswith("long note")]
    assert shown == notes[-len(shown):] and len(events) <= 302
    assert len(texts(d, "#timeline table.compact tbody tr")) >= 6  # the milestones, always
    assert fits_phone(d)
    shot(d, "incident-long")
    assert_clean(d, site)

    drain_logs(d)
    d.find_element(By.CSS_SELECTOR, "#timeline-pager a.older").click()  # a plain link: no script runs
    WebDriverWait(d, 10).until(lambda x: "before=" in x.current_url
                               and x.execute_script("return document.readyState") == "complete")
    older = [e for e in texts(d, "#timeline table.timeline tbody td:nth-child(3)") if e.startswith("long note")]
    assert older + shown == notes[-len(older) - len(shown):]  # the rows just before, no gap, no repeat
    assert d.find_elements(By.CSS_SELECTOR, "#timeline-pager a.newer")
    assert_clean(d, site)


def _refused(driver: webdriver.Chrome, site: Site, path: str = "/ui/incidents") -> bool:
    open_page(driver, site, path)
    return urlsplit(driver.current_url).path == "/ui/login" and not driver.find_elements(By.ID, "incidents")


def test_refused_without_a_session_or_with_a_forged_or_expired_cookie(browser: webdriver.Chrome,
                                                                       site: Site) -> None:
    d = browser
    d.delete_all_cookies()
    assert _refused(d, site)
    assert _refused(d, site, f"/ui/incidents/{site.refs['full']}")
    assert site.config is not None
    good = web_session.issue_session(site.config, user_id="U0ALICE", team_id="T0STANDIN", name="Alice")
    forged_payload = good.rsplit(".", 2)[0]
    forged = [
        "eyJ1IjoiVTBNQUxMT1JZIiwidCI6IlQwU1RBTkRJTiJ9.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb",  # made up
        forged_payload + ".aw6KnQ.AAAAAAAAAAAAAAAAAAAAAAAAAAA",  # a real payload, a wrong signature
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),  # tampered
    ]
    other_key = web_session.issue_session(
        type(site.config)(**{**site.config.__dict__, "session_secret": "another-secret-" + "9" * 30}),
        user_id="U0ALICE", team_id="T0STANDIN", name="Alice")
    expired = web_session.issue_session(site.config, user_id="U0ALICE", team_id="T0STANDIN", name="Alice",
                                        now=time.time() - site.config.session_seconds - 60)
    other_team = web_session.issue_session(site.config, user_id="U0EVE", team_id="T0OTHERWS", name="Eve")
    for value in [*forged, other_key, expired, other_team]:
        d.delete_all_cookies()
        d.add_cookie({"name": "ib_session", "value": value, "path": "/"})
        assert _refused(d, site), value
    d.delete_all_cookies()
    d.add_cookie({"name": "ib_session", "value": good, "path": "/"})
    assert not _refused(d, site)  # the control: the same route with a valid cookie opens


def test_a_user_of_another_workspace_is_refused(browser: webdriver.Chrome, site: Site) -> None:
    d = browser
    sign_in(d, site, user="U0EVE")
    assert "not a member of the workspace" in d.find_element(By.ID, "signin-error").text
    assert d.get_cookie("ib_session") is None
    assert _refused(d, site)


def test_sign_out_is_a_post_with_its_token(browser: webdriver.Chrome, site: Site) -> None:
    d = browser
    sign_in(d, site)
    drain_logs(d)
    d.find_element(By.CSS_SELECTOR, "form.logout button").click()
    try:
        WebDriverWait(d, 10).until(lambda x: x.find_elements(By.ID, "signed-out"))
    except TimeoutException:
        pytest.fail(f"not signed out: {d.current_url}")
    assert d.get_cookie("ib_session") is None
    assert_clean(d, site)
    assert _refused(d, site)
