"""Hostile connections and headers against the real server: slow clients are cut off, unsigned headers of
any shape get a 4xx and one short log line, over-long Slack ids are refused."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from incident_bot.demo.slack_requests import FORM, slash_body
from storage.limits import EVENT_ID_LEN, SLACK_ID_LEN
from storage.models import InboxDelivery, Incident, TimelineEvent

from .conftest import slack_post, start_bot

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
BOUND = 30.0  # seconds a test waits for the server to act before it fails (the deadlines are 1 s)


@pytest.fixture
def tight_bot(sqlite_url, slack) -> Iterator:  # type: ignore[type-arg]
    b = start_bot(sqlite_url, slack, http_header_timeout=1, http_body_timeout=1, http_keep_alive_timeout=1)
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def connect(bot) -> socket.socket:  # type: ignore[no-untyped-def]
    sock = socket.create_connection((bot.server.host, bot.server.port), timeout=BOUND)
    sock.settimeout(0.2)
    return sock


def closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while the connection is still open."""
    try:
        data = sock.recv(65536)
    except TimeoutError:
        return None
    except ConnectionResetError:
        return b""
    if not data:
        return b""
    rest = closed_by_server(sock)
    return None if rest is None else data + rest


def read_healthz(sock: socket.socket) -> bytes:
    sock.settimeout(BOUND)
    data = b""
    while not data.endswith(b'{"status":"ok"}'):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def trickle_until_closed(sock: socket.socket, drip: bytes) -> bytes:
    """Send one byte of ``drip`` at a time until the server hangs up; fail if it never does."""
    deadline = time.monotonic() + BOUND
    i = 0
    while time.monotonic() < deadline:
        try:
            sock.send(drip[i % len(drip):i % len(drip) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return b""
        i += 1
        answer = closed_by_server(sock)
        if answer is not None:
            return answer
    pytest.fail(f"the server kept a trickling connection open for {BOUND} s ({i} bytes sent)")


def test_slow_headers_are_cut_off(tight_bot) -> None:  # type: ignore[no-untyped-def]
    sock = connect(tight_bot)
    sock.sendall(b"POST /pagerduty/webhook HTTP/1.1\r\nHost: bot\r\n")
    assert trickle_until_closed(sock, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n") == b""
    sock.close()


def test_slow_headers_on_a_kept_alive_connection_are_cut_off(tight_bot) -> None:  # type: ignore[no-untyped-def]
    sock = connect(tight_bot)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
    assert read_healthz(sock).startswith(b"HTTP/1.1 200")
    sock.settimeout(0.2)
    assert trickle_until_closed(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaa\r\n") == b""
    sock.close()


@pytest.mark.parametrize("path", ["/pagerduty/webhook", "/slack/events"])
def test_a_slow_body_gets_408(tight_bot, path: str) -> None:  # type: ignore[no-untyped-def]
    sock = connect(tight_bot)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
                 "Content-Length: 100000\r\n\r\n{\"event\": ".encode())
    # A few bytes and then nothing (a client that trickles would get the same answer: the deadline
    # is for the whole body, but a byte sent after the server has hung up can reset away its answer).
    sock.settimeout(BOUND)
    try:
        answer = sock.recv(65536)
    except TimeoutError:
        pytest.fail(f"a stalled body held the connection {BOUND} s")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    sock.close()
    with Session(tight_bot.rt.engine) as s:
        assert s.execute(select(func.count()).select_from(InboxDelivery)).scalar_one() == 0


def test_an_idle_keep_alive_connection_is_closed(tight_bot) -> None:  # type: ignore[no-untyped-def]
    sock = connect(tight_bot)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
    assert read_healthz(sock).startswith(b"HTTP/1.1 200")
    sock.settimeout(BOUND)
    try:
        assert sock.recv(1) == b"", "the server closed the idle connection"
    except TimeoutError:
        pytest.fail(f"an idle keep-alive connection stayed open {BOUND} s")
    sock.close()


# -- unsigned headers of any shape ----------------------------------------------------------------------

latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=600)
digits = st.integers(0, 5000).map(lambda n: "9" * n)  # 400+ digits used to overflow: 500 and a traceback
HOSTILE = st.fixed_dictionaries({}, optional={
    "X-Slack-Request-Timestamp": st.one_of(digits, latin1, st.just(str(int(time.time())))),
    "X-Slack-Signature": st.one_of(latin1, st.just("v0=" + "0" * 64), latin1.map(lambda s: "v0=" + s)),
    "X-Slack-Retry-Num": st.one_of(digits, latin1),
    "X-PagerDuty-Signature": st.one_of(latin1, latin1.map(lambda s: "v1=" + s), digits.map(lambda s: "v1=" + s)),
    "X-Webhook-Id": st.one_of(latin1, digits),
    "Content-Type": st.one_of(latin1, st.sampled_from(["application/json", FORM, "multipart/form-data; b=x"])),
})


@given(path=st.sampled_from(["/pagerduty/webhook", "/slack/events"]), headers=HOSTILE,
       body=st.sampled_from([b"", b"{}", b'{"event": {"id": "1", "event_type": "incident.triggered"}}',
                             slash_body("declare x", user="U0ADA", channel="C0GEN").encode()]))
@EXAMPLES
def test_hostile_headers_get_a_4xx_and_one_short_line(bot, caplog, path: str, headers: dict, body: bytes) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    caplog.clear()
    raw = [(k.encode(), v.encode("latin-1").strip(b" \t")) for k, v in headers.items()]  # any Latin-1 byte
    r = bot.http.post(bot.url + path, content=body, headers=raw)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    ours = [rec for rec in caplog.records
            if rec.levelno >= logging.INFO and not rec.name.startswith(("httpx", "uvicorn.access"))]
    assert all(rec.exc_info is None for rec in ours), "no traceback for an unsigned request"
    assert len(ours) <= 1, [rec.getMessage() for rec in ours]
    assert all(len(rec.getMessage()) + len(json.dumps(getattr(rec, "fields", {}))) < 400 for rec in ours)


# -- over-long Slack ids -------------------------------------------------------------------------------

def counts(engine) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return tuple(int(s.execute(select(func.count()).select_from(m)).scalar_one())
                     for m in (InboxDelivery, Incident, TimelineEvent))


@given(field=st.sampled_from(["user_id", "channel_id", "team_id", "api_app_id"]), extra=st.integers(1, 3000))
@EXAMPLES
def test_over_long_ids_in_a_slash_command_are_refused(bot, field: str, extra: int) -> None:  # type: ignore[no-untyped-def]
    before = counts(bot.rt.engine)
    form = dict(pair.split("=", 1) for pair in slash_body("declare Checkout down", user="U0ADA",
                                                            channel="C0GEN").split("&"))
    form[field] = "U" * (SLACK_ID_LEN + extra)
    r = slack_post(bot, urlencode(form, safe="%+"), FORM)
    assert r.status_code == 400
    assert counts(bot.rt.engine) == before


@pytest.mark.parametrize(("where", "limit"), [("event_id", EVENT_ID_LEN), ("user", SLACK_ID_LEN),
                                              ("channel", SLACK_ID_LEN)])
def test_over_long_ids_in_an_event_are_refused(bot, where: str, limit: int) -> None:  # type: ignore[no-untyped-def]
    before = counts(bot.rt.engine)
    event = {"type": "reaction_added", "user": "U0ADA", "reaction": "pushpin",
             "item": {"type": "message", "channel": "C0GEN", "ts": "1.2"}, "event_ts": "1.3"}
    envelope = {"token": "x", "team_id": "T0STANDIN", "api_app_id": "A0STANDIN", "type": "event_callback",
                "event_id": "Ev0001", "event_time": 1, "event": event}
    if where == "event_id":
        envelope["event_id"] = "E" * (limit + 1)
    else:
        event[where] = "X" * (limit + 1)
    assert slack_post(bot, json.dumps(envelope), "application/json").status_code == 400
    assert counts(bot.rt.engine) == before


def test_serve_logs_one_summary_and_counts_slack_bad_signatures(sqlite_url, slack) -> None:  # type: ignore[no-untyped-def]
    """`incident-bot serve` as an operator runs it: one start-up line that says how it runs, no misleading
    library warning, and a forged Slack request counted and logged like a forged PagerDuty one."""
    import httpx
    from alembic.script import ScriptDirectory

    from storage import migrate

    from .conftest import ServerProcess, server_env

    proc = ServerProcess(server_env(sqlite_url, slack, LOG_LEVEL="INFO")).start()
    try:
        r = httpx.post(f"{proc.url}/slack/events", content=b"{}", timeout=10,
                       headers={"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00",
                                "Content-Type": "application/json"})
        assert r.status_code == 401
        metrics = httpx.get(f"{proc.url}/metrics", timeout=10).text
        assert 'incident_bot_deliveries_total{outcome="bad_signature",source="slack"} 1.0' in metrics
    finally:
        proc.stop()
    lines = [json.loads(line) for line in proc.proc.stderr.read().decode().splitlines() if line.startswith("{")]
    head = ScriptDirectory.from_config(migrate.alembic_config(sqlite_url)).get_current_head()
    [summary] = [rec["msg"] for rec in lines if rec["msg"].startswith("serving on")]
    for part in (f"at migration {head}", "database sqlite", "fold and outbox workers on", "PagerDuty REST off",
                 "Slack via HTTP", "scheduler off"):
        assert part in summary, summary
    assert not [rec for rec in lines if "will be ignored" in rec["msg"] or "will be unused" in rec["msg"]]
    refusals = [rec for rec in lines if rec["msg"] == "slack request bad_signature"]
    assert len(refusals) == 1, "each refusal is logged once"
