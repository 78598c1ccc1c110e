"""CAPA effectiveness as the digest reads it (``usecases.learning.capa_effectiveness``) on a real database
(SQLite and PostgreSQL) is ``core.learning.capa_outcome`` applied to every done action against every incident
on its service: the same counts, and the actions that did not hold listed the latest first, cut at the limit.

A generated history on a coarse clock (hours), so that ties, the window's edges to the microsecond, an
action done before its own incident was detected, merged incidents and incidents without a service come up.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select

from incident_bot.cli import main
from incident_bot.core import learning as rules
from incident_bot.usecases import digest as service
from incident_bot.usecases import learning
from storage.db import session_scope
from storage.models import ActionItem, Incident, IncidentMetrics

from .conftest import make_settings
from .similar_history import add_incident, done_action

UNTIL = datetime(2026, 10, 26, tzinfo=UTC)
WINDOW = timedelta(days=3)
SERVICES = ["db", "web", "DB", None, ""]


def _history(engine: Engine, seed: int) -> None:
    rnd = random.Random(seed)

    def hour() -> datetime:  # the quarter before UNTIL and the window after it, on whole hours
        return UNTIL - rules.CAPA_SPAN - WINDOW + timedelta(hours=rnd.randrange(0, 24 * 100) // 6 * 6)

    with session_scope(engine) as s:
        incidents = [add_incident(s, f"incident {n}", service=rnd.choice(SERVICES), detected=hour(), resolved=None)
                     for n in range(60)]
        for _ in range(70):
            inc = rnd.choice(incidents)
            done = done_action(s, inc, hour(), title=f"fix of {inc.ref}")
            if rnd.random() < 0.1:
                done.status = rnd.choice(["wont_do", "open"])
            s.add(done)
        # The window's edges to the microsecond: detected exactly WINDOW after the fix (inside), and a
        # microsecond later (outside), on a service that has nothing else near.
        at = UNTIL - timedelta(days=20, microseconds=-123457)
        first = add_incident(s, "edge 0", service="edge", detected=at - timedelta(days=30), resolved=None)
        done_action(s, first, at, title="edge fix")
        add_incident(s, "edge in", service="edge", detected=at + WINDOW, resolved=None)
        second = add_incident(s, "edge 1", service="edge2", detected=at - timedelta(days=30), resolved=None)
        done_action(s, second, at, title="edge fix 2")
        add_incident(s, "edge out", service="edge2", detected=at + WINDOW + timedelta(microseconds=1), resolved=None)
        # A merged incident: no metrics row. Its own actions are judged, it breaks no service.
        merged = rnd.choice(incidents[:30])
        s.execute(delete(IncidentMetrics).where(IncidentMetrics.incident_id == merged.id))  # type: ignore[arg-type]


def _by_the_rule(engine: Engine, now: datetime, limit: int | None) -> dict[str, object]:
    with session_scope(engine) as s:
        incidents = {i.id: i for i in s.execute(select(Incident)).scalars()}
        metrics = {m.incident_id: m for m in s.execute(select(IncidentMetrics)).scalars()}
        done = [a for a in s.execute(select(ActionItem)).scalars() if a.status == "done" and a.closed_at
                and UNTIL - rules.CAPA_SPAN <= a.closed_at < UNTIL]
    outcomes = []
    for a in done:
        own = incidents[a.incident_id]
        capa = rules.DoneCapa(a.id or 0, a.title, own.number, own.ref, own.service, a.closed_at)  # type: ignore[arg-type]
        on_service = [(incidents[m.incident_id].number, incidents[m.incident_id].ref, m.detected_at)
                      for m in metrics.values() if m.service == own.service and m.detected_at is not None]
        outcomes.append(rules.capa_outcome(capa, on_service, window=WINDOW, now=min(UNTIL, now)))
    counts = Counter(o.status for o in outcomes)
    return rules.effectiveness(counts, [o for o in outcomes if o.status == "recurred"], limit=limit)


def test_counts_and_the_latest_that_did_not_hold_are_the_rules(engine: Engine) -> None:
    for seed in (1, 2):
        with session_scope(engine) as s:
            s.execute(delete(ActionItem))
            s.execute(delete(IncidentMetrics))
        _history(engine, seed)
        for now, limit in ((UNTIL + timedelta(days=40), 5), (UNTIL - timedelta(days=2), None), (UNTIL, 0)):
            with session_scope(engine) as s:
                got = learning.capa_effectiveness(s, UNTIL, now, WINDOW, limit=limit)
            assert got == _by_the_rule(engine, now, limit), (seed, now, limit)
        assert got["recurred"] and got["held"] and got["no_service"], got  # every branch was taken


def test_the_window_edge_to_the_microsecond(engine: Engine) -> None:
    _history(engine, 3)
    with session_scope(engine) as s:
        got = learning.capa_effectiveness(s, UNTIL, UNTIL + timedelta(days=40), WINDOW, limit=None)
    titles = {item["title"]: item["recurred_by"] for item in got["recurred_items"]}  # type: ignore[index]
    assert "edge fix" in titles and "edge fix 2" not in titles


def test_the_digest_lists_the_latest_fifty_and_all_capa_every_one(engine: Engine, db_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                     ) -> None:
    """Sixty fixes on one service, each followed by an incident within the window: the digest's JSON counts
    all sixty and lists the fifty done last, newest first; ``--all-capa`` lists every one."""
    start = UNTIL - timedelta(days=70)
    with session_scope(engine) as s:
        previous = add_incident(s, "db down", service="db", detected=start - timedelta(hours=1), resolved=None)
        for n in range(60):
            done_action(s, previous, start + timedelta(days=n, hours=1), title=f"fix {n}")
            add_incident(s, f"db down {n}", service="db", detected=start + timedelta(days=n, hours=2), resolved=None)
    week = (UNTIL - timedelta(days=7), UNTIL)
    with session_scope(engine) as s:
        doc = service.build_digest(s, make_settings(db_url), *week, now=UNTIL)
        every = service.build_digest(s, make_settings(db_url), *week, now=UNTIL, capa_items=None)
    capa = doc["keeps_breaking"]["capa_effectiveness"]
    assert (capa["recurred"], len(capa["recurred_items"])) == (60, rules.MAX_CAPA_ITEMS)
    assert [i["title"] for i in capa["recurred_items"]] == [f"fix {n}" for n in range(59, 9, -1)]
    assert len(every["keeps_breaking"]["capa_effectiveness"]["recurred_items"]) == 60
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TIMEZONE", "UTC")
    assert main(["digest", "--since", "2026-10-19", "--until", "2026-10-26", "--format", "json", "--all-capa"]) == 0
    listed = json.loads(capsys.readouterr().out)["keeps_breaking"]["capa_effectiveness"]["recurred_items"]
    assert [i["title"] for i in listed] == [f"fix {n}" for n in range(59, -1, -1)]
