"""The console script as users run it: configuration errors, incidents list/show, db upgrade, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from incident_bot.cli import COMMANDS, main
from incident_bot.config import ConfigError, load_settings
from incident_bot.core.lifecycle import Signal
from incident_bot.core.severity import parse_severity_map, severity_for
from incident_bot.usecases.incidents import NewIncident, apply_signals, open_incident
from storage import migrate
from storage.db import make_engine, session_scope

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "DATABASE_"))}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "incident_bot", *args], env=base, cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def test_serve_without_secrets_names_the_setting(tmp_path: Path) -> None:
    r = run(["serve"], env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, cwd=tmp_path)
    assert r.returncode == 2
    expected = "incident-bot: configuration error: SLACK_BOT_TOKEN is required for 'serve'"
    assert r.stderr.strip().splitlines() == [expected]


@pytest.mark.parametrize(("env", "name"), [
    ({"TIMEZONE": "Mars/Olympus"}, "TIMEZONE"),
    ({"SEVERITY_MAP": "P1=SEV9"}, "SEVERITY_MAP"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"OUTBOX_WORKERS": "zero"}, "OUTBOX_WORKERS"),
])
def test_malformed_settings_stop_with_one_line(tmp_path: Path, env: dict[str, str], name: str) -> None:
    r = run(["incidents", "list"], env=env, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in r.stderr


def test_malformed_bot_token(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(_env_file=None, slack_bot_token="xoxp-user", slack_signing_secret="x",
                      pagerduty_webhook_secrets="y")
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN is malformed"):
        s.require("slack_bot_token", why="for 'serve'")


def test_severity_map_defaults_and_override() -> None:
    default = parse_severity_map("")
    assert severity_for("P1", "high", default) == "SEV1"
    assert severity_for(None, "high", default) == "SEV2"
    assert severity_for(None, "low", default) == "SEV4"
    assert severity_for("P5", None, default) == "SEV4"
    custom = parse_severity_map("P2=SEV1, low=SEV3")
    assert severity_for("P2", "high", custom) == "SEV1" and severity_for(None, "low", custom) == "SEV3"
    with pytest.raises(ValueError):
        parse_severity_map("P1")


def test_incidents_list_and_show_json(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    with session_scope(engine) as s:
        inc = open_incident(s, NewIncident(title="Disk full", detected_at=T0, severity="SEV2", origin="cli",
                                           service="db"), announce_channel=None, invite_oncall=False)
        apply_signals(s, inc, [Signal("impact_started", at=T0, when=T0 - timedelta(minutes=5)),
                               Signal("acknowledge", at=T0 + timedelta(minutes=2)),
                               Signal("resolve", at=T0 + timedelta(minutes=30))], strict=False, source="cli")
    engine.dispose()
    env = {"DATABASE_URL": db_url}
    shown = json.loads(run(["incidents", "show", "INC-1", "--format", "json"], env, tmp_path).stdout)
    assert set(shown) == {"ref", "title", "status", "severity", "service", "pagerduty", "slack", "milestones",
                          "metrics", "people", "timeline", "similar", "recurrence"}
    assert shown["similar"] == [] and shown["recurrence"] is None  # the only incident: nothing before it
    assert shown["people"] == {"commander": None, "comms": None, "scribe": None, "reporter": None}
    assert shown["milestones"] == {
        "impact_started_at": "2026-11-26T13:55:00Z", "detected_at": "2026-11-26T14:00:00Z",
        "acknowledged_at": "2026-11-26T14:02:00Z", "mitigated_at": "2026-11-26T14:30:00Z",
        "resolved_at": "2026-11-26T14:30:00Z", "closed_at": None}
    assert shown["metrics"] == {"ttd_s": 300, "tta_s": 120, "ttm_s": 2100, "ttr_s": 2100}
    assert shown["timeline"][0] == {"occurred_at": "2026-11-26T13:55:00Z", "source": "cli", "kind": "impact_started",
                                    "actor": None, "actor_name": None, "text": "Impact started",
                                    "text_named": "Impact started"}
    listed = json.loads(run(["incidents", "list", "--status", "all", "--format", "json"], env, tmp_path).stdout)
    assert [d["ref"] for d in listed] == ["INC-1"] and "timeline" not in listed[0]
    assert json.loads(run(["incidents", "list", "--format", "json"], env, tmp_path).stdout) == []
    text = run(["incidents", "show", "INC-1"], env, tmp_path).stdout
    assert "TTD=5m 00s" in text and "resolved" in text
    missing = run(["incidents", "show", "INC-9"], env, tmp_path)
    assert missing.returncode == 1 and "no incident INC-9" in missing.stderr


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/fresh.db"}
    first, second = run(["db", "upgrade"], env, tmp_path), run(["db", "upgrade"], env, tmp_path)
    assert first.returncode == second.returncode == 0

    assert f"database at {migrate.head()}" in second.stdout


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    # The console script's own entry point, in this process: a process per command paid ~1 s of start-up
    # each for the same parsers (the console script as a process: test_help_lists_the_commands_...).
    for cmd in ([[name] for name in COMMANDS] + [["db", "upgrade"], ["incidents", "list"], ["incidents", "show"]]):
        with pytest.raises(SystemExit) as exited:
            main([*cmd, "--help"])
        out = capsys.readouterr().out
        assert exited.value.code == 0 and "usage: incident-bot" in out and len(out) > 150, cmd


def test_help_lists_the_commands_without_loading_them() -> None:
    """``incident-bot --help`` is read from the command table: no command module, no settings, no SQL."""
    heavy = ("incident_bot.cli.", "incident_bot.config", "storage", "sqlalchemy", "sqlmodel", "pydantic",
             "slack_sdk", "slack_bolt", "jinja2", "pygal", "httpx", "uvicorn", "fastapi", "alembic")
    code = ("import sys\nfrom incident_bot.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    for name, (_, summary) in COMMANDS.items():
        assert f"{name}" in r.stdout and summary[:40] in " ".join(r.stdout.split()), name


def test_database_down_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    r = run(["incidents", "list"], env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}, cwd=tmp_path)
    assert r.returncode == 3
    assert r.stderr.startswith("incident-bot: database unavailable:") and "Traceback" not in r.stderr


def test_sqlite_in_a_new_directory(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/new/dir/bot.db"}
    assert run(["db", "upgrade"], env=env, cwd=tmp_path).returncode == 0
    r = run(["incidents", "list"], env=env, cwd=tmp_path)
    assert r.returncode == 0 and "no incidents" in r.stdout
