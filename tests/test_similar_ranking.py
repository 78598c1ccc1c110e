"""The database ranks as the rules say (storage/text_rank.py): on a generated history of 240 incidents, every
lookup equals the pure core applied to every incident by brute force, on SQLite and PostgreSQL. The history
has what takes each path: repeated titles (the shortcut on the same service), odd words (the full
pass), incidents without a service, a PagerDuty service id shared under two names, common words, unresolved
and merged incidents, ties on the detection time, an incident with more than 48 counted words, CAPA done at
the window's edges. Also the word-count cache (the cap rule and a word that becomes common)."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import Engine, select
from sqlmodel import Session

from incident_bot.core import recurrence as rec_rules
from incident_bot.core import similarity as rules
from incident_bot.services import regroup
from incident_bot.services import similar as svc
from storage import text_rank, text_search
from storage.db import session_scope
from storage.models import ActionItem, Incident, IncidentSearch

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
    total = text_search.indexed_total(s)
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
    text_rank._CACHE.clear()
    with session_scope(engine) as s:
        history = make_history(s)
    with session_scope(engine) as s:
        shortcut = full = flagged = 0
        for inc in history[40::3] + history[-3:]:
            inc = s.get(Incident, inc.id)
            assert inc is not None
            expected, expected_rec = brute_force(s, inc)
            learned = svc.learn(s, inc, window=WINDOW)
            assert [(p.ref, p.score) for p in learned.similar] == expected, inc.title
            got_rec = learned.recurrence
            assert ((got_rec.previous.ref, got_rec.days_since) if got_rec else None) == expected_rec, inc.title
            words = svc.words_of(s, svc.subject_of(inc))
            hit = len(expected) == 3 and all(sc == words.probe.best_score for _, sc in expected)
            shortcut, full, flagged = shortcut + hit, full + (not hit), flagged + (got_rec is not None)
        # Both paths and both answers were exercised (the counts are this seed's; they only guard the test).
        assert shortcut >= 10 and full >= 10 and flagged >= 5, (shortcut, full, flagged)


def test_the_count_cache_decides_as_a_fresh_count_would() -> None:
    c = text_rank._Count(n=10, cap=20, total=100, at=0.0)
    assert text_rank._still(c, cap=20, total=105, now=1.0) == 10  # 5 new incidents cannot take 10 past 20
    assert text_rank._still(c, cap=20, total=111, now=1.0) is None  # 11 could: count again
    assert text_rank._still(c, cap=20, total=100, now=text_rank.DF_TTL + 1) is None  # too old
    assert text_rank._still(c, cap=20, total=99, now=1.0) is None  # the history shrank
    common = text_rank._Count(n=21, cap=20, total=100, at=0.0)  # "more than 20"
    assert text_rank._still(common, cap=20, total=400, now=1.0) == 21
    assert text_rank._still(common, cap=25, total=500, now=1.0) is None  # the cap grew past what we know


def test_a_word_that_becomes_common_stops_counting(engine: Engine) -> None:
    text_rank._CACHE.clear()
    with session_scope(engine) as s:
        past = add_incident(s, "Gateway outage", service="edge", detected=T0, resolved=T0 + timedelta(hours=1))
        now = add_incident(s, "Gateway down", service="web", detected=T0 + timedelta(days=9), resolved=None)
        assert [m.candidate.ref for m in svc.similar(s, now)] == [past.ref]  # "gateway": 2 points
        for k in range(25):  # then "gateway" is in 27 incidents out of 27: more than 20, it no longer counts
            add_incident(s, f"Gateway {k} errors", service="lb", detected=T0 + timedelta(days=1, hours=k),
                         resolved=T0 + timedelta(days=2))
        assert svc.similar(s, now) == []  # the cached count (2) could have crossed the cap: counted again
