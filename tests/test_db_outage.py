"""PostgreSQL goes away under load and comes back: 503 (never 500, never a hang), then nothing lost.

The real PostgreSQL is shared, so it is never stopped: the app reaches it through a TCP proxy
(:mod:`tests.standins.tcp_proxy`) and the proxy going down is the outage the app sees (every live
connection cut, new ones refused), as in a database restart or a failover.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import make_url
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.demo.slack_requests import FORM, event_body, signed, slash_body
from incident_bot.pipeline.rate_limits import RateGate
from storage.models import InboxDelivery, Incident, OutboxMessage, TimelineEvent
from tests.standins.tcp_proxy import TcpProxy

from .conftest import PD_SECRET, SLACK_SECRET, start_bot

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)
OUTAGE_S = 3.0
CLIENT_TIMEOUT = 10.0  # PagerDuty gives up after 5 s; anything near 10 s is a hang
NOTES = 3
DELIVERIES_PER_INCIDENT = 3 + NOTES
MESSAGES_PER_INCIDENT = 3 + NOTES  # channel intro, acknowledged, the notes, resolved


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test PostgreSQL and the test schema's URL through it."""
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        proxy.stop()


@pytest.fixture
def app(proxied, slack):  # type: ignore[no-untyped-def]
    proxy, url = proxied
    b = start_bot(url, slack)
    b.proxy = proxy
    # Slack's budget for conversations.create (20 a minute) would make the drain, not the outage, the
    # subject of this test: the stand-in has no such limit, so the worker need not pace itself.
    b.rt.worker.gate = RateGate({})
    try:
        yield b
    finally:
        b.http.close()
        b.server.stop()
        b.rt.engine.dispose()


def story(i: int) -> list[dict[str, Any]]:
    """The deliveries of one PagerDuty incident, in the order PagerDuty sends them."""
    pd_id = f"PDOUT{i:04d}"
    data = pd.incident_data(pd_id, title=f"Outage load {i}", created_at=T0 + timedelta(seconds=i))
    return [
        pd.delivery("incident.triggered", data, occurred_at=T0 + timedelta(seconds=i)),
        pd.delivery("incident.acknowledged", data, occurred_at=T0 + timedelta(seconds=i, minutes=1)),
        *(pd.delivery("incident.annotated", pd.note_data(pd_id, f"note {i}.{n}", f"PN{n}"),
                      occurred_at=T0 + timedelta(seconds=i, minutes=2 + n)) for n in range(NOTES)),
        pd.delivery("incident.resolved", data, occurred_at=T0 + timedelta(seconds=i, minutes=9)),
    ]


def send(client: httpx.Client, url: str, doc: dict[str, Any]) -> int | str:
    """The status, or the name of the client error (a timeout is a hang, a reset is a crash)."""
    body = pd.encode(doc)
    try:
        return client.post(f"{url}/pagerduty/webhook", content=body,
                           headers=pd.signed_headers(body, PD_SECRET)).status_code
    except httpx.HTTPError as exc:
        return exc.__class__.__name__


class Load:
    """Two PagerDuty senders at a steady pace; each delivery's outcome is recorded, in send order."""

    def __init__(self, url: str, senders: int = 2, pause: float = 0.1) -> None:
        self.url, self.pause = url, pause
        self.sent: list[tuple[dict[str, Any], int | str, float]] = []
        self.retry_after: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._incidents = count()
        self._queue: list[dict[str, Any]] = []
        self._threads = [threading.Thread(target=self._run) for _ in range(senders)]

    def _next(self) -> dict[str, Any]:
        with self._lock:
            if not self._queue:
                self._queue.extend(story(next(self._incidents)))
            return self._queue.pop(0)

    def _run(self) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            while not self._stop.is_set():
                doc = self._next()
                body = pd.encode(doc)
                try:
                    r = client.post(f"{self.url}/pagerduty/webhook", content=body,
                                    headers=pd.signed_headers(body, PD_SECRET))
                    outcome: int | str = r.status_code
                    if r.status_code == 503:
                        self.retry_after.add(r.headers.get("retry-after", ""))
                except httpx.HTTPError as exc:
                    outcome = exc.__class__.__name__
                with self._lock:
                    self.sent.append((doc, outcome, time.monotonic()))
                time.sleep(self.pause)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(CLIENT_TIMEOUT * 2)
        # Finish the incident stories that were started, so every incident ends resolved.
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            for doc in self._queue:
                self.sent.append((doc, send(client, self.url, doc), time.monotonic()))
        self._queue.clear()


def probe(client: httpx.Client, url: str) -> int | str:
    try:
        return client.get(url).status_code
    except httpx.HTTPError as exc:
        return exc.__class__.__name__


def test_pagerduty_load_through_a_database_outage(app, slack) -> None:  # type: ignore[no-untyped-def]
    proxy: TcpProxy = app.proxy
    health: list[int | str] = []
    ready_down: list[int | str] = []
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client, Load(app.url) as load:
        time.sleep(1.0)
        assert client.get(f"{app.url}/readyz").status_code == 200
        proxy.down()
        down_at = time.monotonic()
        while time.monotonic() - down_at < OUTAGE_S:
            ready_down.append(probe(client, f"{app.url}/readyz"))
            health.append(probe(client, f"{app.url}/healthz"))
            time.sleep(0.25)
        proxy.up()
        up_at = time.monotonic()
        ready_after: list[int | str] = []
        while time.monotonic() - up_at < 10:
            ready_after.append(probe(client, f"{app.url}/readyz"))
            if ready_after[-1] == 200:
                break
            time.sleep(0.2)
        ready_at = time.monotonic()
        time.sleep(1.5)  # load continues after the database is back

    outcomes = [o for _, o, _ in load.sent]
    assert set(outcomes) <= {202, 503}, f"only 202 or 503, never a 500, a reset or a timeout: {set(outcomes)}"
    during = [o for _, o, at in load.sent if down_at + 0.5 < at < up_at]
    assert during and set(during) == {503}, "every delivery during the outage was refused with 503"
    assert [o for _, o, at in load.sent if at < down_at].count(202) > 3, "deliveries before were accepted"
    assert [o for _, o, at in load.sent if at > ready_at].count(202) > 3, "and after the database returned"
    assert load.retry_after == {"5"}, "503 tells PagerDuty when to retry"
    assert set(health) == {200}, "liveness is not readiness: /healthz stays 200"
    assert len(ready_down) >= 5 and set(ready_down) == {503}, ready_down
    assert ready_after[-1] == 200, f"/readyz recovers after the outage: {ready_after}"

    # PagerDuty redelivers whatever was not acknowledged with a 2xx.
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        for doc, outcome, _ in load.sent:
            if outcome != 202:
                assert send(client, app.url, doc) == 202, "the redelivery succeeds"

    ids = {doc["event"]["id"] for doc, _, _ in load.sent}
    incidents = len(ids) // DELIVERIES_PER_INCIDENT
    with Session(app.rt.engine) as s:
        stored = set(s.execute(select(InboxDelivery.event_id)).scalars())
        assert stored == ids, "every delivery is in the inbox, once"
    drained(app, 30)
    with Session(app.rt.engine) as s:
        incs = s.execute(select(Incident)).scalars().all()
        assert len(incs) == incidents
        assert {i.status for i in incs} == {"resolved"}
        assert s.execute(select(func.count()).select_from(OutboxMessage)
                         .where(OutboxMessage.status != "done")).scalar_one() == 0
    # An incident whose resolve was applied before its trigger (the trigger was refused during the
    # outage and redelivered later) was over when the bot could first apply it: recorded quietly, with
    # its milestones and timeline, but no channel born resolved (README: PagerDuty set-up).
    quiet = [i for i in incs if not i.slack_channel_wanted]
    assert len(quiet) < incidents // 2, "most incidents were live when applied"
    for inc in quiet:
        assert inc.slack_channel_id is None and inc.resolved_at is not None, inc.ref
    created = [c for c in slack.calls("conversations.create") if c.status == 200]
    assert len(created) == incidents - len(quiet), "one channel per incident seen open"
    for inc in incs:
        if inc in quiet:
            continue
        assert inc.slack_channel_id, inc.ref
        texts = [m["text"] for m in slack.messages(inc.slack_channel_id)]
        # An acknowledgement applied after the resolve (refused, then redelivered late) is recorded, not
        # announced: old news in the channel.
        with Session(app.rt.engine) as s:
            recorded = dict(s.execute(select(TimelineEvent.kind, TimelineEvent.recorded_at)
                                      .where(TimelineEvent.incident_id == inc.id)).all())
        late_ack = recorded["acknowledged"] > recorded["resolved"]
        assert len(texts) == MESSAGES_PER_INCIDENT - late_ack, (inc.ref, texts)
    assert len(slack.messages(app.announce)) == incidents - len(quiet)
    assert slack.duplicate_messages() == []
    assert slack.crashes() == []


def drained(bot, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Wait for the outbox to empty; on failure say which rows are stuck, and why."""
    try:
        bot.drain(timeout)
    except AssertionError:
        with Session(bot.rt.engine) as s:
            stuck = s.execute(select(OutboxMessage).where(OutboxMessage.status.in_(("pending", "inflight")))
                              .order_by(OutboxMessage.id)).scalars().all()
        heads: dict[str, OutboxMessage] = {}
        for r in stuck:
            heads.setdefault(r.order_key, r)
        raise AssertionError(f"outbox stuck at {datetime.now(UTC)}: " + "; ".join(
            f"#{r.id} {r.order_key} {r.method} {r.status} attempts={r.attempts} next={r.next_attempt_at} "
            f"lease_until={r.lease_until} error={r.last_error}" for r in list(heads.values())[:6])) from None


def test_a_slack_call_in_flight_when_the_database_drops_is_recorded_when_it_returns(app, slack) -> None:  # type: ignore[no-untyped-def]
    """The worker posted to Slack, then could not mark the row done: it must not sit out the 120 s lease."""
    slack.delay("chat.postMessage", 1.0)  # Slack applies the post, then answers a second later
    assert app.send_pd(story(0)[0]).status_code == 202
    slack.wait_for(lambda: slack.calls("chat.postMessage"), timeout=10)
    app.proxy.down()  # the database goes away while the worker waits for Slack's answer
    time.sleep(2.0)
    slack.clear_faults()
    app.proxy.up()
    drained(app, 15)
    with Session(app.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
    assert len(slack.messages(inc.slack_channel_id)) == 1, "the intro, once"
    assert len(slack.messages(app.announce)) == 1
    assert slack.duplicate_messages() == []


@contextmanager
def fault_after_a_claim(engine: Engine, hook: str, fault: Callable[[], None]) -> Iterator[threading.Event]:
    """Inject ``fault`` once, at an exact point of the delivery loop: the first pool ``checkout`` (the
    worker's next query) or the ``commit`` (the claim's own) after an outbox worker claimed a row."""
    claimed, fired = threading.local(), threading.Event()

    def after_execute(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if threading.current_thread().name.startswith("outbox") \
                and statement.startswith("UPDATE outbox SET status = 'inflight'"):  # the claim's mark
            claimed.row = True

    def fire(*_: Any) -> None:
        if getattr(claimed, "row", False) and not fired.is_set():
            fired.set()
            fault()

    target = engine.pool if hook == "checkout" else engine
    event.listen(engine, "after_cursor_execute", after_execute)
    event.listen(target, hook, fire)
    try:
        yield fired
    finally:
        event.remove(engine, "after_cursor_execute", after_execute)
        event.remove(target, hook, fire)


def test_a_row_claimed_just_before_the_database_drops_is_not_stranded(app, slack) -> None:  # type: ignore[no-untyped-def]
    """The outage lands between the worker's claim (committed) and its next query: the row must be handed
    back when the database returns, not sit in flight for the whole lease (2 minutes)."""
    with fault_after_a_claim(app.rt.engine, "checkout", app.proxy.down) as fired:
        assert app.send_pd(story(0)[0]).status_code == 202
        assert fired.wait(10), "the outage was injected right after a claim"
        time.sleep(1.5)
        app.proxy.up()
    drained(app, 15)
    with Session(app.rt.engine) as s:
        inc = s.execute(select(Incident)).scalar_one()
    assert len(slack.messages(inc.slack_channel_id)) == 1, "the intro, once"
    assert slack.duplicate_messages() == []


def test_a_claim_whose_commit_answer_is_lost_is_not_stranded(app, slack) -> None:  # type: ignore[no-untyped-def]
    def lose_the_answer() -> None:
        app.proxy.deafen()  # the COMMIT reaches PostgreSQL; its answer never comes back
        threading.Timer(0.5, app.proxy.down).start()

    with fault_after_a_claim(app.rt.engine, "commit", lose_the_answer) as fired:
        assert app.send_pd(story(0)[0]).status_code == 202
        assert fired.wait(10), "the answer to the claim's COMMIT was lost"
        time.sleep(1.5)
        app.proxy.up()
    drained(app, 5)  # the stranded row of test above is handed back in ~1 s
    assert slack.duplicate_messages() == []


def test_a_network_partition_answers_503_not_a_hang(app) -> None:  # type: ignore[no-untyped-def]
    """Not a restart this time: the network path drops everything and closes nothing, so a pooled
    connection blocks without an error; the webhook's deadline turns that into a 503."""
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        docs = [story(i)[0] for i in range(6)]
        with ThreadPoolExecutor(6) as pool:  # warm the pool: several idle connections to PostgreSQL
            assert set(pool.map(lambda d: send(client, app.url, d), docs)) == {202}
        late = [story(10 + i)[0] for i in range(3)]
        app.proxy.stall()
        try:
            with ThreadPoolExecutor(3) as pool:
                outcomes = list(pool.map(lambda d: send(client, app.url, d), late))
            ready = probe(client, f"{app.url}/readyz")
        finally:
            app.proxy.up()
        assert outcomes == [503] * 3, f"answered within {CLIENT_TIMEOUT} s with 503: {outcomes}"
        assert ready == 503
        # The redeliveries succeed once the network heals (a stalled transaction that did commit makes
        # its redelivery a duplicate: still 202, still one row).
        for doc in late:
            assert send(client, app.url, doc) == 202
    with Session(app.rt.engine) as s:
        stored = Counter(s.execute(select(InboxDelivery.event_id)).scalars())
    assert all(stored[d["event"]["id"]] == 1 for d in docs + late)


def slash_req(client: httpx.Client, url: str, text: str, channel: str, user: str = "U0ADA",
              slack=None) -> httpx.Response:  # type: ignore[no-untyped-def]
    """A slash command; ``answer()`` reads what the user was told (the ack, or the response_url answer)."""
    token = uuid.uuid4().hex
    response_url = slack.response_url(token) if slack is not None else "https://hooks.slack.com/x"
    raw, headers = signed(slash_body(text, user=user, channel=channel, response_url=response_url), SLACK_SECRET)
    headers["Content-Type"] = FORM
    r = client.post(f"{url}/slack/events", content=raw, headers=headers)
    r.answer = lambda: answer(slack, r, token)  # type: ignore[attr-defined]
    return r


def answer(slack, r: httpx.Response, token: str) -> str:  # type: ignore[no-untyped-def]
    if r.content and r.json().get("text"):
        return str(r.json()["text"])
    return str(slack.wait_for(lambda: slack.responses(token), timeout=20)[0].get("text"))


def test_slash_commands_during_a_database_outage(app, slack) -> None:  # type: ignore[no-untyped-def]
    slack.add_user("U0ADA", "ada", "ada@example.com")
    # Slack gives up on a command after 3 s: the client does the same.
    with httpx.Client(timeout=3.0) as client:
        r = slash_req(client, app.url, "declare Checkout errors spiking", "C0GENERAL", slack=slack)
        assert r.status_code == 200 and "INC-1" in r.answer()
        app.drain()
        with Session(app.rt.engine) as s:
            channel = s.execute(select(Incident.slack_channel_id)).scalar_one()
        assert channel
        app.proxy.down()
        try:
            answers = {text: slash_req(client, app.url, text, ch, slack=slack) for text, ch in (
                ("note the cache was flushed", channel), ("status", channel), ("sev 1", channel),
                ("declare Another one", "C0GENERAL"), ("timeline", channel))}
            helped = slash_req(client, app.url, "help", channel, slack=slack)
        finally:
            app.proxy.up()
        for text, r in answers.items():
            assert r.status_code == 200, (text, r.status_code, r.text)
            assert "unavailable" in r.json()["text"], (text, r.json())
        assert helped.status_code == 200 and "declare" in json.dumps(helped.json()), "help needs no database"

        # Nothing of the refused commands was half-written; the same command works once the database is back.
        with Session(app.rt.engine) as s:
            assert s.execute(select(func.count()).select_from(Incident)).scalar_one() == 1
            assert not s.execute(select(TimelineEvent).where(TimelineEvent.kind == "note")).first()
        deadline = time.monotonic() + 10
        while "unavailable" in (r := slash_req(client, app.url, "note the cache was flushed", channel,
                                               slack=slack)).answer() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 200 and "timeline" in r.answer(), r.text
    with Session(app.rt.engine) as s:
        notes = s.execute(select(TimelineEvent.text).where(TimelineEvent.kind == "note")).scalars().all()
    assert notes == ["the cache was flushed"]


def test_slack_event_during_a_database_outage_is_not_lost(app, slack) -> None:  # type: ignore[no-untyped-def]
    slack.add_user("U0ADA", "ada", "ada@example.com")
    with httpx.Client(timeout=3.0) as client:
        r = slash_req(client, app.url, "declare Checkout errors spiking", "C0GENERAL", slack=slack)
        assert r.status_code == 200
        app.drain()
        with Session(app.rt.engine) as s:
            channel = s.execute(select(Incident.slack_channel_id)).scalar_one()
        posted = slack.messages(channel)[0]
        event = {"type": "reaction_added", "user": "U0ADA", "reaction": "pushpin", "item_user": "UBOT",
                 "item": {"type": "message", "channel": channel, "ts": posted["ts"]}, "event_ts": "1.2"}
        raw, headers = signed(event_body(event, event_id="EvOUTAGE01"), SLACK_SECRET)
        headers["Content-Type"] = "application/json"
        app.proxy.down()
        try:
            r = client.post(f"{app.url}/slack/events", content=raw, headers=headers)
            time.sleep(0.5)  # the listener runs after the ack
        finally:
            app.proxy.up()
        if r.status_code >= 500 or r.status_code == 429:
            # Refused: Slack retries the event (with X-Slack-Retry-Num), as it would here.
            headers["X-Slack-Retry-Num"] = "1"
            deadline = time.monotonic() + 10
            while client.post(f"{app.url}/slack/events", content=raw, headers=headers).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        else:
            assert r.status_code == 200
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with Session(app.rt.engine) as s:
            if s.execute(select(OutboxMessage).where(OutboxMessage.method == "timeline.pin")).first():
                return
        time.sleep(0.1)
    raise AssertionError("the 📌 acknowledged during the outage never reached the timeline")
