"""The database ranks as the rules say (storage/text_rank.py): on a generated history of 240 incidents, every
lookup equals the pure core applied to every incident by brute force, on SQLite and PostgreSQL. The history
has what takes each path: repeated titles (the shortcut on the same service), odd words (the full
pass), incidents without a service, a PagerDuty service id shared under two names, common words, unresolved
and merged incidents, ties on the detection time, an incident with more than 48 counted words, CAPA done at
the window's edges; with the words counted at lookup and from the last count. Also the rule that
decides when the last count still holds, and a word that becomes common."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlmodel import Session

from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity as rules
from incident_bot.scheduler import Scheduler
from incident_bot.usecases import regroup
from incident_bot.usecases import similar as svc
from storage import text_rank
from storage.db import session_scope
from storage.models import ActionItem, Incident, IncidentSearch, IncidentSearchWord

from .conftest import make_settings
from .similar_history import T0, add_incident, done_action

WINDOW = timedelta(days=30)
SERVICES = ["checkout-api", "Checkout-API ", "payments", "search", "auth", None, None]
SYMPTOMS = ["5xx errors", "latency high", "timeouts calling provider", "disk full", "certificate expired",
            "consumer lag", "pods crash looping", "memory leak"]
CAUSES = ["connection pool exhausted after deploy", "slow query missing index", "renewal cron disabled",
          "broker restart rebalancing", "cache without eviction", "config push broke resolver", None]
ODD = ["again", "eu-west", "customers", "weekend", "canary", "tenant", "batch", "mobile"]


def make_history(s: Session, n: int = 240, seed: int = 7) -> list[Incident]:
    rng = random.Random(seed)
    out: list[Incident] = []
    for k in range(n):
        service = rng.choice(SERVICES)
        title = f"{(service or 'platform').strip()} {rng.choice(SYMPTOMS)}"
        if rng.random() < 0.3:
            title += f" {rng.choice(ODD)}"
        at = T0 + timedelta(hours=6 * (k // 2))  # two incidents at each detection time: ties on it
        resolved = None if rng.random() < 0.08 else at + timedelta(hours=2)
        inc = add_incident(s, title, service=service, detected=at, resolved=resolved,
                           root_causes=rng.choice(CAUSES) if resolved else None)
        if service and service.strip().lower() == "checkout-api" and rng.random() < 0.5:
            inc.pagerduty_service_id = "PCHECK"
        if k % 9 == 0 and resolved is not None:
            done_action(s, inc, resolved + timedelta(days=rng.choice([1, 10, 29, 31])))
        out.append(inc)
    out[-1].description = " ".join(f"word{i:02d}" for i in range(60))  # more than 48 counted words
    for inc in out[-30:-20]:
        inc.description = " ".join(f"word{i:02d}" for i in range(0, 60, 3))
    s.add_all(out)
    s.flush()
    # A merged incident: it drops out of every answer.
    target, other = out[-5], out[-6]
    other.status = "triggered"
    assert regroup.merge(s, target, other, actor=None).ok
    s.flush()
    return out


def brute_force(s: Session, inc: Incident) -> tuple[list[tuple[str, int]], tuple[str, int] | None]:
    """The rules applied to every incident: (similar refs and scores, (previous, days) of a recurrence)."""
    subject = svc.subject_of(inc)
    ids = list(s.execute(select(Incident.id)).scalars())
    everyone = svc.candidates(s, ids)  # merged ones left out, as the rules say
    terms = [set((t or "").split()) | set((b or "").split())
             for t, b in s.execute(select(IncidentSearch.title_terms, IncidentSearch.body_terms))]
    total, _ = text_rank.totals(s)
    df = {w: sum(w in t for t in terms) for w in subject.stems}
    counted = rules.informative(subject.stems, df, total)
    top = rules.rank(subject, everyone.values(), counted, limit=3)
    fixes: dict[int, list[rec_rules.Fix]] = {}
    for iid, aid, title, done in s.execute(select(ActionItem.incident_id, ActionItem.id, ActionItem.title,
                                                  ActionItem.closed_at).where(ActionItem.status == "done")):
        fixes.setdefault(iid, []).append(rec_rules.Fix(aid, title, done))
    earlier = [rec_rules.Earlier(everyone[i], tuple(f)) for i, f in fixes.items() if i in everyone]
    rec = rec_rules.find(subject, earlier, counted, window=WINDOW)
    return [(m.candidate.ref, m.score) for m in top], (rec.previous.ref, rec.days_since) if rec else None


def test_every_lookup_is_the_rules_applied_to_every_incident(engine: Engine) -> None:
    with session_scope(engine) as s:
        history = make_history(s)
    for counts in ("counted at lookup", "from the last count"):
        if counts == "from the last count":
            with engine.begin() as conn:
                assert text_rank.refresh_word_counts(conn) > 5
        with session_scope(engine) as s:
            shortcut = full = flagged = 0
            for inc in history[40::3] + history[-3:]:
                inc = s.get(Incident, inc.id)
                assert inc is not None
                expected, expected_rec = brute_force(s, inc)
                learned = svc.learn(s, inc, window=WINDOW)
                assert [(p.ref, p.score) for p in learned.similar] == expected, (counts, inc.title)
                got_rec = learned.recurrence
                assert ((got_rec.previous.ref, got_rec.days_since) if got_rec else None) == expected_rec, inc.title
                words = svc.words_of(s, svc.subject_of(inc))
                hit = len(expected) == 3 and all(sc == words.probe.best_score for _, sc in expected)
                shortcut, full, flagged = shortcut + hit, full + (not hit), flagged + (got_rec is not None)
            # Both paths and both answers were exercised (this seed's counts; they only guard the test).
            assert shortcut >= 10 and full >= 10 and flagged >= 5, (shortcut, full, flagged)


def test_the_last_count_decides_only_what_new_incidents_cannot_change() -> None:
    floor = text_rank.WORDS_FLOOR
    assert text_rank.decided(10, cap=20, grown=5) == 10  # 5 new incidents cannot take 10 past 20
    assert text_rank.decided(10, cap=20, grown=11) is None  # 11 could: count it now
    assert text_rank.decided(21, cap=20, grown=400) == 21  # more than 20 then, still (counts only grow)
    assert text_rank.decided(21, cap=25, grown=100) is None  # the cap grew past it
    assert text_rank.decided(None, cap=20, grown=20 - floor + 1) == 0  # not kept: fewer than 10 then
    assert text_rank.decided(None, cap=20, grown=20 - floor + 2) is None


def test_a_word_that_becomes_common_stops_counting(engine: Engine) -> None:
    with session_scope(engine) as s:
        past = add_incident(s, "Gateway outage", service="edge", detected=T0, resolved=T0 + timedelta(hours=1))
        now = add_incident(s, "Gateway down", service="web", detected=T0 + timedelta(days=9), resolved=None)
        assert [m.candidate.ref for m in svc.similar(s, now)] == [past.ref]  # "gateway": 2 points
        for k in range(10):
            add_incident(s, f"Gateway {k} errors", service="lb", detected=T0 + timedelta(days=1, hours=k),
                         resolved=T0 + timedelta(days=2))
    with engine.begin() as conn:
        text_rank.refresh_word_counts(conn)  # "gateway": 12 incidents of 12
    with session_scope(engine) as s:
        assert s.get(IncidentSearchWord, "gateway").docs == 12  # type: ignore[union-attr]
        assert len(svc.similar(s, s.get(Incident, now.id), limit=20)) == 11  # type: ignore[arg-type]
        for k in range(9):  # 21 of 21: more than 20, it no longer counts
            add_incident(s, f"Gateway {k} again", service="lb", detected=T0 + timedelta(days=3, hours=k),
                         resolved=T0 + timedelta(days=4))
        assert svc.similar(s, s.get(Incident, now.id)) == []  # type: ignore[arg-type]  # 12 + 9 > 20: counted


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_the_scheduler_counts_the_words_every_15_minutes(engine: Engine, db_url: str) -> None:
    with session_scope(engine) as s:
        for k in range(12):
            add_incident(s, f"Ledger drift {k}", service="ledger", detected=T0 + timedelta(hours=k), resolved=None)
    clock = _Clock()
    sched = Scheduler(engine, make_settings(db_url), instance_id="a", clock=clock, lease_seconds=60)
    first = sched.tick()
    assert first.errors == [] and first.words == 2  # "ledger" and "drift": 12 incidents each
    with session_scope(engine) as s:
        assert text_rank.totals(s) == (12, 12) and s.get(IncidentSearchWord, "drift").docs == 12  # type: ignore[union-attr]
        add_incident(s, "Ledger drift again", service="ledger", detected=T0 + timedelta(days=1), resolved=None)
    clock.now += timedelta(minutes=14)
    assert sched.tick().words is None  # not due
    clock.now += timedelta(minutes=1)
    assert sched.tick().words == 2
    with session_scope(engine) as s:
        assert text_rank.totals(s) == (13, 13) and s.get(IncidentSearchWord, "drift").docs == 13  # type: ignore[union-attr]
