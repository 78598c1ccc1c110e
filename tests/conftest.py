"""Shared fixtures: real SQLite files and a real PostgreSQL, each test in its own database/schema.

PostgreSQL is at ``TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``). It is
required: when it cannot be reached the PostgreSQL tests fail, they are not skipped. Only an explicit
``--no-postgres`` (for a laptop without it) deselects them; CI never passes it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from incident_bot.config import Settings
from storage.db import make_engine
from tests.db_template import PgScript, SqliteTemplate, record_pg_migration

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PD_SECRET = "pd-webhook-secret-1"
# Slack's paced methods other than conversations.create, at a pace the stand-in never notices.
UNPACED_SLACK = {"conversations.invite": 6000, "conversations.setTopic": 6000, "users.lookupByEmail": 6000}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--no-postgres", action="store_true", help="deselect PostgreSQL tests (never in CI)")


# The longest files, about longest first (their summed test times on two workers, 2026-12). scripts/test runs
# the suite with --dist loadfile --no-loadscope-reorder: xdist hands out whole files in collection order,
# so these start first and the short files fill in at the end, and both workers finish at about the same
# time (longest processing time first). xdist's own order (most tests first) hands out the long files of
# few tests (fault campaign, replicas, backfill) last, where one of them can keep a worker busy while the
# other has nothing left. A file not listed keeps its place after these; a stale list costs time, never a test.
LONG_FILES = (
    "test_backfill.py", "test_replicas_and_crashes.py", "test_web_browser.py", "test_storm.py",
    "test_fault_campaign.py", "test_scheduler_pg.py", "test_cli_errors.py", "test_db_outage.py",
    "test_hostile_slack.py", "test_trackers_jira.py", "test_trackers_github.py", "test_trackers_linear.py",
    "test_cli.py", "test_outbox_faults.py", "test_fuzz_endpoints.py", "test_worker_process.py",
    "test_pipeline.py", "test_slack_commands.py", "test_web.py", "test_similar_ranking.py", "test_rca_review.py",
    "test_hostile_http.py", "test_similar.py", "test_demo.py", "test_migrations.py", "test_learning_bulk.py",
    "test_pagerduty_edges.py", "test_web_timeline.py", "test_digest.py", "test_metrics_property.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its own order
    if not config.getoption("--no-postgres"):
        return
    keep = [i for i in items if "postgres" not in i.keywords]
    config.hook.pytest_deselected(items=[i for i in items if "postgres" in i.keywords])
    items[:] = keep


def pg_schema_url(schema: str) -> str:
    base = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[PgScript]:
    """The real migrations, run once per pytest process into a template schema, recorded for replay."""
    schema = f"tmpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield record_pg_migration(pg_schema_url(schema), schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_url(pg_template: PgScript) -> Iterator[str]:
    """A fresh, migrated schema in the test PostgreSQL (the template's migration replayed); dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        pg_template.replay(conn, schema)
    url = pg_schema_url(schema)
    try:
        yield url
    finally:
        from storage.db import dispose_all

        dispose_all()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    """The real migrations, run once per pytest process into a SQLite file that tests copy."""
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: SqliteTemplate) -> str:
    """A fresh, migrated SQLite file (a copy of the template) in the test's temporary directory."""
    return sqlite_template.copy(tmp_path / "incident-bot.db")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def make_settings(db_url: str, **overrides: object) -> Settings:
    """Settings for tests, independent of the developer's environment and .env file."""
    values: dict[str, object] = {
        "database_url": db_url,
        "slack_bot_token": "xoxb-test-token",
        "slack_signing_secret": SLACK_SECRET,
        "slack_api_url": "http://127.0.0.1:9/api/",
        "pagerduty_webhook_secrets": PD_SECRET,
        "incident_announce_channel": "C0ANNOUNCE",
        "digest_channel": "C0DIGEST",
        "timezone": "UTC",
        "outbox_poll_interval": 0.05,
        # Scheduled jobs (digest, reminders) are tested on their own, with an injected clock.
        "scheduler_enabled": False,
        # The stand-in has no Tier 2 limit unless a test sets one; don't pace channel creation in tests.
        "slack_channel_create_per_minute": 6000,
        # Nor Tier 3/4 limits: at Slack's 50 a minute every topic change waited 1.2 s, the bulk of many
        # tests' time. The pacing itself is tested in tests/test_rate_limits.py and tests/test_storm.py.
        "slack_rate_budgets": UNPACED_SLACK,
        # Alert-storm grouping is tested on its own (tests/test_storm.py); elsewhere one trigger = one incident.
        "group_by": "none",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@functools.cache
def client_ssl() -> ssl.SSLContext:
    """One SSL context for the tests' HTTP clients (``httpx.Client(verify=client_ssl())``): httpx builds
    one per client by default, ~60 ms of CPU loading the system's CA certificates, for clients that talk
    plain HTTP to a local server. A test starts hundreds of them."""
    return ssl.create_default_context()


# -- a running bot: the real ASGI app under uvicorn, the Slack stand-in, a real database -------------

class Bot:
    """The app as a user runs it, plus handles a test needs to look inside."""

    def __init__(self, rt, server, slack, http) -> None:  # type: ignore[no-untyped-def]
        self.rt, self.server, self.slack, self.http = rt, server, slack, http

    @property
    def url(self) -> str:
        return self.server.url

    def send_pd(self, doc: dict, *, secret: str = PD_SECRET, headers: dict | None = None):  # type: ignore[no-untyped-def]
        from incident_bot.demo.pagerduty_payloads import encode, signed_headers

        body = encode(doc)
        h = signed_headers(body, secret)
        h.update(headers or {})
        return self.http.post(f"{self.url}/pagerduty/webhook", content=body, headers=h)

    def drain(self, timeout: float = 20.0) -> None:
        from incident_bot.pipeline.outbox import wait_until_drained

        assert wait_until_drained(self.rt.engine, timeout), "the outbox did not drain in time"


@pytest.fixture
def slack():  # type: ignore[no-untyped-def]
    from incident_bot.demo.slack_standin import SlackStandIn

    with SlackStandIn() as standin:
        yield standin


def start_bot(db_url: str, slack, **overrides):  # type: ignore[no-untyped-def]
    import httpx

    from incident_bot.bootstrap import build_app
    from incident_bot.demo.live_server import LiveServer

    worker_kw = {k: overrides.pop(k) for k in ("backoff_base", "backoff_cap") if k in overrides}
    start_worker = bool(overrides.pop("start_worker", True))
    if "incident_announce_channel" not in overrides:
        existing = slack.channel_by_name("incidents")
        overrides["incident_announce_channel"] = existing["id"] if existing else slack.add_channel("incidents")
    settings = make_settings(db_url, slack_api_url=slack.url, **overrides)
    app = build_app(settings, start_worker=start_worker)
    rt = app.state.runtime
    if rt.worker is not None:
        for k, v in {"backoff_base": 0.05, "backoff_cap": 0.5, **worker_kw}.items():
            setattr(rt.worker, k, v)
    server = LiveServer(app).start()
    bot = Bot(rt, server, slack, httpx.Client(timeout=30, verify=client_ssl()))
    bot.announce = settings.incident_announce_channel
    return bot


@pytest.fixture
def bot(db_url: str, slack):  # type: ignore[no-untyped-def]
    b = start_bot(db_url, slack)
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


# -- real server processes (kill -9, several replicas) ------------------------------------------------

class ServerProcess:
    """``incident-bot serve`` in its own process, as an operator runs it."""

    def __init__(self, env: dict[str, str], port: int | None = None, args: list[str] | None = None) -> None:
        import socket

        self.args = args or ["serve"]
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        self.env = env
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> ServerProcess:
        import sys
        import time

        import httpx

        # A session of its own: kill() takes serve and its worker child together, as a container's death does.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "incident_bot", *self.args, "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5, verify=client_ssl()) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
                try:
                    # Up: answering, and its worker child (serve on PostgreSQL) past its start-up.
                    if http.get(f"{self.url}/healthz").status_code == 200 and \
                            http.get(f"{self.url}/readyz").json().get("worker_process") != "starting":
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.kill()  # not left running behind a failed test
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """SIGKILL to serve and its worker child (the process group): no shutdown hooks, nothing finishes."""
        import signal

        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, as an operator stops it (serve stops its worker child first); SIGKILL after 30 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        self.kill()  # and whatever of the group is left


def server_env(db_url: str, slack, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "DATABASE_"))}
    existing = slack.channel_by_name("incidents")
    announce = existing["id"] if existing else slack.add_channel("incidents")
    env.update({
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_API_URL": slack.url,
        "PAGERDUTY_WEBHOOK_SECRETS": PD_SECRET,
        "INCIDENT_ANNOUNCE_CHANNEL": announce,
        "OUTBOX_POLL_INTERVAL": "0.05",
        "SCHEDULER_ENABLED": "false",
        "SLACK_CHANNEL_CREATE_PER_MINUTE": "6000",
        "SLACK_RATE_BUDGETS": ",".join(f"{k}={v}" for k, v in UNPACED_SLACK.items()),
        "GROUP_BY": "none",
        "LOG_LEVEL": "WARNING",
    })
    env.update(extra)
    return env


# -- signed Slack requests ---------------------------------------------------------------------------

def slack_post(bot, body: str | bytes, content_type: str, *, secret: str = SLACK_SECRET,  # type: ignore[no-untyped-def]
               timestamp: int | None = None, headers: dict | None = None):
    from incident_bot.demo.slack_requests import signed

    raw, h = signed(body, secret, timestamp=timestamp)
    h["Content-Type"] = content_type
    h.update(headers or {})
    return bot.http.post(f"{bot.url}/slack/events", content=raw, headers=h)


class Answered:
    """A slash command's HTTP answer (the ack) plus what the user is told afterwards: ``json()`` is the
    ack's body when it says something (help, a usage error), else the first answer the fold worker posted
    to the command's ``response_url`` (waited for), which is what Slack shows the user."""

    def __init__(self, bot, resp, token: str) -> None:  # type: ignore[no-untyped-def]
        self.bot, self.resp, self.token = bot, resp, token
        self.status_code, self.headers = resp.status_code, resp.headers
        self.text, self.content = resp.text, resp.content

    def ack(self) -> dict:  # type: ignore[type-arg]
        if self.resp.content and (self.resp.headers.get("content-type") or "").startswith("application/json"):
            return dict(self.resp.json())
        return {}

    def json(self, timeout: float = 20.0) -> dict:  # type: ignore[type-arg]
        acked = self.ack()
        if acked.get("text") or acked.get("blocks"):
            return acked
        answers = self.bot.slack.wait_for(lambda: self.bot.slack.responses(self.token), timeout=timeout)
        return dict(answers[0])


def slash(bot, text: str, *, user: str = "U0ADA", channel: str = "C0GENERAL", **kw) -> Answered:  # type: ignore[no-untyped-def]
    """Send a signed slash command, with a response_url on the Slack stand-in."""
    from incident_bot.demo.slack_requests import FORM, slash_body

    token = uuid.uuid4().hex
    resp = slack_post(bot, slash_body(text, user=user, channel=channel,
                                      response_url=bot.slack.response_url(token)), FORM, **kw)
    return Answered(bot, resp, token)


def reply(bot, resp: Answered, timeout: float = 20.0) -> str:  # type: ignore[no-untyped-def]
    """What the user was told about a command, as text."""
    return str(resp.json(timeout).get("text") or "")


def command(bot, text: str, **kw) -> str:  # type: ignore[no-untyped-def]
    """Run a slash command and return what the user was told (the ack, or the answer)."""
    resp = slash(bot, text, **kw)
    assert resp.status_code == 200, resp.text
    return reply(bot, resp)


def slack_event(bot, event: dict, *, event_id: str | None = None, **kw):  # type: ignore[no-untyped-def]
    from incident_bot.demo.slack_requests import event_body

    return slack_post(bot, event_body(event, event_id=event_id), "application/json", **kw)


def slack_interaction(bot, payload: dict, **kw):  # type: ignore[no-untyped-def]
    from incident_bot.demo.slack_requests import FORM, interaction_body

    return slack_post(bot, interaction_body(payload), FORM, **kw)
