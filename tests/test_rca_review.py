"""The RCA as a document to sign: status draft -> review -> final, the quality check, names in the
blameless check. Service level on SQLite and PostgreSQL, the CLI as a subprocess, the Slack command
through signed requests to the real app."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from incident_bot.core.blameless import check
from incident_bot.core.lifecycle import Signal
from incident_bot.core.people import name_variants
from incident_bot.core.rca_review import QualityFinding, ReviewError, next_status
from incident_bot.usecases import actions, rca
from incident_bot.usecases.incidents import NewIncident, apply_signals, open_incident
from storage import repo
from storage.db import session_scope
from storage.models import SlackUser, TimelineEvent

from .conftest import slash
from .test_cli import run

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
COMPLETE = {
    "summary": "Checkout failed for 30 minutes.", "impact": "12% of orders failed.",
    "users_affected": "about 3,000 buyers", "customer_facing": "yes", "slo_budget_spent": "20% of the month",
    "root_causes": "A pool size change was not load tested.", "trigger": "A config push.",
    "went_wrong": "The dashboard was stale.",
}


def make(engine: Engine, *, resolved: bool = True, narrative: dict | None = None) -> str:
    with session_scope(engine) as s:
        inc = open_incident(s, NewIncident(title="Checkout 500s", detected_at=T0, severity="SEV2", origin="slack",
                                           reporter_id="U0ADA"), announce_channel=None, invite_oncall=False)
        inc.commander_id = "U0ADA"
        s.add_all([SlackUser(user_id="U0ADA", name="Ada Lovelace"), SlackUser(user_id="U0BOB", name="Bob")])
        if resolved:
            apply_signals(s, inc, [Signal("resolve", T0 + timedelta(minutes=30))], strict=False, source="slack")
        if narrative:
            rca.set_narrative(s, inc.ref, narrative)
        return inc.ref


def keys(findings: list[QualityFinding]) -> list[str]:
    return [f.key for f in findings]


def test_quality_check_lists_what_is_missing(engine: Engine) -> None:
    ref = make(engine, resolved=False)
    with session_scope(engine) as s:
        inc = repo.incident_by_ref(s, ref)
        assert inc is not None
        assert keys(rca.quality(s, inc)) == [
            "incident:open", "empty:summary", "empty:impact", "empty:root_causes", "empty:trigger",
            "impact:fields", "empty:lessons"]
        rca.set_narrative(s, ref, COMPLETE)
        item = actions.add_action(s, inc, "Runbook", "process", "low", None, None, None, None)
        found = keys(rca.quality(s, inc))
    # A root cause with only a process action: no corrective/preventive fix; an action with no owner/due.
    assert found == ["incident:open", "capa:none", f"capa:no_owner:{item.id}", f"capa:no_due:{item.id}"]


def test_state_machine_final_refused_until_the_check_passes(engine: Engine) -> None:
    ref = make(engine, narrative=COMPLETE)
    with session_scope(engine) as s:
        with pytest.raises(rca.RcaError, match="put it in review first"):
            rca.set_status(s, ref, "final")
        with pytest.raises(rca.RcaError, match="name a reviewer"):
            rca.set_status(s, ref, "review")
    with session_scope(engine) as s:
        assert rca.set_status(s, ref, "review", reviewers=["U0BOB"], authors=["U0ADA"], actor="U0ADA")[0] == "review"
    with session_scope(engine) as s:
        with pytest.raises(rca.RcaError, match="no corrective or preventive action"):
            rca.set_status(s, ref, "final")
        inc = repo.incident_by_ref(s, ref)
        assert inc is not None
        actions.add_action(s, inc, "Load test pool changes", "corrective", "high", "U0BOB", date(2026, 12, 4),
                           None, None)
    with session_scope(engine) as s:
        assert rca.set_status(s, ref, "final", actor="U0ADA") == ("final", [])
    with session_scope(engine) as s:
        with pytest.raises(rca.RcaError, match="is final; reopen it first"):
            rca.set_narrative(s, ref, {"lucky": "x"})
        text = rca.export_rca(s, ref, "md").text
    assert "| Document status | Final |" in text and "| Reviewers | Bob |" in text
    assert "| Authors | Ada Lovelace |" in text
    assert "Before this RCA can be final" not in text
    with session_scope(engine) as s:
        assert rca.set_status(s, ref, "draft")[0] == "draft"
        rca.set_narrative(s, ref, {"lucky": "Low traffic."})


def test_override_is_recorded_on_the_timeline(engine: Engine) -> None:
    ref = make(engine, narrative={"summary": "Short."})
    with session_scope(engine) as s:
        rca.set_status(s, ref, "review", reviewers=["U0BOB"])
    with session_scope(engine) as s:
        status, open_findings = rca.set_status(s, ref, "final", actor="U0ADA", override="tracked in OPS-12")
    assert status == "final" and "empty:impact" in keys(open_findings)
    with session_scope(engine) as s:
        rows = s.execute(select(TimelineEvent.text).where(TimelineEvent.kind == "rca_status")).scalars().all()
        text = rca.export_rca(s, ref, "md").text
    assert any("reason: tracked in OPS-12" in r for r in rows)
    assert "| Document status | Final (signed off with open findings: tracked in OPS-12) |" in text
    assert "RCA status: final" in text  # in the appendix


@given(st.sampled_from(["draft", "review", "final"]), st.sampled_from(["draft", "review", "final", "closed"]),
       st.booleans(), st.booleans(), st.booleans())
def test_state_machine_property(current: str, wanted: str, reviewer: bool, findings: bool, override: bool) -> None:
    """Every move is either the documented one or refused with a reason; final never without a passing
    check or a reason; never from draft."""
    f = [QualityFinding("empty:summary", "Summary is empty")] if findings else []
    try:
        new = next_status(current, wanted, reviewers=["U0BOB"] if reviewer else [], findings=f,
                          override="because" if override else None)
    except ReviewError as exc:
        assert str(exc)
        return
    assert new == wanted != current
    if new == "final":
        assert current == "review" and (not findings or override)
    if new == "review":
        assert current == "draft" and reviewer


def test_blameless_check_flags_the_person_it_is_pinned_on(engine: Engine) -> None:
    ref = make(engine, narrative={"went_wrong": "Bob made a human error and should have checked.",
                                  "went_well": "Bob found the alias change within minutes."})
    with session_scope(engine) as s:
        inc = repo.incident_by_ref(s, ref)
        assert inc is not None
        actions.add_action(s, inc, "x", "corrective", "high", "U0BOB", None, None, None)  # Bob is a participant
        findings, _ = rca.check_language(s, ref)
    phrases = [(f.field, f.phrase) for f in findings]
    assert ("went_wrong", "Bob") in phrases and ("went_wrong", "human error") in phrases
    assert not any(field == "went_well" for field, _ in phrases), "naming a person without blame is fine"


def test_blameless_names_are_case_sensitive_and_need_a_blame_phrase() -> None:
    people = name_variants(["will", "Ada Lovelace"])
    assert {"Ada Lovelace", "Ada", "will", "Will"} <= people
    assert [f.phrase for f in check({"went_wrong": "The alert will fire; it should have fired."},
                                    people=people)] == ["should have"]
    assert [f.phrase for f in check({"went_wrong": "Ada made a human error."}, people=people)] == [
        "Ada", "human error"]
    # A rule that already names the person ("Ada forgot to") is one finding, not two.
    assert [f.phrase for f in check({"went_wrong": "Ada forgot to run it."}, people=people)] == ["Ada forgot to"]


def test_cli_status_refused_then_overridden(engine: Engine, db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ref = make(engine, narrative={"summary": "Short."})
    env = {"DATABASE_URL": db_url}
    r = run(["rca", ref, "--status", "final", "--quiet"], env, tmp_path)
    assert r.returncode == 1 and "put it in review first" in r.stderr and "Traceback" not in r.stderr
    r = run(["rca", ref, "--status", "review", "--reviewer", "u0bob", "-o", str(tmp_path / "r.md")], env, tmp_path)
    assert r.returncode == 0 and "RCA is now review" in r.stderr
    md = (tmp_path / "r.md").read_text()
    assert "| Document status | In review |" in md and "Before this RCA can be final" in md
    r = run(["rca", ref, "--status", "final"], env, tmp_path)
    assert r.returncode == 1 and "the RCA is not ready: " in r.stderr and "Impact is empty" in r.stderr
    r = run(["rca", ref, "--status", "final", "--override", "postmortem meeting agreed", "--quiet"], env, tmp_path)
    assert r.returncode == 0 and "| Document status | Final (signed off with open findings" in r.stdout
    assert run(["rca", ref, "--override", "x"], env, tmp_path).returncode == 2


def test_slack_rca_status_command(bot, slack) -> None:  # type: ignore[no-untyped-def]
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob")):
        slack.add_user(uid, name, f"{name}@example.com")
    slash(bot, "declare Queue backlog growing")
    bot.drain()
    with Session(bot.rt.engine) as s:
        ch = repo.incident_by_ref(s, "INC-1").slack_channel_id  # type: ignore[union-attr]
    assert "Usage" in slash(bot, "rca status sideways", channel=ch).json()["text"]
    assert "name a reviewer" in slash(bot, "rca status review", channel=ch).json()["text"]
    assert "in review by <@U0BOB>" in slash(bot, "rca status review <@U0BOB|bob>", channel=ch).json()["text"]
    refused = slash(bot, "rca status final", channel=ch).json()["text"]
    assert "not ready" in refused and "not resolved" in refused
    ok = slash(bot, "rca status final override agreed in the review meeting", channel=ch).json()["text"]
    assert "is final" in ok and "open finding" in ok
    with Session(bot.rt.engine) as s:
        info = rca.review_info(s, repo.incident_by_ref(s, "INC-1"))  # type: ignore[arg-type]
    assert (info.status, info.reviewers, info.authors, info.override_reason) == (
        "final", ("U0BOB",), ("U0ADA",), "agreed in the review meeting")
