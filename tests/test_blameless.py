"""The blameless-language checker: hits, non-hits, team extensions, and the export's use of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from incident_bot.core.blameless import check, load_rules, parse_rules
from incident_bot.usecases import rca
from incident_bot.usecases.incidents import NewIncident, open_incident
from storage.db import session_scope
from storage.models import SlackUser

HITS = [
    ("Bob should have checked the flag before deploying.", "should have"),
    ("This was human error.", "human error"),
    ("The outage was caused by Bob.", "caused by Bob"),
    ("It was triggered by Dave Smith deploying on a Friday.", "triggered by Dave Smith"),
    ("The rollout broke because Alice pushed an untested config.", "because Alice pushed"),
    ("<@U024BE7LH> failed to run the migration.", "<@U024BE7LH> failed to"),
    ("The engineer forgot to drain the node.", "The engineer forgot to"),
    ("Carol forgot the feature flag.", "Carol forgot"),
    ("It was the fault of the on-call.", "fault of"),
    ("Honestly it was Bob's fault.", "Bob's fault"),
    ("A careless change to the load balancer.", "careless"),
    ("The review was negligent.", "negligent"),
    ("We should not blame the new hire.", "blame"),
    ("The operator shouldn't have restarted both nodes.", "shouldn't have"),
    ("Someone did not test the rollback.", "Someone did not test"),
]
NON_HITS = [
    "The deploy script did not check the flag.",
    "The job failed to start after the upgrade.",
    "It was caused by Kafka rebalancing under load.",
    "It was caused by a bad config push.",
    "Terraform failed to acquire the state lock.",
    "We run blameless postmortems.",
    "Detection was triggered by PagerDuty.",
    "The health check should alert sooner.",
    "A fault-tolerant design would have absorbed it.",
    "The incident started on Monday at 14:02 UTC.",
]


@pytest.mark.parametrize(("sentence", "phrase"), HITS)
def test_hits(sentence: str, phrase: str) -> None:
    findings = check({"root_causes": sentence})
    assert [(f.field, f.sentence, f.phrase) for f in findings] == [("root_causes", sentence, phrase)]
    assert findings[0].suggestion


@pytest.mark.parametrize("sentence", NON_HITS)
def test_non_hits(sentence: str) -> None:
    assert check({"summary": sentence}) == []


def test_sentences_fields_and_one_finding_per_phrase() -> None:
    narrative = {
        "summary": "Checkout failed for an hour. Bob should have checked. The alert fired.",
        "went_wrong": ["The dashboard was stale", "It was human error"],
        "links": "human error https://example.com/human-error",  # not narrative prose: not checked
    }
    findings = check(narrative)
    assert [(f.field, f.sentence, f.phrase) for f in findings] == [
        ("summary", "Bob should have checked.", "should have"),
        ("went_wrong", "It was human error", "human error"),
    ]
    assert findings[0].format().startswith('summary: "Bob should have checked." — "should have": Hindsight')


def test_known_people_are_recognised_even_lowercase() -> None:
    sentence = "It broke because jdoe pushed the config."
    assert check({"summary": sentence}) == []  # a lowercase handle is not a capitalised name...
    assert [f.phrase for f in check({"summary": sentence}, people=["jdoe"])] == ["because jdoe pushed"]


def test_team_file_extends_the_defaults(tmp_path: Path) -> None:
    extra = tmp_path / "words.txt"
    extra.write_text(
        "# our words\ncowboy(?:ed)?\tDescribe the missing review step.\n"
        "bad[pattern\tbroken rule\nno tab here\n!notperson Bob\n"
    )
    rules = load_rules(str(extra))
    assert any("words.txt:3: bad pattern" in p for p in rules.problems)
    assert any("words.txt:4: expected PATTERN<TAB>SUGGESTION" in p for p in rules.problems)
    found = check({"summary": "The change was cowboyed into prod. Human error, again."}, rules=rules)
    assert [(f.phrase, f.suggestion) for f in found] == [
        ("cowboyed", "Describe the missing review step."),
        ("Human error", found[1].suggestion),  # the defaults still apply
    ]
    assert check({"summary": "It was caused by Bob."}, rules=rules) == []  # the team said Bob is a system
    missing = load_rules(str(tmp_path / "missing.txt"))
    assert missing.problems and "BLAMELESS_WORDS_FILE" in missing.problems[0] and missing.rules


def test_parse_rules_format() -> None:
    rules = parse_rules("# comment\n\nfoo\tbar\n!notperson Foo Baz\n")
    assert [(r.pattern, r.suggestion) for r in rules.rules] == [("foo", "bar")]
    assert rules.not_people == {"Foo", "Baz"} and rules.problems == ()


def test_check_language_uses_the_incident_people(engine: Engine) -> None:
    with session_scope(engine) as s:
        inc = open_incident(
            s,
            NewIncident(
                title="Login errors",
                detected_at=datetime(2026, 11, 26, tzinfo=UTC),
                severity="SEV2",
                origin="slack",
                reporter_id="U0JDOE",
            ),
            announce_channel=None,
            invite_oncall=False,
        )
        s.add(SlackUser(user_id="U0JDOE", name="jdoe"))
        ref = inc.ref
        rca.set_narrative(
            s,
            ref,
            {
                "trigger": "It started because jdoe pushed the config.",
                "summary": "Login failed for 20 minutes.",
            },
        )
    with session_scope(engine) as s:
        findings, problems = rca.check_language(s, ref)
    assert problems == []
    assert [(f.field, f.phrase) for f in findings] == [("trigger", "because jdoe pushed")]
