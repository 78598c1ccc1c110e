"""RCA export: section order, UTC timeline with milestones, CAPA table, escaping, custom templates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import Engine

from incident_bot import cli
from incident_bot.core.lifecycle import Signal
from incident_bot.rendering import md_cell, render
from incident_bot.usecases import actions, rca
from incident_bot.usecases.incidents import NewIncident, apply_signals, milestone_for, open_incident
from storage import repo
from storage.db import make_engine, session_scope
from storage.models import Incident, SlackUser

T0 = datetime(2026, 11, 26, 14, 50, tzinfo=UTC)
HOSTILE = "Checkout <script>alert(1)</script> | 500s"
MD_SECTIONS = [
    "## Summary",
    "## Impact",
    "## Participants",
    "## Timeline",
    "## Communications",
    "## Detection",
    "## Response",
    "## Recovery",
    "## Root causes and contributing factors",
    "## Trigger",
    "## Lessons learned",
    "### What went well",
    "### What went wrong",
    "### Where we got lucky",
    "## CAPA action items",
    "## Supporting information",
]
HTML_SECTIONS = [
    "summary",
    "impact",
    "participants",
    "timeline",
    "communications",
    "detection",
    "response",
    "recovery",
    "root_causes",
    "trigger",
    "lessons",
    "actions",
    "links",
    "appendix",
]
NARRATIVE = {
    "summary": "Checkout returned 500s for an hour.",
    "impact": "About 12% of orders failed.",
    "detection": "The 5xx alert fired.",
    "response": "The team rolled back.",
    "recovery": "Rollback at 15:40.",
    "root_causes": "The pool size change was not load tested.",
    "trigger": "A config push at 14:44.",
    "went_well": "- alerting\n- rollback was quick",
    "went_wrong": "The dashboard was stale.",
    "lucky": "It happened at low traffic.",
    "links": "Grafana https://grafana.example.com/d/checkout",
    "authors": "Alice Example",
}


def _step(s, inc: Incident, kind: str, signal: str, at: datetime, actor: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """A lifecycle step as the adapters record it: the signal, then its timeline row."""
    tr = apply_signals(s, inc, [Signal(signal, at)], strict=False, source="pagerduty", actor=actor)  # type: ignore[arg-type]
    repo.add_timeline(
        s,
        incident_id=inc.id or 0,
        occurred_at=at,
        source="pagerduty",
        kind=kind,
        text=kind.capitalize(),
        actor=actor,
        milestone=milestone_for(kind, tr.changed),
    )


def full_incident(engine: Engine) -> str:
    with session_scope(engine) as s:
        inc = open_incident(
            s,
            NewIncident(
                title=HOSTILE,
                detected_at=T0,
                severity="SEV1",
                origin="pagerduty",
                service="checkout",
                impact_started_at=T0 - timedelta(minutes=4, seconds=12),
                fired_by="PagerDuty triggered",
                pagerduty_url="https://acme.pagerduty.com/incidents/P1",
            ),
            announce_channel=None,
            invite_oncall=False,
        )
        inc.commander_id, inc.slack_channel_id, inc.slack_channel_name = "U0ALICE", "C0INC1", "inc-1-checkout"
        s.add(SlackUser(user_id="U0ALICE", name="Alice Example"))
        _step(s, inc, "acknowledged", "acknowledge", T0 + timedelta(minutes=2), actor="U0ALICE")
        # A note stamped in another zone: the RCA shows it in UTC (17:05+02:00 = 15:05 UTC).
        repo.add_timeline(
            s,
            incident_id=inc.id or 0,
            source="slack",
            kind="note",
            actor="U0ALICE",
            occurred_at=datetime(2026, 11, 26, 17, 5, tzinfo=timezone(timedelta(hours=2))),
            text="Rolled back | pool size\nsecond line",
        )
        apply_signals(s, inc, [Signal("mitigate", T0 + timedelta(minutes=50))], strict=False, source="slack")
        _step(s, inc, "resolved", "resolve", T0 + timedelta(hours=1))
        ref = inc.ref
        for title, prio, due in [
            ("Low one", "low", date(2026, 12, 1)),
            ("Later high", "high", date(2026, 12, 20)),
            ("Add | guard", "high", date(2026, 12, 5)),
            ("Medium", "medium", None),
        ]:
            actions.add_action(
                s,
                inc,
                title,
                "corrective",
                prio,
                "U0ALICE",
                due,
                "https://jira.example.com/OPS-1" if prio == "high" else None,
                "U0ALICE",
                at=T0 + timedelta(hours=2),
            )
        rca.set_narrative(s, ref, NARRATIVE)
    return ref


def empty_incident(engine: Engine) -> str:
    with session_scope(engine) as s:
        inc = open_incident(
            s,
            NewIncident(title="Quiet one", detected_at=T0, severity="SEV3", origin="slack"),
            announce_channel=None,
            invite_oncall=False,
        )
        return inc.ref


def export(engine: Engine, ref: str, fmt: str, templates_dir: str | None = None):  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return rca.export_rca(s, ref, fmt, templates_dir, today=date(2026, 12, 10))


def positions(text: str, needles: list[str]) -> list[int]:
    found = [text.find("\n" + n + "\n") for n in needles]
    assert -1 not in found, [n for n, p in zip(needles, found, strict=True) if p == -1]
    return found


class Checker(HTMLParser):
    """Well-formedness (every non-void tag closed in order) and what the page contains."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        self.text.append(data)


def parse_html(text: str) -> Checker:
    c = Checker()
    c.feed(text)
    c.close()
    assert c.errors == [] and c.stack == [], (c.errors, c.stack)
    return c


def test_full_rca_markdown(engine: Engine) -> None:
    ref = full_incident(engine)
    md = export(engine, ref, "md")
    assert md.warnings == []
    text = md.text
    assert text.startswith(f"# {ref}: Checkout \\<script\\>alert(1)\\</script\\> | 500s\n")
    assert positions(text, MD_SECTIONS) == sorted(positions(text, MD_SECTIONS))
    for row in (
        "| Incident | INC-1 |",
        "| Severity | SEV1 |",
        "| Services | checkout |",
        "| Incident commander | Alice Example |",
        "| Incident status | resolved |",
            "| Document status | Draft |",
        "| Authors | Alice Example |",
    ):
        assert row in text
    assert "To fill" not in text  # every section is filled
    # Timeline in UTC, milestones marked, the note from +02:00 shown at 15:05 UTC with its cell escaped.
    assert "| 2026-11-26 14:45:48Z | +0s | **◆ Impact started** |" in text
    assert (
        "| 2026-11-26 14:50:00Z | +4m 12s | **◆ Detected** · PagerDuty triggered: Checkout \\<script\\>" in text
    )
    assert "| 2026-11-26 14:52:00Z | +6m 12s | **◆ Acknowledged** | pagerduty | Alice Example |" in text
    assert "| 2026-11-26 15:05:00Z | +19m 12s | Rolled back \\| pool size<br>second line | slack |" in text
    assert "| 2026-11-26 15:40:00Z | +54m 12s | **◆ Mitigated** | milestone |" in text  # no row: synthesised
    assert "| Time to detect (TTD) | 4m 12s |" in text and "| Time to resolve (TTR) | 1h 04m 12s |" in text
    # CAPA table: high (earliest due first), medium, low; `|` escaped; overdue marked against today.
    capa = text[text.index("## CAPA action items") :]
    order = [capa.index(t) for t in ("Add \\| guard", "Later high", "Medium", "Low one")]
    assert order == sorted(order)
    assert "| 3 | Add \\| guard | corrective | high | Alice Example | 2026-12-05 | open ⚠ overdue |" in capa
    assert "| 2 | Later high | corrective | high | Alice Example | 2026-12-20 | open |" in capa
    assert "- Grafana: https://grafana.example.com/d/checkout" in text
    assert "- PagerDuty incident: https://acme.pagerduty.com/incidents/P1" in text
    assert "- Slack channel: #inc-1-checkout (https://slack.com/app_redirect?channel=C0INC1)" in text
    # Every Markdown table row keeps its column count (no stray unescaped pipes).
    # (Timeline rows have 5 columns, appendix rows 4.)
    appendix_at = text.index("## Appendix")
    for line in text[:appendix_at].splitlines():
        if line.startswith("| 2026-11-26"):
            assert line.replace("\\|", "").count("|") == 6, line
    for line in text[appendix_at:].splitlines():
        if line.startswith("| 2026-11-26"):
            assert line.replace("\\|", "").count("|") == 5, line


def test_full_rca_html(engine: Engine) -> None:
    ref = full_incident(engine)
    html = export(engine, ref, "html").text
    page = parse_html(html)
    assert all(tag != "script" for tag, _ in page.tags)  # the hostile title is text, never a tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert f"{ref}: {HOSTILE}" in "".join(page.text)
    ids = [a["id"] for tag, a in page.tags if tag == "section"]
    assert ids == HTML_SECTIONS
    assert "@media print" in html and "http" not in html.split("<body>")[0].replace("http-equiv", "")
    milestone_rows = [a for tag, a in page.tags if tag == "tr" and a.get("class") == "milestone"]
    assert len(milestone_rows) == 5  # impact, detected, acknowledged, mitigated, resolved
    assert '<time datetime="2026-11-26T15:05:00Z">2026-11-26 15:05:00Z</time>' in html
    actions_html = html[html.index('<section id="actions">') :]
    order = [actions_html.index(t) for t in ("Add | guard", "Later high", "Medium", "Low one")]
    assert order == sorted(order)
    hrefs = [a["href"] for tag, a in page.tags if tag == "a"]
    assert "https://jira.example.com/OPS-1" in hrefs and "https://grafana.example.com/d/checkout" in hrefs
    assert "<ul><li>alerting</li><li>rollback was quick</li></ul>" in html


def test_empty_rca_renders_prompts(engine: Engine) -> None:
    ref = empty_incident(engine)
    md = export(engine, ref, "md").text
    assert positions(md, MD_SECTIONS) == sorted(positions(md, MD_SECTIONS))
    for prompt in (
        "_To fill: two or three sentences",
        "_To fill: what did users experience",
        "_To fill: the change or event",
        "_To fill: what worked",
        "_To fill: what made the incident",
        "_To fill: what limited the damage",
        "_To fill: no CAPA action items yet",
        "1. _Why did users see the failure? Because …_",
        "5. _Why did that happen? Because …_",
    ):
        assert prompt in md
    assert "- Declared in Slack at 2026-11-26 14:50:00Z, 0s after impact started (TTD)." in md
    assert "- Never acknowledged (no TTA)." in md and "- Not resolved yet." in md
    assert "| 2026-11-26 14:50:00Z | +0s | **◆ Detected** · Declared: Quiet one | slack |" in md
    html = export(engine, ref, "html").text
    page = parse_html(html)
    # An incident with no bookkeeping rows has no appendix.
    assert [a["id"] for tag, a in page.tags if tag == "section"] == HTML_SECTIONS[:-1]
    assert html.count('<p class="prompt">') >= 10 and '<ol class="prompt">' in html


def test_md_cell_escapes_pipes_and_newlines() -> None:
    assert md_cell("a|b\nc\r\nd") == "a\\|b<br>c<br>d"
    assert md_cell("already \\| escaped") == "already \\| escaped"
    assert md_cell("<b>x</b>") == "\\<b\\>x\\</b\\>"
    assert md_cell(None) == ""


def test_custom_template_overrides_default(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    ref = full_incident(engine)
    custom = tmp_path / "tpl"
    custom.mkdir()
    (custom / "rca.md.j2").write_text(
        "CUSTOM {{ incident.ref }} {{ section.summary.body }}\n"
        "{% for a in section.actions.rows %}{{ a.title|md_cell }};{% endfor %}\n"
    )
    (custom / "rca.html.j2").write_text("<h1>{{ doc.title }}</h1>\n")
    md = export(engine, ref, "md", str(custom))
    assert md.warnings == [] and md.template.endswith("rca.md.j2")
    assert (
        md.text
        == f"CUSTOM {ref} Checkout returned 500s for an hour.\nAdd \\| guard;Later high;Medium;Low one;"
    )
    html = export(engine, ref, "html", str(custom))
    assert html.text == "<h1>Checkout &lt;script&gt;alert(1)&lt;/script&gt; | 500s</h1>\n"  # autoescaped


@pytest.mark.parametrize(
    ("source", "line", "cause"),
    [
        ("# {{ incident.ref }}\n\n{% if %}\n", 3, "Expected an expression"),
        ("ok\n{{ incident.no_such_field.deeper }}\n", 2, "no_such_field"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}\n", 1, "unsafe"),
        ("x\n{{ doc.context.__func__.__globals__ }}\n", 2, "unsafe"),  # our own types stay sandboxed
        ("{{ doc.__class__ }}\n", 1, "unsafe"),
    ],
)
def test_broken_custom_template_falls_back(
    sqlite_url: str, tmp_path: Path, source: str, line: int, cause: str
) -> None:
    engine = make_engine(sqlite_url)
    ref = empty_incident(engine)
    (tmp_path / "rca.md.j2").write_text(source)
    result = export(engine, ref, "md", str(tmp_path))
    assert len(result.warnings) == 1, result.warnings
    warning = result.warnings[0]
    assert f"template 'rca.md.j2' line {line} in RCA_TEMPLATES_DIR {tmp_path}" in warning
    assert cause in warning
    assert result.template == "default" and result.text.startswith(f"# {ref}: Quiet one\n")


def test_missing_templates_dir_warns(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    ref = empty_incident(engine)
    result = export(engine, ref, "md", str(tmp_path / "nope"))
    assert "is not a directory" in result.warnings[0] and result.text.startswith(f"# {ref}")


def test_render_added_template(tmp_path: Path) -> None:
    """A team (or the digest) can add templates of its own next to the packaged ones."""
    (tmp_path / "extra.md.j2").write_text("{{ n|duration }} {{ x|md_cell }}")
    assert (
        render("extra.md.j2", {"n": 3725, "x": "a|b"}, templates_dir=str(tmp_path)).text == "1h 02m 05s a\\|b"
    )


def test_set_narrative_validates_and_clears(engine: Engine) -> None:
    ref = empty_incident(engine)
    with session_scope(engine) as s:
        with pytest.raises(rca.RcaError, match="unknown RCA field"):
            rca.set_narrative(s, ref, {"sumary": "typo"})
        assert rca.set_narrative(s, ref, {"summary": "  Short.  ", "lucky": "Low traffic"}) == [
            "summary",
            "lucky",
        ]
    with session_scope(engine) as s:
        assert rca.set_narrative(s, ref, {"lucky": "", "summary": "Short."}) == ["lucky"]
    with session_scope(engine) as s:
        assert repo.incident_by_ref(s, ref).rca == {"summary": "Short."}  # type: ignore[union-attr]
        with pytest.raises(rca.RcaError, match="no incident INC-99"):
            rca.export_rca(s, "INC-99", "md")


def test_cli_rca_sets_fields_warns_and_writes(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.delenv("RCA_TEMPLATES_DIR", raising=False)
    ref = empty_incident(make_engine(sqlite_url))
    (tmp_path / "why.md").write_text("1. The pool was too small.\n2. Nobody load tested it.\n")
    out = tmp_path / "rca.html"
    code = cli.main(
        [
            "rca",
            ref,
            "--format",
            "html",
            "-o",
            str(out),
            "--set",
            "summary=Bob should have checked the flag.",
            "--set-file",
            f"root_causes={tmp_path / 'why.md'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert 'blameless: summary: "Bob should have checked the flag." — "should have"' in err
    page = out.read_text()
    parse_html(page)
    assert "<ol><li>The pool was too small.</li><li>Nobody load tested it.</li></ol>" in page
    assert cli.main(["rca", ref, "--set", "nonsense=x"]) == 1
    assert "unknown RCA field(s) nonsense" in capsys.readouterr().err
    assert cli.main(["rca", ref, "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"# {ref}: Quiet one")
