"""CAPA effectiveness as the digest reads it (``usecases.learning.capa_effectiveness``) on a real database
(SQLite and PostgreSQL) is ``core.learning.capa_outcome`` applied to every done action against every incident
on its service: the same counts, and the actions that did not hold listed the latest first, cut at the limit.

A generated history on a coarse clock (hours), so that ties, the window's edges to the microsecond, an
action done before its own incident was detected, merged incidents and incidents without a service come up.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select

from incident_bot.core import learning as rules
from incident_bot.usecases import learning
from storage.db import session_scope
from storage.models import ActionItem, Incident, IncidentMetrics

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
