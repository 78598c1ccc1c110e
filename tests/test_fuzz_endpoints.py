"""Hostile input against the real app over HTTP: mutated PagerDuty deliveries and random Slack requests.

The promises: never a 5xx (PagerDuty would redeliver a poisoned delivery forever, Slack shows "failed"),
a request that is not signed, or not valid, writes nothing, and the Slack stand-in never crashes on what
the bot sends it afterwards. SQLite is enough here; nasty strings also go through PostgreSQL once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (every table in SQLModel.metadata)
from incident_bot.core.text import clean
from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.demo.slack_requests import FORM, signed, slash_body
from incident_bot.pagerduty.signature import sign
from incident_bot.pipeline.rate_limits import RateGate
from storage.models import InboxDelivery, Incident

from .conftest import PD_SECRET, SLACK_SECRET, start_bot

# CI runs a fixed, reproducible set of examples; FUZZ_EXAMPLES=2000 FUZZ_RANDOM=1 hunts further by hand.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=not os.environ.get("FUZZ_RANDOM"), database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
MAX_BODY = 256 * 1024
OBSERVED: dict[str, Counter[str]] = {}  # what the app answered, per kind of input (printed at the end)


def observe(kind: str, status: int) -> None:
    OBSERVED.setdefault(kind, Counter())[str(status)] += 1


@pytest.fixture(scope="module", autouse=True)
def report_observed():  # type: ignore[no-untyped-def]
    yield
    for kind, counts in sorted(OBSERVED.items()):
        print(f"fuzz: {kind}: {dict(counts)}")


@pytest.fixture
def fuzz_bot(sqlite_url, slack):  # type: ignore[no-untyped-def]
    b = start_bot(sqlite_url, slack, scheduler_enabled=False)
    b.rt.worker.gate = RateGate({})  # random declares open many channels; pacing is not under test here
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob")):
        slack.add_user(uid, name, f"{name}@example.com")
    try:
        yield b
        # After the garbage, a real delivery still opens an incident and reaches Slack.
        doc = pd.delivery("incident.triggered", pd.incident_data("PDCANARY", title="Canary after fuzzing"))
        assert b.send_pd(doc).status_code == 202
        b.drain(30)
        with b.rt.engine.connect() as conn:
            channel = conn.execute(select(Incident.slack_channel_id)
                                   .where(Incident.pagerduty_incident_id == "PDCANARY")).scalar_one()
        assert channel and slack.messages(channel), "the canary incident has its channel and intro"
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()
    assert slack.crashes() == [], slack.crashes()[:1]


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in SQLModel.metadata.sorted_tables}


def settled_counts(bot) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Row counts once earlier inputs' background work (the outbox) is done: only this input moves them."""
    bot.drain(30)
    return row_counts(bot.rt.engine)


# -- PagerDuty: real deliveries, then mutated ---------------------------------------------------------

PD_IDS = ["PDFUZZ1", "PDFUZZ2", "PDFUZZ3"]
EVENT_TYPES = ["incident.triggered", "incident.acknowledged", "incident.unacknowledged",
               "incident.resolved", "incident.reopened", "incident.escalated", "incident.reassigned",
               "incident.delegated", "incident.priority_updated", "incident.responder.added",
               "incident.custom_field_values.updated", "service.updated", "pagey.ping"]
NASTY = ["", " ", "\x00", "nul\x00inside", "\ud800", "\udfff lone", "<!channel> <!here> <@U0ADA>",
         "&lt;script&gt;<script>alert(1)</script>", "\u202eRTL override", "🔥" * 50,
         "\uff46\uff55\uff4c\uff4c", "\\", "'; DROP TABLE incidents; --", "null", "NaN", "1e309", "-0",
         "\uff12\uff10\uff12\uff16-11-26"]
BAD_TIMES = ["", "yesterday", "2026-13-45T99:99:99Z", "2026-11-26T14:00:00", "2026-11-26",
             "0000-00-00T00:00:00Z", "+275760-09-13T00:00:00Z", "9999-12-31T23:59:59.999999-23:59",
             "2026-11-26T14:00:00+25:00",
             "1970-01-01T00:00:00Z", "2026-11-26T14:00:00.123456789123Z", "2026-W48-4T14:00Z", "T", "Z"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40), st.sampled_from(NASTY),
    st.sampled_from(BAD_TIMES), st.integers(1000, 70_000).map(lambda n: "ä" * n),
)
garbage = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def base_delivery(event_type: str, pd_id: str, event_id: str) -> dict[str, Any]:
    if event_type == "incident.annotated":
        return pd.delivery(event_type, pd.note_data(pd_id, "a note"), event_id=event_id)
    if event_type == "incident.status_update_published":
        data = {"incident": pd.note_data(pd_id, "")["incident"], "id": "PSU1", "message": "Investigating",
                "type": "incident_status_update"}
        return pd.delivery(event_type, data, event_id=event_id)
    return pd.delivery(event_type, pd.incident_data(pd_id, title=f"Fuzzed {pd_id}"), event_id=event_id)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


def at_path(doc: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    for key in path[:-1]:
        doc = doc[key]
    return doc, path[-1]


@st.composite
def pd_bodies(draw: st.DrawFn) -> bytes:
    """A real delivery, mutated: dropped keys, wrong types, nulls, huge or hostile strings, bad times."""
    kind = draw(st.sampled_from(["mutated"] * 8 + ["raw"]))
    if kind == "raw":
        return draw(st.one_of(
            st.binary(max_size=200), st.sampled_from([b"", b"null", b"[]", b'"event"', b'{"event": []}',
                                                       b"{" * 5000, b"[" * 100_000 + b"]" * 100_000,
                                                       b'{"event": {"id": 1' + b"0" * 5000 + b"}}",
                                                       b'{"event": {"id": "x", "event_type": "\xff\xfe"}}']),
            garbage.map(lambda g: json.dumps(g).encode())))
    event_type = draw(st.sampled_from([*EVENT_TYPES, "incident.annotated",
                                       "incident.status_update_published"]))
    doc = base_delivery(event_type, draw(st.sampled_from(PD_IDS)), str(draw(st.uuids())))
    for _ in range(draw(st.integers(0, 4))):
        if not paths(doc) or not isinstance(doc.get("event"), dict):
            break
        path = draw(st.sampled_from(paths(doc)))
        parent, key = at_path(doc, path)
        op = draw(st.sampled_from(["drop", "replace", "replace", "nasty", "nasty", "time", "type"]))
        if op == "drop" and isinstance(parent, dict):
            del parent[key]
        elif op == "nasty":  # hostile text where text is expected (title, note, agent, ids...)
            nasty = draw(st.sampled_from(NASTY))
            parent[key] = f"{parent[key]}{nasty}" if isinstance(parent[key], str) else nasty
        elif op == "time":
            doc["event"]["occurred_at" if draw(st.booleans()) else "id"] = draw(st.sampled_from(BAD_TIMES))
            if isinstance(doc["event"].get("data"), dict):
                doc["event"]["data"]["created_at"] = draw(st.sampled_from(BAD_TIMES))
        elif op == "type":
            doc["event"]["event_type"] = draw(st.one_of(st.sampled_from(EVENT_TYPES), st.text(max_size=70),
                                                        garbage))
        else:
            parent[key] = draw(garbage)
    return json.dumps(doc).encode()


def sign_slack(raw: bytes, secret: str, timestamp: int | None = None) -> dict[str, Any]:
    """Slack's v0 signature over raw bytes (the sdk's helper only takes UTF-8 text)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={mac}"}


def header_value(raw: bytes) -> bytes:
    """Bytes HTTP allows in a header value (visible ASCII and obs-text), at least one non-ASCII."""
    return bytes(b for b in raw if 0x21 <= b <= 0x7E or b >= 0x80) + b"\xe9"


SIGNING = ["valid", "valid", "rotated", "missing", "wrong_secret", "tampered", "garbage", "bytes"]


@given(body=pd_bodies(), signing=st.sampled_from(SIGNING),
       header_text=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
       header_bytes=st.binary(min_size=1, max_size=40))
@FUZZ
def test_pagerduty_webhook_never_5xx_and_writes_nothing_invalid(fuzz_bot, body, signing, header_text,
                                                                 header_bytes) -> None:  # type: ignore[no-untyped-def]
    headers: dict[str, Any] = {"Content-Type": "application/json", "X-Webhook-Id": str(uuid.uuid4())}
    if signing == "valid":
        headers["X-PagerDuty-Signature"] = sign(body, PD_SECRET)
    elif signing == "rotated":
        headers["X-PagerDuty-Signature"] = f"v1=00ff,{sign(body, PD_SECRET)}"
    elif signing == "wrong_secret":
        headers["X-PagerDuty-Signature"] = sign(body, "not-the-secret")
    elif signing == "tampered":
        headers["X-PagerDuty-Signature"] = sign(body, PD_SECRET)
        body = body + b" "
    elif signing == "garbage":
        headers["X-PagerDuty-Signature"] = "v1=" + header_text
    elif signing == "bytes":  # what a broken proxy sends: Latin-1 bytes the server decodes as such
        headers["X-PagerDuty-Signature"] = b"v1=" + header_value(header_bytes)
    is_signed = signing in ("valid", "rotated")
    before = settled_counts(fuzz_bot)
    r = fuzz_bot.http.post(f"{fuzz_bot.url}/pagerduty/webhook", content=body, headers=headers)
    observe(f"pagerduty {'signed' if is_signed else 'unsigned'}", r.status_code)
    if len(body) > MAX_BODY:
        assert r.status_code == 413
    elif not is_signed:
        assert r.status_code == 401, (r.status_code, r.text[:300])
    else:
        assert r.status_code in (202, 400), (r.status_code, r.text[:300])
    if r.status_code != 202:
        assert settled_counts(fuzz_bot) == before, "a refused delivery writes nothing"
        return
    event_id = json.loads(body)["event"]["id"]
    with fuzz_bot.rt.engine.connect() as conn:
        ids = set(conn.execute(select(InboxDelivery.event_id)).scalars())
    # Stored as the parser cleans text: no NUL, no lone surrogates, trimmed, at most 255 characters.
    stored_id = str(event_id).replace("\x00", "").encode("utf-8", "replace").decode().strip()[:255]
    assert stored_id in ids, "an accepted delivery is in the inbox"


@pytest.mark.postgres
@pytest.mark.parametrize("nasty", ["nul\x00inside", "\ud800 lone surrogate", "🔥 <!channel>"])
def test_nasty_strings_on_postgresql_are_not_a_5xx(pg_url, slack, nasty) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL refuses NUL in text, and nobody stores a lone surrogate: 4xx or stored, never 5xx."""
    b = start_bot(pg_url, slack, scheduler_enabled=False)
    try:
        data = pd.incident_data("PDNASTY", title=f"title {nasty}", service_name=nasty)
        docs = [pd.delivery("incident.triggered", data, agent=nasty),
                pd.delivery("incident.annotated", pd.note_data("PDNASTY", nasty)),
                pd.delivery("incident.acknowledged", data, event_id=f"ev-{nasty}")]
        statuses = [b.send_pd(doc).status_code for doc in docs]
        assert set(statuses) <= {202, 400}, statuses
        b.drain()
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()
    assert slack.crashes() == []


# -- Slack: slash commands, events, interactions --------------------------------------------------------

SUBCOMMANDS = ["declare", "status", "sev", "role", "ack", "mitigated", "resolve", "reopen", "started",
               "update", "note", "timeline", "page", "help", "rca", "action", "actions", "close", "",
               "DECLARE", "Sev"]
ARGS = st.one_of(
    # Slack sends UTF-8 form fields: no lone surrogates (they cannot be encoded), anything else goes.
    st.just(""), st.text(max_size=60),
    st.sampled_from(NASTY).map(lambda t: t.encode("utf-8", "replace").decode()),
    st.sampled_from(["<!channel>", "<!here|here>", "<@U0BOB>", "<@U0BOB|bob>", "commander <@U0BOB>",
                     "comms <@UNOBODY>", "1", "0", "5", "SEV2", "-1", "99999999999999999999", "14:54",
                     "25m ago", "2026-11-26 14:54", "tomorrow", "2", "page 999", "<#C0GENERAL|general>",
                     "<https://evil.example|click>", "x" * 2900, "y" * 3500, "\n\n\t", "ack resolve"]),
    st.integers(3000, 12_000).map(lambda n: "long " * (n // 5)),
)


@pytest.fixture
def incident_channel(fuzz_bot, slack) -> str:  # type: ignore[no-untyped-def]
    """An incident channel in which U0ADA is a member (and U0BOB is not)."""
    raw, h = signed(slash_body("declare Fuzzing target", user="U0ADA", channel="C0GENERAL",
                               response_url=slack.response_url("fuzz-declare")), SLACK_SECRET)
    assert fuzz_bot.http.post(f"{fuzz_bot.url}/slack/events", content=raw,
                              headers={**h, "Content-Type": FORM}).status_code == 200
    fuzz_bot.drain()
    return slack.channel_by_name("inc-1-fuzzing-target")["id"]


@given(sub=st.sampled_from(SUBCOMMANDS), args=ARGS, where=st.sampled_from(["incident", "general", "dm"]),
       user=st.sampled_from(["U0ADA", "U0BOB", "UNEW1"]))
@FUZZ
def test_slash_commands_always_answer_with_text(fuzz_bot, incident_channel, sub, args, where, user) -> None:  # type: ignore[no-untyped-def]
    """Whatever is typed, the user is told something in words: in the ack (help, usage), or through the
    command's response_url once the fold worker ran it; never a 5xx, never an echoed mass mention."""
    channel = {"incident": incident_channel, "general": "C0GENERAL", "dm": "D0ADA"}[where]
    text = f"{sub} {args}"
    token = uuid.uuid4().hex
    raw, h = signed(slash_body(text, user=user, channel=channel, response_url=fuzz_bot.slack.response_url(token)),
                    SLACK_SECRET)
    r = fuzz_bot.http.post(f"{fuzz_bot.url}/slack/events", content=raw, headers={**h, "Content-Type": FORM})
    observe("slash command", r.status_code)
    if len(raw) > MAX_BODY:
        assert r.status_code == 413
        return
    assert r.status_code == 200, (text[:200], r.status_code, r.text[:300])
    if sub.lower() == "declare" and not clean(text).strip().partition(" ")[2].strip():
        assert r.text == "", "the modal opens after an empty ack (control characters are dropped first)"
        return
    acked = r.json() if r.content else {}
    if [w.lower() for w in clean(text).split()[:2]] == ["rca", "edit"] and not acked:
        return  # the RCA form opens after the ack (or a refusal goes to response_url)
    answer = acked if acked.get("text") else fuzz_bot.slack.wait_for(
        lambda: fuzz_bot.slack.responses(token), timeout=20)[0]
    assert isinstance(answer.get("text"), str) and answer["text"], answer
    assert "<!channel>" not in answer["text"] and "<!here" not in answer["text"], "no echoed mass mention"


def interaction_payload() -> st.SearchStrategy[Any]:
    action = st.fixed_dictionaries({"action_id": st.one_of(st.sampled_from(
        ["incident_ack", "incident_mitigated", "incident_resolve", "incident_status", "capa_status_done",
         "capa_status_wont_do", "unknown"]), st.text(max_size=20)), "value": garbage})
    known = st.fixed_dictionaries({
        "type": st.sampled_from(["block_actions", "view_submission", "shortcut", "message_action",
                                 "view_closed", "block_suggestion", "interactive_message", "nonsense"]),
        "user": st.one_of(st.just({"id": "U0ADA"}), garbage), "team": st.just({"id": "T0STANDIN"}),
        "channel": st.one_of(st.just({"id": "C0GENERAL"}), garbage),
        "trigger_id": st.one_of(st.just("1.2.x"), garbage), "callback_id": st.one_of(
            st.sampled_from(["declare_incident_shortcut", "x"]), garbage),
        "actions": st.one_of(st.lists(action, max_size=2), garbage),
        "view": st.one_of(st.fixed_dictionaries({
            "callback_id": st.sampled_from(["declare_incident", "rca_edit", "other"]),
            "state": st.one_of(st.just({"values": {}}), garbage), "private_metadata": garbage}), garbage),
        "message": st.one_of(st.just({"ts": "1.2", "text": "boom"}), garbage),
    }, optional={"api_app_id": st.just("A0STANDIN")})
    return st.one_of(known, garbage)


def event_doc() -> st.SearchStrategy[Any]:
    event = st.fixed_dictionaries({
        "type": st.one_of(st.sampled_from(["reaction_added", "reaction_removed", "member_joined_channel",
                                           "member_left_channel", "app_home_opened", "message",
                                           "app_mention"]), st.text(max_size=20)),
        "user": st.one_of(st.just("U0ADA"), garbage), "reaction": st.sampled_from(["pushpin", "eyes", ""]),
        "item": st.one_of(st.just({"type": "message", "channel": "C0GENERAL", "ts": "1.2"}), garbage),
        "channel": garbage, "tab": garbage, "event_ts": garbage})
    return st.one_of(
        st.fixed_dictionaries({"type": st.just("event_callback"), "team_id": st.just("T0STANDIN"),
                               "api_app_id": st.just("A0STANDIN"),
                               "event_id": st.one_of(st.uuids().map(str), garbage), "event": event}),
        st.fixed_dictionaries({"type": st.just("url_verification"), "challenge": garbage}),
        garbage)


@st.composite
def slack_bodies(draw: st.DrawFn) -> tuple[str, bytes, str]:
    kind = draw(st.sampled_from(["event", "interaction", "form", "raw"]))
    if kind == "event":
        return kind, json.dumps(draw(event_doc())).encode(), "application/json"
    if kind == "interaction":
        payload = draw(st.one_of(interaction_payload().map(json.dumps), st.text(max_size=30)))
        return kind, urlencode({"payload": payload}).encode(), FORM
    if kind == "form":
        fields = draw(st.dictionaries(st.sampled_from(["command", "text", "user_id", "channel_id", "team_id",
                                                       "trigger_id", "ssl_check", "payload"]),
                                      st.text(max_size=30), max_size=6))
        return kind, urlencode(fields).encode(), FORM
    ctype = draw(st.sampled_from(["application/json", FORM, "text/plain", ""]))
    return kind, draw(st.binary(max_size=300)), ctype


@given(body=slack_bodies(), auth=st.sampled_from(["signed", "signed", "unsigned", "wrong", "stale", "future",
                                                  "garbage_ts", "bytes_sig"]),
       retry=st.sampled_from([None, "1", "x"]), sig_bytes=st.binary(min_size=1, max_size=30))
@FUZZ
def test_random_slack_requests_never_5xx(fuzz_bot, body, auth, retry, sig_bytes) -> None:  # type: ignore[no-untyped-def]
    kind, raw, ctype = body
    now = int(time.time())
    ts = {"stale": now - 301 - len(raw), "future": now + 400}.get(auth)
    secret = "wrong-secret" if auth == "wrong" else SLACK_SECRET
    headers = sign_slack(raw, secret, ts)
    if auth == "unsigned":
        headers = {}
    elif auth == "garbage_ts":
        headers["X-Slack-Request-Timestamp"] = "soon"
    elif auth == "bytes_sig":
        headers["X-Slack-Signature"] = b"v0=" + header_value(sig_bytes)
    if ctype:
        headers["Content-Type"] = ctype
    if retry:
        headers["X-Slack-Retry-Num"] = retry
    before = settled_counts(fuzz_bot)
    r = fuzz_bot.http.post(f"{fuzz_bot.url}/slack/events", content=raw, headers=headers)
    observe(f"slack {kind} {'signed' if auth == 'signed' else 'unsigned/stale'}", r.status_code)
    assert r.status_code < 500, (kind, auth, raw[:200], r.status_code, r.text[:300])
    # Bolt answers 404 to a signed request no listener handles (we keep raise_error_for_unhandled_request off)
    assert r.status_code in (200, 400, 401, 404, 413), (kind, auth, r.status_code)
    if len(raw) > MAX_BODY:
        assert r.status_code == 413
    elif auth != "signed":
        assert r.status_code == 401, (kind, auth, r.status_code)
    if auth != "signed":
        assert settled_counts(fuzz_bot) == before, "an unsigned request writes nothing"


# -- Slack: modal submissions (the declare form and the RCA form) -----------------------------------------

form_text = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(NASTY).map(
    lambda t: t.encode("utf-8", "replace").decode()), st.integers(100, 4000).map(lambda n: "🔥" * n), garbage)


@st.composite
def form_values(draw: st.DrawFn, blocks: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for block in blocks:
        if draw(st.booleans()):
            continue
        if block == "severity":
            value: Any = draw(st.one_of(st.fixed_dictionaries({"type": st.just("static_select"), "selected_option":
                st.fixed_dictionaries({"value": st.one_of(st.sampled_from(["SEV1", "SEV4", "SEV0", "sev2", ""]),
                                                          garbage)})}), garbage))
        else:
            value = draw(st.one_of(st.fixed_dictionaries({"type": st.just("plain_text_input"),
                                                          "value": form_text}), garbage))
        values[block] = draw(st.one_of(st.just({"value": value}), garbage))
    return values


DECLARE_BLOCKS = ("title", "severity", "service", "description", "impact_started")
RCA_BLOCKS = ("summary", "impact", "root_causes", "trigger", "lucky", "authors")


@given(callback=st.sampled_from(["declare_incident", "rca_edit"]), data=st.data(),
       metadata=st.one_of(st.just('{"ref":"INC-1","offered":{}}'), st.just("INC-1"), st.just(""),
                          st.text(max_size=30), st.just('{"channel":"C0GENERAL","ts":"1.2"}')),
       user=st.sampled_from(["U0ADA", "U0BOB"]))
@FUZZ
def test_modal_submissions_never_5xx_and_store_only_valid_values(fuzz_bot, incident_channel, callback, data,
                                                                 metadata, user) -> None:  # type: ignore[no-untyped-def]
    values = data.draw(form_values(DECLARE_BLOCKS if callback == "declare_incident" else RCA_BLOCKS))
    payload = {"type": "view_submission", "team": {"id": "T0STANDIN"}, "user": {"id": user},
               "api_app_id": "A0STANDIN", "trigger_id": "1.2.3",
               "view": {"id": "V1", "callback_id": callback, "private_metadata": metadata, "type": "modal",
                        "state": {"values": values}}}
    raw = urlencode({"payload": json.dumps(payload)}).encode()
    r = fuzz_bot.http.post(f"{fuzz_bot.url}/slack/events", content=raw,
                           headers={**sign_slack(raw, SLACK_SECRET), "Content-Type": FORM})
    observe(f"modal {callback}", r.status_code)
    assert r.status_code in (200, 400) or (r.status_code == 413 and len(raw) > MAX_BODY), (callback, r.status_code)
    with fuzz_bot.rt.engine.connect() as conn:
        stored = conn.execute(select(Incident.severity, Incident.title, Incident.rca)).all()
    for severity, title, rca in stored:
        assert severity in ("SEV1", "SEV2", "SEV3", "SEV4"), severity
        assert "\x00" not in title and len(title) <= 1024
        assert all(isinstance(v, str) and "\x00" not in v for v in (rca or {}).values())
