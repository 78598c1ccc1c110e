"""Generate a large, realistic incident history for benchmarks (not a test, not the service path).

    .venv/bin/python bench/gen_data.py --url sqlite:///bench/data/100k.db --incidents 100000 --reset

Writes N incidents spread over the year before ``--end`` (default 2026-11-01Z), ~10 timeline rows each,
and the matching ``incident_metrics`` rows computed with :func:`incident_bot.core.durations.durations`
(the same function the service path uses), so figures from the bench are the figures the bot would show.
Bulk loads: ``executemany`` on SQLite, ``COPY`` on PostgreSQL; rows are produced in chunks so memory
stays flat. Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, text

from incident_bot.core.durations import durations
from storage import migrate, text_rank, text_search
from storage.db import is_sqlite, make_engine, normalise_url
from storage.models import ActionItem, Counter, Incident, IncidentMetrics, TimelineEvent

SEVERITY_WEIGHTS = {"SEV1": 4, "SEV2": 14, "SEV3": 50, "SEV4": 32}
SERVICES = [f"svc-{name}" for name in (
    "checkout", "payments", "search", "auth", "api-gateway", "catalog", "cart", "inventory", "email",
    "notifications", "billing", "ledger", "reports", "ml-ranking", "cdn", "dns", "k8s-prod", "kafka",
    "postgres-main", "redis-cache", "mobile-bff", "web", "admin", "uploads", "images", "video", "chat",
    "support", "maps", "pricing")]
PEOPLE = [f"U{n:08d}" for n in range(200)]
NOTES = ("Looking at dashboards", "Error rate climbing on", "Rolled back the last deploy of",
         "Paged the owning team of", "Customer reports confirm impact on", "Scaled out",
         "Status page updated",
         "Root cause suspected in", "Failover started for", "Traffic drained from")
CHUNK = 5_000  # incidents per batch (~50,000 timeline rows)
# Words of titles and root causes (bench/bench_similar.py): failure modes with their usual symptoms and
# causes, so that similar incidents exist in the history the way they do in a team's.
FAILURES = (
    ("Elevated 5xx", "connection pool exhausted after a deploy"), ("Latency", "slow query missing an index"),
    ("Outage", "bad configuration push"), ("Degraded", "noisy neighbour on the node pool"),
    ("Timeouts calling", "upstream provider latency and retry storm"), ("Disk full on", "log volume not rotated"),
    ("Memory leak in", "cache without eviction"), ("Certificate expired for", "renewal job disabled"),
    ("Queue backlog in", "consumer group rebalancing after a broker restart"),
    ("Replication lag on", "long running transaction on the primary"),
    ("DNS resolution failures in", "resolver misconfigured by a config push"),
    ("Error budget burn on", "feature flag rollout to all users"), ("Deploy failed for", "schema migration lock"),
    ("Cache stampede on", "cold cache after a restart"), ("Rate limited by", "quota exhausted by a batch job"),
    ("Crash loop in", "out of memory after a dependency upgrade"),
)


def lognormal_s(rng: random.Random, median_s: float, sigma: float, cap_s: int) -> int:
    return min(cap_s, int(rng.lognormvariate(math.log(median_s), sigma)))


def make_incident(rng: random.Random, number: int, detected: datetime, end: datetime
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One incident's milestones and timeline, shaped like real on-call data (long tails, gaps)."""
    sev = rng.choices(list(SEVERITY_WEIGHTS), weights=list(SEVERITY_WEIGHTS.values()))[0]
    service = rng.choice(SERVICES)
    # 55% detected by an alert at the start of impact; the rest noticed later (long tail).
    ttd = 0 if rng.random() < 0.55 else lognormal_s(rng, 420, 1.1, 2 * 86400)
    impact = detected - timedelta(seconds=ttd)
    ack: datetime | None = detected + timedelta(seconds=lognormal_s(rng, 150, 1.0, 6 * 3600))
    if rng.random() < 0.04 or ack >= end:  # some incidents are never acknowledged
        ack = None
    ttm = lognormal_s(rng, {"SEV1": 2400, "SEV2": 3000, "SEV3": 3600, "SEV4": 5400}[sev], 1.0, 5 * 86400)
    mitigated: datetime | None = max(impact + timedelta(seconds=ttm),
                                     (ack or detected) + timedelta(seconds=rng.randint(30, 900)))
    fix_s = lognormal_s(rng, 1200, 1.2, 3 * 86400)
    resolved: datetime | None = max(mitigated, detected) + timedelta(seconds=fix_s)
    if resolved >= end or rng.random() < 0.015:  # still open at the end of the history
        resolved = None
        if mitigated >= end or rng.random() < 0.5:
            mitigated = None
    closed = resolved + timedelta(days=rng.uniform(1, 14)) if resolved and rng.random() < 0.6 else None
    if closed is not None and closed >= end:
        closed = None
    status = ("closed" if closed else "resolved" if resolved else "mitigated" if mitigated
              else "acknowledged" if ack else "triggered")
    milestones = {"impact_started_at": impact, "detected_at": detected, "acknowledged_at": ack,
                  "mitigated_at": mitigated, "resolved_at": resolved, "closed_at": closed}
    commander = rng.choice(PEOPLE)
    words = random.Random(number * 7919 + 17)  # its own stream: every other figure stays as it was
    symptom, cause = words.choice(FAILURES)
    inc = {"id": number, "number": number, "ref": f"INC-{number}", "service": service, "severity": sev,
           "status": status, "title": f"{rng.choice(('Elevated 5xx', 'Latency', 'Outage', 'Degraded'))} "
                                      f"on {service}",
           "origin": "pagerduty" if rng.random() < 0.8 else "slack", "commander_id": commander,
           **milestones}
    joined = symptom.endswith((" on", " in", " for", " by"))
    inc["title"] = f"{symptom} {service}" if joined else f"{symptom} on {service}"
    inc["rca"] = ({"summary": f"{symptom} on {service} for users.", "root_causes": f"{cause.capitalize()}."}
                  if closed is not None else {})

    def row(at: datetime, kind: str, txt: str, milestone: str | None = None) -> dict[str, Any]:
        source = "slack" if kind == "note" else "pagerduty"
        return {"incident_id": number, "occurred_at": at, "source": source, "kind": kind, "actor": commander,
                "text": txt, "milestone": milestone}

    rows = [row(detected, "opened", inc["title"], "detected_at")]
    if ttd:
        rows.append(row(impact, "impact_started", "Impact started", "impact_started_at"))
    for m, kind in (("acknowledged_at", "acknowledged"), ("mitigated_at", "mitigated"),
                    ("resolved_at", "resolved"), ("closed_at", "closed")):
        if milestones[m] is not None:
            rows.append(row(milestones[m], kind, kind.capitalize(), m))  # type: ignore[arg-type]
    last = resolved or mitigated or detected + timedelta(hours=2)
    span = max(1.0, (last - detected).total_seconds())
    for _ in range(max(0, 10 - len(rows) + rng.randint(-2, 2))):
        at = detected + timedelta(seconds=rng.uniform(0, span))
        rows.append(row(at, "note", f"{rng.choice(NOTES)} {service}"))
    return inc, rows


Rows = list[dict[str, Any]]


def actions_for(inc: dict[str, Any], end: datetime) -> Rows:
    """CAPA of a closed incident: one or two, most of them done within three weeks."""
    if inc["closed_at"] is None:
        return []
    rng = random.Random(inc["number"] * 104729 + 3)
    out = []
    for _ in range(rng.choice((1, 1, 2))):
        done = inc["closed_at"] + timedelta(days=rng.uniform(0.5, 21))
        status = "done" if rng.random() < 0.7 and done < end else "open"
        out.append({"incident_id": inc["id"], "title": f"Prevent: {inc['rca']['root_causes'][:80]}",
                    "type": "corrective", "priority": "medium", "status": status,
                    "created_at": inc["closed_at"], "closed_at": done if status == "done" else None})
    return out


def generate(n: int, *, end: datetime, seed: int) -> Iterator[tuple[Rows, Rows, Rows]]:
    """Chunks of (incidents, timeline rows, metrics rows), detection times ascending over the year."""
    rng = random.Random(seed)
    start = end - timedelta(days=365)
    times = sorted(rng.uniform(0, 365 * 86400) for _ in range(n))
    for lo in range(0, n, CHUNK):
        incs, timeline, metrics = [], [], []
        for i in range(lo, min(n, lo + CHUNK)):
            detected = (start + timedelta(seconds=int(times[i]))).replace(microsecond=0)
            inc, rows = make_incident(rng, i + 1, detected, end)
            incs.append(inc)
            timeline += rows
            metrics.append({"incident_id": inc["id"], "severity": inc["severity"], "service": inc["service"],
                            "detected_at": inc["detected_at"], "resolved_at": inc["resolved_at"],
                            **durations(inc)})
        yield incs, timeline, metrics


def _complete(table: Table, rows: list[dict[str, Any]], now: datetime) -> tuple[list[str], list[tuple]]:
    """Column list and value tuples, filling NOT NULL columns we did not set from the model's defaults
    (so a column added to the model later does not break the generator)."""
    cols = [c for c in table.columns if c.name in rows[0] or (not c.nullable and not c.primary_key)]
    fill: dict[str, Any] = {}
    for c in cols:
        if c.name in rows[0]:
            continue
        if c.name in ("created_at", "updated_at", "recorded_at"):
            fill[c.name] = now
        elif c.default is not None and c.default.is_scalar:
            fill[c.name] = c.default.arg  # type: ignore[attr-defined]
        elif c.name == "rca" or c.name in ("payload", "result"):
            fill[c.name] = {}
        elif c.name == "resolve_times":
            fill[c.name] = []
        else:
            raise SystemExit(f"gen_data: no value for NOT NULL column {table.name}.{c.name}")
    names = [c.name for c in cols]
    return names, [tuple(r[k] if k in r else fill[k] for k in names) for r in rows]


def _sqlite_load(engine: Engine, table: Table, rows: list[dict[str, Any]], now: datetime) -> None:
    names, values = _complete(table, rows, now)
    # dialect_impl: the processor the app's own statements use (SQLite DATETIME text without an offset);
    # the bare TypeDecorator's would write str(datetime), a format the app never writes.
    procs = [table.c[n].type.dialect_impl(engine.dialect).bind_processor(engine.dialect) for n in names]
    values = [tuple(p(v) if p else v for p, v in zip(procs, r, strict=True)) for r in values]
    marks = ", ".join("?" for _ in names)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        cur.executemany(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", values)
        cur.execute("COMMIT")
    finally:
        raw.close()


def _pg_load(engine: Engine, table: Table, rows: list[dict[str, Any]], now: datetime) -> None:
    names, values = _complete(table, rows, now)
    json_cols = {i for i, n in enumerate(names) if type(table.c[n].type).__name__ in ("JSON", "MutableDict")
                 or n == "rca"}
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for r in values:
                copy.write_row([json.dumps(v) if i in json_cols else v for i, v in enumerate(r)])
        raw.commit()
    finally:
        raw.close()


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        for name in ("incident_metrics", "timeline_events", "action_items", "pagerduty_links", "outbox",
                     "incident_search", "incidents"):
            conn.execute(text(f"DELETE FROM {name}"))
        conn.execute(text("DELETE FROM counters WHERE name = 'incident'"))


def load(url: str, n: int, *, end: datetime, seed: int, do_reset: bool) -> dict[str, float]:
    url = normalise_url(url)
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            existing = conn.execute(text("SELECT count(*) FROM incidents")).scalar_one()
        if existing and not do_reset:
            raise SystemExit(f"gen_data: {existing} incidents already in the database; pass --reset")
        if existing:
            reset(engine)
        loader = _sqlite_load if is_sqlite(url) else _pg_load
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        counts = {"incidents": 0, "timeline_events": 0}
        for incs, timeline, metrics in generate(n, end=end, seed=seed):
            loader(engine, Incident.__table__, incs, now)  # type: ignore[attr-defined]
            loader(engine, TimelineEvent.__table__, timeline, now)  # type: ignore[attr-defined]
            loader(engine, IncidentMetrics.__table__, metrics, now)  # type: ignore[attr-defined]
            actions = [a for inc in incs for a in actions_for(inc, end)]
            if actions:
                loader(engine, ActionItem.__table__, actions, now)  # type: ignore[attr-defined]
            counts["incidents"] += len(incs)
            counts["timeline_events"] += len(timeline)
        with engine.begin() as conn:
            text_search.rebuild(conn)  # the bulk load bypassed the ORM, whose flush keeps the index
            # Migration 0002 seeds the counter at 0: replace it (a fresh database has no incidents to reset).
            conn.execute(Counter.__table__.delete().where(Counter.__table__.c.name == "incident"))  # type: ignore[attr-defined]
            conn.execute(Counter.__table__.insert().values(name="incident", value=n))  # type: ignore[attr-defined]
            text_rank.refresh_word_counts(conn)  # what the scheduler does every 15 minutes
            if not is_sqlite(url):
                conn.execute(text("SELECT setval(pg_get_serial_sequence('incidents', 'id'), "
                                  "(SELECT coalesce(max(id), 1) FROM incidents))"))
            conn.execute(text("ANALYZE"))
        if not is_sqlite(url):
            # What autovacuum does to a table in service: the visibility map set, the GIN index's pending
            # list merged (the bulk load left it long, and every text search would read it through).
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text(
                    "VACUUM ANALYZE incidents, incident_search, incident_metrics, timeline_events, action_items"))
        return {**counts, "seconds": time.perf_counter() - t0}
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=os.environ.get("DATABASE_URL"),
                   help="database URL (default: DATABASE_URL)")
    p.add_argument("--incidents", type=int, default=100_000)
    p.add_argument("--end", default="2026-11-01T00:00:00Z", help="the history ends here (exclusive)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reset", action="store_true", help="delete existing incidents first")
    args = p.parse_args(argv)
    if not args.url:
        p.error("--url or DATABASE_URL is required")
    end = datetime.fromisoformat(args.end.replace("Z", "+00:00"))
    result = load(args.url, args.incidents, end=end, seed=args.seed, do_reset=args.reset)
    print(f"loaded {result['incidents']:,} incidents and {result['timeline_events']:,} timeline rows "
          f"in {result['seconds']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
