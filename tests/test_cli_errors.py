"""Careless input to the console script: every mistake is one line on stderr and a non-zero exit, never a
traceback, and nothing is created or posted by a command that failed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from incident_bot.config import Settings
from incident_bot.usecases.incidents import NewIncident, open_incident
from storage.db import make_engine, session_scope

from .conftest import PG_URL, pg_schema_url

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "DATABASE_"))}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "incident_bot", *args], env=base, cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def one_line(r: subprocess.CompletedProcess, *needles: str) -> str:  # type: ignore[type-arg]
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def db_with_incident(sqlite_url: str) -> str:
    engine = make_engine(sqlite_url)
    with session_scope(engine) as s:
        open_incident(s, NewIncident(title="Disk full", detected_at=T0, severity="SEV2", origin="cli"),
                      announce_channel=None, invite_oncall=False)
    engine.dispose()
    return sqlite_url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A PostgreSQL schema nobody ran `db upgrade` on."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield pg_schema_url(schema)
    finally:
        from storage.db import dispose_all

        dispose_all()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_mistakes_with_files_and_migrations_are_one_line(db_with_incident: str, tmp_path: Path) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    db = {"DATABASE_URL": db_with_incident}
    cases = [
        (["rca", "INC-1", "-o", "/missing/dir/x.md"], db, ("/missing/dir/x.md",)),
        (["rca", "INC-1", "--format", "html", "-o", str(tmp_path)], db, (str(tmp_path),)),
        (["digest", "--week", "2026-W47", "-o", "/missing/dir/d.md"], db, ("/missing/dir/d.md",)),
        (["db", "upgrade", "--revision", "nosuch"], db, ("nosuch",)),
        (["db", "upgrade"], {"DATABASE_URL": f"sqlite:///{a_file}/bot.db"}, (str(a_file),)),
        (["incidents", "list"], {"DATABASE_URL": f"sqlite:///{a_file}/bot.db"}, ("no database",)),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run(c[0], c[1], tmp_path), cases))
    for (_args, _env, needles), r in zip(cases, results, strict=True):
        one_line(r, *needles)
        assert not (tmp_path / "plain-file" / "bot.db").exists()
    assert a_file.read_text() == "x"


@pytest.mark.postgres
def test_every_command_on_an_unmigrated_postgresql_says_db_upgrade(empty_pg_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": empty_pg_url}
    commands = [["incidents", "list"], ["incidents", "show", "INC-1"], ["metrics"], ["rca", "INC-1"],
                ["actions", "list"], ["actions", "add", "INC-1", "Fix it"], ["digest", "--week", "2026-W47"]]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run(c, env, tmp_path), commands))
    for r in results:
        one_line(r, "run: incident-bot db upgrade")


def test_read_commands_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "incident-bot.db"
    env = {"DATABASE_URL": f"sqlite:///{missing}"}
    commands = [["incidents", "list"], ["incidents", "show", "INC-1"], ["metrics"], ["rca", "INC-1"],
                ["actions", "list"], ["digest", "--week", "2026-W47"]]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run(c, env, tmp_path), commands))
    for r in results:
        one_line(r, "DATABASE_URL", str(missing))
    assert not missing.exists() and not missing.parent.exists()


def test_silent_successes_are_errors(db_with_incident: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_with_incident}
    one_line(run(["actions", "list", "--incident", "INC-77"], env, tmp_path), "no incident INC-77")
    assert run(["actions", "list", "--incident", "INC-1"], env, tmp_path).returncode == 0
    future = f"{datetime.now(UTC).year + 1}-W10"
    one_line(run(["digest", "--week", future], env, tmp_path), "future")


@pytest.mark.parametrize(("env", "needle"), [
    ({"PAGERDUTY_API_TOKEN": "u+abc"}, "PAGERDUTY_FROM_EMAIL"),
    ({"DIGEST_SCHEDULE": "FREQ=BOGUS"}, "DIGEST_SCHEDULE"),
    ({"CAPA_REMINDER_SCHEDULE": "every day"}, "CAPA_REMINDER_SCHEDULE"),
    ({"SLACK_API_URL": "notaurl"}, "SLACK_API_URL"),
    ({"PAGERDUTY_API_URL": "http://api.pagerduty.com"}, "PAGERDUTY_API_URL"),
    ({"PAGERDUTY_CA_BUNDLE": "/missing.pem"}, "/missing.pem"),
    ({"SLACK_BOT_TOKEN": "xoxb-replace-me"}, "placeholder"),
    ({"DIGEST_CHANNEL": "C0123456789"}, "DIGEST_CHANNEL"),
    ({"PAGERDUTY_WEBHOOK_SECRETS": "replace-me"}, "placeholder"),
])
def test_bad_settings_stop_every_command_at_load(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    for command in (["incidents", "list"], ["digest", "--post"]):
        one_line(run(command, env, tmp_path), "configuration error", needle)


def test_the_env_example_as_shipped_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    one_line(run(["serve"], {}, tmp_path), "placeholder")


def test_every_setting_is_in_env_example() -> None:
    import re

    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in listed)
    assert missing == [], f"add to .env.example: {missing}"
