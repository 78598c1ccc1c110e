"""The demo, read as a commander and a lead would: its story adds up, names everywhere a person reads,
valid HTML, and the README's excerpt is what a real run prints (the run is deterministic)."""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from incident_bot.core.durations import format_duration

from .conftest import UNPACED_SLACK
from .html5 import validate
from .test_cli import run

ROOT = Path(__file__).resolve().parent.parent
SLACK_IDS = re.compile(r"\bU0(?:ADA|BOB|CAT)\b")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("demo")
    # The demo's Slack is a stand-in without Slack's limits: unpaced, the run takes half the time and prints
    # the same (the outbox keeps each channel's order whatever the pace).
    env = {**os.environ, "SLACK_RATE_BUDGETS": ",".join(f"{k}={v}" for k, v in UNPACED_SLACK.items())}
    r = subprocess.run([sys.executable, "-m", "incident_bot", "demo", "-o", str(tmp / "out")], cwd=tmp,
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "out", r.stdout


def milestones(out: Path, ref: str) -> dict[str, datetime | None]:
    with sqlite3.connect(out / "incident-bot.db") as db:
        row = db.execute("SELECT impact_started_at, detected_at, acknowledged_at, mitigated_at, resolved_at "
                         "FROM incidents WHERE ref = ?", (ref,)).fetchone()
    names = ("impact_started_at", "detected_at", "acknowledged_at", "mitigated_at", "resolved_at")
    return {n: datetime.fromisoformat(v).replace(tzinfo=UTC) if v else None for n, v in zip(names, row, strict=True)}


def test_every_figure_in_the_story_agrees_with_the_milestones(demo: tuple[Path, str]) -> None:
    out, stdout = demo
    assert "incident.triggered" in stdout and "-> 202" in stdout and "is now commander" in stdout
    assert "#inc-2-search-results-empty-for-some-users" in stdout and "TTA=4m 10s" in stdout
    assert "SEV digest" in stdout and (out / "digest.md").exists()
    ms = milestones(out, "INC-2")
    impact, mitigated, resolved = ms["impact_started_at"], ms["mitigated_at"], ms["resolved_at"]
    assert impact and mitigated and resolved
    md = (out / "INC-2-rca.md").read_text()
    # The summary quotes the recorded TTM and the impact window.
    summary = md[md.index("## Summary"):md.index("## Impact")]
    ttm = format_duration(int((mitigated - impact).total_seconds()))
    assert f"for {ttm} ({impact:%H:%M:%S}Z to {mitigated:%H:%M:%S}Z)" in summary, summary
    assert f"| Time to mitigate (TTM) | {ttm} |" in md
    # The pinned message names the impact start; "healthy for N minutes" is the time between them.
    assert f"points at an empty index since {impact:%H:%M}Z" in stdout
    said = int(re.search(r"resolve search healthy for (\d+) minutes", stdout).group(1))  # type: ignore[union-attr]
    assert (resolved - mitigated).total_seconds() == said * 60 and resolved != mitigated
    # Every command line's time is the time the timeline recorded for it.
    assert f"{resolved:%H:%M:%S}Z  /incident resolve" in stdout
    assert f"{mitigated:%H:%M:%S}Z  /incident mitigated" in stdout
    # The RCA was signed: in review by Bob, then final with no open findings.
    assert "| Document status | Final |" in md and "| Reviewers | Bob Kahn |" in md
    assert "Before this RCA can be final" not in md
    # Communications list every status update, with who posted it.
    comms = md[md.index("## Communications"):md.index("## Detection")]
    assert comms.count("| Ada Lovelace |") == 2 and "Index rebuild running" in comms
    # Bookkeeping rows are in the appendix, not in the story.
    timeline = md[md.index("## Timeline"):md.index("## Communications")]
    assert "CAPA action" not in timeline and "CAPA action #1 added" in md[md.index("## Appendix"):]


def test_no_slack_id_where_a_name_is_known(demo: tuple[Path, str]) -> None:
    out, stdout = demo
    documents = {name: (out / name).read_text() for name in ("INC-2-rca.md", "INC-2-rca.html", "digest.md")}
    for name, text in documents.items():
        assert not SLACK_IDS.search(text), (name, SLACK_IDS.search(text))
    listing = stdout[stdout.index("== CAPA actions"):stdout.index("== The weekly")]
    assert "owner Bob Kahn" in listing and not SLACK_IDS.search(listing)
    shown = stdout[stdout.index("== The incidents"):stdout.index("== The RCA")]
    assert "Commander: Ada Lovelace" in shown and not SLACK_IDS.search(shown)
    rca = documents["INC-2-rca.md"]
    assert "| Ada Lovelace | commander from 10:07:00Z |" in rca and "| Cat Ng | reporter" in rca


def test_html_outputs_are_valid_html5(demo: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo
    env = {"DATABASE_URL": f"sqlite:///{out / 'incident-bot.db'}", "TIMEZONE": "Europe/Berlin",
           "WEB_BASE_URL": "https://bot.example.com"}
    assert run(["digest", "--week", "2026-W48", "--format", "html", "-o", str(tmp_path / "digest.html")],
               env, tmp_path).returncode == 0
    assert run(["rca", "INC-1", "--format", "html", "-o", str(tmp_path / "inc1.html"), "--quiet"],
               env, tmp_path).returncode == 0
    html = (tmp_path / "digest.html").read_text()
    assert 'href="https://bot.example.com/ui/incidents/INC-1"' in html
    assert validate([out / "INC-2-rca.html", tmp_path / "digest.html", tmp_path / "inc1.html"]) == []


def test_readme_excerpt_is_a_real_run(demo: tuple[Path, str]) -> None:
    spec = importlib.util.spec_from_file_location("readme_demo_excerpt", ROOT / "scripts/readme_demo_excerpt.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    _, stdout = demo
    block = script.readme_block(script.excerpt(stdout.splitlines()))
    readme = (ROOT / "README.md").read_text()
    assert script.current_readme_excerpt(readme) == block, "run scripts/readme_demo_excerpt.py --write"
