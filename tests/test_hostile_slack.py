"""Hostile and careless input through Slack (issue 10, items 1-4, 7, 10), over signed HTTP to the real app.

Outcomes are read from their effects (database rows, stand-in Slack messages after ``bot.drain()``); where a
test must read a command's own answer it goes through :func:`reply`, the one place that knows where the
answer comes back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core.naming import channel_name
from incident_bot.core.text import units
from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.slack.mrkdwn import escape
from storage.models import ActionItem, InboxDelivery, Incident, TimelineEvent

from .conftest import slack_event, slack_interaction, slash, start_bot

HTTP_EXAMPLES = settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "12")), deadline=None,
                         derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Text people type: letters, the three characters Slack escapes, emoji (astral, ZWJ, flags), bidi controls.
typed = st.lists(st.one_of(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                           st.sampled_from([*"&<>%'\"*_~`|", "👩‍💻", "🇩🇪", "👍🏽", "\u202e", "\x00"])),
                 min_size=1, max_size=40).map("".join)


def reply(response) -> str:  # type: ignore[no-untyped-def]
    """The command's answer to the user: the ack's text, or what the fold worker sent to its response_url."""
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return str(response.json().get("text") or "")


def incidents(bot) -> list[Incident]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return list(s.execute(select(Incident).order_by(Incident.number)).scalars())


def rows(bot, kind: str | None = None) -> list[TimelineEvent]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        stmt = select(TimelineEvent).order_by(TimelineEvent.occurred_at, TimelineEvent.id)
        found = list(s.execute(stmt).scalars())
    return [r for r in found if kind is None or r.kind == kind]


def declare(bot, title_as_slack_sends: str, user: str = "U0ADA") -> Incident:  # type: ignore[no-untyped-def]
    before = len(incidents(bot))
    reply(slash(bot, f"declare {title_as_slack_sends}", user=user))
    bot.drain()
    now = incidents(bot)
    assert len(now) == before + 1
    return now[-1]


def join(bot, channel: str, user: str) -> None:  # type: ignore[no-untyped-def]
    assert slack_event(bot, {"type": "member_joined_channel", "user": user, "channel": channel}).status_code == 200


def posted_md(bot, channel: str) -> str:  # type: ignore[no-untyped-def]
    """Every mrkdwn text the bot posted to a channel, as Slack received it."""
    return json.dumps(bot.slack.messages(channel), ensure_ascii=False)


@pytest.fixture
def people(slack):  # type: ignore[no-untyped-def]
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob"), ("U0EVE", "eve")):
        slack.add_user(uid, name, f"{name}@example.com")
    return slack


# -- item 1: one escaping model ------------------------------------------------------------------------

def test_declared_title_is_plain_everywhere(bot, people, db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    inc = declare(bot, "Error rate &gt; 5% on R&amp;D <!channel>")
    assert inc.title == "Error rate > 5% on R&D @channel"
    assert inc.slack_channel_name == "inc-1-error-rate-5-on-r-d-channel"
    intro = posted_md(bot, inc.slack_channel_id)
    assert "Error rate &gt; 5% on R&amp;D" in intro and "&amp;gt;" not in intro and "<!channel>" not in intro
    out = subprocess.run([sys.executable, "-m", "incident_bot", "rca", "INC-1", "--format", "html"],
                         env={**os.environ, "DATABASE_URL": db_url}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-500:]
    assert "Error rate &gt; 5% on R&amp;D" in out.stdout and "&amp;gt;" not in out.stdout


def test_mentions_and_links_typed_in_update_and_note_stay_live(bot, people, db_url) -> None:  # type: ignore[no-untyped-def]
    inc = declare(bot, "Queue backlog")
    typed_md = "ask <@U0BOB|bob> about <https://grafana.example/d?a=1&amp;b=2|the dashboard> &amp; <!here>"
    reply(slash(bot, f"update {typed_md}", channel=inc.slack_channel_id))
    reply(slash(bot, f"note {typed_md}", channel=inc.slack_channel_id))
    bot.drain()
    update = next(m for m in bot.slack.messages(inc.slack_channel_id) if "Status update" in json.dumps(m))
    text = json.dumps(update)
    assert "<@U0BOB|bob>" in text and "<https://grafana.example/d?a=1&amp;b=2|the dashboard>" in text
    assert "&amp;amp;" not in text and "<!here>" not in text and "@here" in text
    note = rows(bot, "note")[0]
    assert note.text.startswith("ask <@U0BOB|bob> about <https://")
    # JSON and the RCA show what people meant, unescaped once.
    detail = subprocess.run([sys.executable, "-m", "incident_bot", "incidents", "show", "INC-1", "--format", "json"],
                            env={**os.environ, "DATABASE_URL": db_url},
                            capture_output=True, text=True, timeout=60)
    assert detail.returncode == 0, detail.stderr[-500:]
    texts = [e["text"] for e in json.loads(detail.stdout)["timeline"] if e["kind"] == "note"]
    assert texts == ["ask @bob about the dashboard (https://grafana.example/d?a=1&b=2) & @here"]


@given(title=typed)
@HTTP_EXAMPLES
def test_any_title_round_trips_once_escaped(bot, people, title) -> None:  # type: ignore[no-untyped-def]
    """Whatever a person types, Slack sends it escaped; the bot stores what they meant, names the channel
    from it, and shows it escaped exactly once."""
    meant = " ".join("".join(c for c in title if c not in BIDI and c != "\x00").split())
    if not meant:
        return  # an empty title opens the form
    inc = declare(bot, escape(title))
    assert inc.title == meant
    assert inc.slack_channel_name == channel_name(inc.number, meant)
    shown = posted_md(bot, inc.slack_channel_id)
    assert json.dumps(escape(meant), ensure_ascii=False)[1:-1] in shown


def test_shortcut_prefill_is_plain_text(bot, people) -> None:  # type: ignore[no-untyped-def]
    payload = {"type": "message_action", "callback_id": "declare_incident_shortcut", "trigger_id": "1.2.3",
               "team": {"id": "T0STANDIN"}, "user": {"id": "U0ADA"}, "channel": {"id": "C0GENERAL"},
               "message": {"ts": "1700000000.000100", "text": "p99 &gt; 2s on <@U0BOB|bob>'s R&amp;D box \u202e"},
               "api_app_id": "A0STANDIN"}
    assert slack_interaction(bot, payload).status_code == 200
    opened = bot.slack.wait_for(lambda: bot.slack.calls("views.open"))
    view = opened[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    title = view["blocks"][0]["element"]["initial_value"]
    assert title == "p99 > 2s on @bob's R&D box"


# -- item 2: the clock rule, and no announcement of a change that was not made --------------------------

@pytest.mark.parametrize("future", ["9999-12-31T23:59:59Z", "2999-01-01T00:00:00+05:00"])
def test_future_pagerduty_times_are_clamped_and_commands_really_act(bot, people, future) -> None:  # type: ignore[no-untyped-def]
    data = pd.incident_data("PDFUTURE")
    data["created_at"] = future
    doc = pd.delivery("incident.triggered", data)
    doc["event"]["occurred_at"] = future
    assert bot.send_pd(doc).status_code == 202
    prio = pd.delivery("incident.priority_updated", pd.incident_data("PDFUTURE", priority="P4"))
    prio["event"]["occurred_at"] = future
    assert bot.send_pd(prio).status_code == 202
    bot.drain()
    inc = incidents(bot)[0]
    assert inc.detected_at.year < 2100
    assert any("ahead of our clock" in r.text for r in rows(bot, "clock_clamped"))
    join(bot, inc.slack_channel_id, "U0ADA")
    reply(slash(bot, "sev 1", channel=inc.slack_channel_id))
    reply(slash(bot, "resolve fixed", channel=inc.slack_channel_id))
    bot.drain()
    inc = incidents(bot)[0]
    assert (inc.severity, inc.status) == ("SEV1", "resolved")
    shown = posted_md(bot, inc.slack_channel_id)
    assert "Resolved by" in shown and "SEV1" in shown


@given(ahead_s=st.integers(61, 10**9))
@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_source_time_freezes_an_incident(bot, people, ahead_s) -> None:  # type: ignore[no-untyped-def]
    n = len(incidents(bot)) + 1
    pd_id = f"PDAHEAD{n}"
    when = datetime.fromtimestamp(min(datetime.now(UTC).timestamp() + ahead_s, 253402300000), UTC)
    for kind in ("incident.triggered", "incident.resolved"):
        doc = pd.delivery(kind, pd.incident_data(pd_id, created_at=when), occurred_at=when)
        assert bot.send_pd(doc).status_code == 202
    bot.drain()
    inc = incidents(bot)[-1]
    assert inc.status == "resolved"
    join(bot, inc.slack_channel_id, "U0ADA")
    reply(slash(bot, "reopen", channel=inc.slack_channel_id))
    bot.drain()
    assert incidents(bot)[-1].status != "resolved"


# -- items 3 and 4: RCA edits --------------------------------------------------------------------------

def _rca_view(bot) -> dict:  # type: ignore[no-untyped-def, type-arg]
    opened = bot.slack.wait_for(lambda: bot.slack.calls("views.open"))
    view = opened[-1].params["view"]
    return json.loads(view) if isinstance(view, str) else view


def _submit_rca(bot, view: dict, user: str, changes: dict[str, str]):  # type: ignore[no-untyped-def, type-arg]
    values = {b["block_id"]: {"value": {"type": "plain_text_input", "value": b["element"].get("initial_value")}}
              for b in view["blocks"] if b["type"] == "input"}
    for key, value in changes.items():
        values[key]["value"]["value"] = value
    payload = {"type": "view_submission", "team": {"id": "T0STANDIN"}, "user": {"id": user},
               "api_app_id": "A0STANDIN", "trigger_id": "1.2.3",
               "view": {"id": "V1", "callback_id": "rca_edit", "private_metadata": view["private_metadata"],
                        "state": {"values": values}, "type": "modal"}}
    return slack_interaction(bot, payload)


def test_rca_commands_and_form_are_for_members_only(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declare(bot, "Login failures")
    assert slash(bot, "rca edit", channel=inc.slack_channel_id).status_code == 200  # ada declared: a member
    view = _rca_view(bot)
    assert "Only members" in reply(slash(bot, "rca edit", user="U0EVE", channel=inc.slack_channel_id))
    assert "Only members" in reply(slash(bot, "rca", user="U0EVE", channel=inc.slack_channel_id))
    # A forged (or stale: the user left the channel) submission is acked, then refused by the fold.
    assert _submit_rca(bot, view, "U0EVE", {"summary": "written by an outsider"}).status_code == 200
    bot.drain()
    assert len(bot.slack.calls("views.open")) == 1 and not bot.slack.files()
    assert (incidents(bot)[0].rca or {}).get("summary") is None
    with Session(bot.rt.engine) as s:
        assert "refused" in set(s.execute(select(InboxDelivery.outcome)).scalars())
    assert _submit_rca(bot, view, "U0ADA", {"summary": "Sessions expired early."}).status_code == 200
    bot.drain()
    assert incidents(bot)[0].rca["summary"] == "Sessions expired early."


def test_rca_form_writes_only_changed_fields_and_never_cuts(bot, people, db_url) -> None:  # type: ignore[no-untyped-def]
    inc = declare(bot, "Disk full")
    long_text = "🔥 timeline detail. " * 400  # over 3,000 characters (and more in UTF-16 units)
    with Session(bot.rt.engine) as s:
        row = s.get(Incident, inc.id)
        row.rca = {"root_causes": long_text, "impact": "Writes failed."}
        s.add(row)
        s.commit()
    assert slash(bot, "rca edit", channel=inc.slack_channel_id).status_code == 200
    view = _rca_view(bot)
    by_id = {b["block_id"]: b for b in view["blocks"]}
    assert by_id["root_causes"]["type"] == "context"
    assert "--set-file root_causes=" in json.dumps(by_id["root_causes"])
    # Someone edits "impact" after the form opened; this user changes only the summary.
    with Session(bot.rt.engine) as s:
        row = s.get(Incident, inc.id)
        row.rca = {**row.rca, "impact": "Writes failed for 12 minutes."}
        s.add(row)
        s.commit()
    assert _submit_rca(bot, view, "U0ADA", {"summary": "The data disk filled."}).status_code == 200
    bot.drain()
    rca = incidents(bot)[0].rca
    assert rca["root_causes"] == long_text
    assert rca["impact"] == "Writes failed for 12 minutes."
    assert rca["summary"] == "The data disk filled."


# -- items 7 and 10: validated in words, never a 503 ---------------------------------------------------

def test_careless_commands_are_answered_in_words(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declare(bot, "Cache misses")
    ch = inc.slack_channel_id
    assert "10 years" in reply(slash(bot, "action Rotate keys due in 99999999999 weeks", channel=ch))
    assert "timeline" in reply(slash(bot, "timeline " + "9" * 5000, channel=ch))
    assert "Usage" in reply(slash(bot, "role commander <@U" + "A" * 41 + ">", channel=ch))
    assert "characters" in reply(slash(bot, "declare " + "t" * 5000))
    assert "characters" in reply(slash(bot, "note " + "😀" * 1500, channel=ch))  # 3,000 units
    reply(slash(bot, "note nul\x00 and \x07bell and \u202eevil", channel=ch))
    reply(slash(bot, "action Fix\x00 the\u202e alert", channel=ch))
    reply(slash(bot, "declare Null\x00 title\u2066"))
    bot.drain()
    assert [r.text for r in rows(bot, "note")] == ["nul and bell and evil"]
    with Session(bot.rt.engine) as s:
        assert [a.title for a in s.execute(select(ActionItem)).scalars()] == ["Fix the alert"]
    assert [i.title for i in incidents(bot)] == ["Cache misses", "Null title"]
    assert incidents(bot)[0].commander_id == "U0ADA"  # the refused role change changed nothing


@given(text=typed, sub=st.sampled_from(["note", "update", "action", "mitigated", "page", "started", "declare"]))
@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "25")), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_typed_text_reaches_the_database_raw(bot, people, text, sub) -> None:  # type: ignore[no-untyped-def]
    if not incidents(bot):
        declare(bot, "Target")
    ch = incidents(bot)[0].slack_channel_id
    r = slash(bot, f"{sub} {escape(text)}", channel=ch)
    assert r.status_code == 200, (r.status_code, r.text[:200])
    bot.drain()
    stored = [r.text for r in rows(bot)] + [i.title for i in incidents(bot)]
    for value in stored:
        assert "\x00" not in value and not set(value) & set(BIDI), value[:80]


def test_declare_form_values_are_validated(bot, people) -> None:  # type: ignore[no-untyped-def]
    def submit(values: dict) -> dict:  # type: ignore[type-arg]
        state = {k: {"value": v if isinstance(v, dict) else {"type": "plain_text_input", "value": v}}
                 for k, v in values.items()}
        payload = {"type": "view_submission", "team": {"id": "T0STANDIN"}, "user": {"id": "U0ADA"},
                   "api_app_id": "A0STANDIN", "trigger_id": "1.2.3",
                   "view": {"id": "V1", "callback_id": "declare_incident", "private_metadata": "",
                            "state": {"values": state}, "type": "modal"}}
        r = slack_interaction(bot, payload)
        assert r.status_code == 200
        return r.json() if r.text else {}

    sev0 = {"type": "static_select", "selected_option": {"value": "SEV0"}}
    assert "severity" in submit({"title": "Bad sev", "severity": sev0}).get("errors", {})
    assert "title" in submit({"title": "x" * 400}).get("errors", {})
    assert "description" in submit({"title": "ok", "description": "🔥" * 2000}).get("errors", {})
    assert incidents(bot) == []
    sev1 = {"type": "static_select", "selected_option": {"value": "SEV1"}}
    assert submit({"title": "Payments \u202edown <!channel> & out", "severity": sev1}) == {}
    bot.drain()
    inc = incidents(bot)[0]
    assert (inc.title, inc.severity) == ("Payments down <!channel> & out", "SEV1")
    assert "Payments down &lt;!channel&gt; &amp; out" in posted_md(bot, inc.slack_channel_id)


def test_emoji_heavy_text_fits_slack_limits(bot, people) -> None:  # type: ignore[no-untyped-def]
    inc = declare(bot, "👩‍💻" * 60)
    reply(slash(bot, "update " + "🇩🇪👍🏽" * 480, channel=inc.slack_channel_id))  # 2,880 units
    bot.drain()
    for m in bot.slack.messages(inc.slack_channel_id) + bot.slack.messages(bot.announce):
        for b in m.get("blocks") or []:
            text = (b.get("text") or {}).get("text", "")
            assert units(text) <= (150 if b["type"] == "header" else 3000)
            assert "\ufffd" not in text
    assert not [c for c in bot.slack.calls("chat.postMessage") if c.status != 200]


# -- item 10: team templates have a render budget ------------------------------------------------------

def test_a_runaway_team_template_fails_fast_and_the_default_renders(db_url, slack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "rca.md.j2").write_text("{{ 'A' * 10**9 }}")
    for uid, name in (("U0ADA", "ada"),):
        slack.add_user(uid, name, f"{name}@example.com")
    b = start_bot(db_url, slack, rca_templates_dir=str(tmp_path))
    try:
        inc = declare(b, "Template test")
        reply(slash(b, "rca", channel=inc.slack_channel_id))
        b.drain()
        files = slack.files()
        assert files and "Template test" in (files[-1].content or b"").decode()
        comment = json.dumps(slack.messages(inc.slack_channel_id))
        assert "Template" in comment and "1,000,000" in comment
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()
