"""``incident-bot incidents similar`` at 100,000 incidents: p50/p95 of the lookup, SQLite and PostgreSQL.

    .venv/bin/python bench/bench_similar.py [--incidents 100000] [--queries 200] [--pg-url URL] [--reuse]

Loads a year of incidents with ``bench/gen_data.py`` (titles and root causes drawn from 16 failure modes
on 30 services, CAPA on closed incidents; the text index and the word counts built as the migration and
the scheduler do; PostgreSQL vacuumed as autovacuum would) into a fresh SQLite file and a fresh PostgreSQL
schema, then times, in one process and the same run, what the CLI and the intro message do for an
incident: ``services.similar.learn`` (the counters and word counts, the ranking, the recurrence walk, the
rows shown) on random incidents of the last month. Each lookup is timed on the wall clock and in this
process's CPU time (less noisy on a shared machine; PostgreSQL's own CPU is not in it), and its SQL
statements are counted. The open path: the intro's lookup for 50 new incidents (what the outbox adds to
the intro job before posting it; deleted afterwards). Also the web list's search through the index
against the old LIKE scan.
``--reuse`` keeps the data (``bench/data/similar.db``, schema ``bench_similar``) and loads it only once.
Prints figures; asserts nothing. The machine is shared: compare within a run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from datetime import timedelta

import gen_data
import harness
from harness import DATA, END, PG_BASE
from sqlalchemy import Engine, delete, event, func, select, text, update

from incident_bot.usecases import incident_list as queries
from incident_bot.usecases import similar
from storage import repo
from storage.db import make_engine, session_scope
from storage.models import Counter, Incident


def p95(values: list[float]) -> float:
    return harness.pct(sorted(values), 0.95) or 0.0


def loaded(url: str, n: int) -> bool:
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM incident_search_words")).scalar_one() > 0 and \
                conn.execute(text("SELECT count(*) FROM incidents")).scalar_one() == n
    except Exception:
        return False


def intro_lookups(engine: Engine, rng: random.Random, n: int = 50) -> dict[str, float]:
    """The open path: what the outbox adds to a new incident's intro job before ``chat.postMessage``
    (``IntroLookup``: its own read transaction, the lookup, the rows shown), for ``n`` new incidents
    opened one after the other as PagerDuty would (a title and a service, no RCA yet), indexed by the
    ORM's flush like the fold's. Then the same incidents are deleted (the next run starts equal)."""
    lookup = similar.IntroLookup(engine, timedelta(days=30))
    ids, times = [], []
    for k in range(n):
        with session_scope(engine) as s:
            number = repo.next_number(s)
            symptom, service = rng.choice(gen_data.FAILURES)[0], rng.choice(gen_data.SERVICES)
            joined = symptom.endswith((" on", " in", " for", " by"))
            inc = Incident(number=number, ref=f"INC-{number}", service=service, status="triggered",
                           title=f"{symptom} {service}" if joined else f"{symptom} on {service}",
                           detected_at=END + timedelta(minutes=k))
            s.add(inc)
            s.flush()
            ids.append(inc.id)
        start = time.perf_counter()
        lookup(ids[-1])
        times.append((time.perf_counter() - start) * 1000)
    with session_scope(engine) as s:
        s.execute(delete(Incident).where(Incident.id.in_(ids)))  # type: ignore[union-attr]
        s.execute(update(Counter).where(Counter.name == "incident").values(value=Counter.value - n))
    return {"intro_p50": statistics.median(times), "intro_p95": p95(times)}


def measure(url: str, n: int, queries_n: int, seed: int, reuse: bool) -> dict[str, float]:
    t0 = time.perf_counter()
    if not (reuse and loaded(url, n)):
        gen_data.load(url, n, end=END, seed=seed, do_reset=True)
    load_s = time.perf_counter() - t0
    engine = make_engine(url)
    statements = [0]
    event.listen(engine, "before_cursor_execute", lambda *_: statements.__setitem__(0, statements[0] + 1))
    rng = random.Random(seed)
    with session_scope(engine) as s:
        recent = list(s.execute(select(Incident.id).where(Incident.detected_at >= END - timedelta(days=30))).scalars())
    picks = [rng.choice(recent) for _ in range(queries_n)]
    wall, cpu, counts, found, flagged = [], [], [], 0, 0
    for iid in picks:
        with session_scope(engine) as s:
            inc = s.get(Incident, iid)
            assert inc is not None
            statements[0] = 0
            start, cpu0 = time.perf_counter(), time.process_time()
            learned = similar.learn(s, inc, window=timedelta(days=30))
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - cpu0) * 1000)
            counts.append(statements[0])
            found += len(learned.similar)
            flagged += learned.recurrence is not None
    intro = intro_lookups(engine, rng)
    search, like = [], []
    for q in ("checkout", "pool exhausted", "certificate", "replication lag"):
        for _ in range(5):
            with session_scope(engine) as s:
                start = time.perf_counter()
                queries.list_incidents(s, queries.IncidentFilter(q=q))
                search.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                s.execute(select(func.count()).select_from(Incident)
                          .where(func.lower(Incident.title).like(f"%{q}%"))).scalar_one()
                like.append((time.perf_counter() - start) * 1000)
    engine.dispose()
    return {**intro, "load_s": load_s, "p50": statistics.median(wall), "p95": p95(wall), "max": max(wall),
            "cpu_p50": statistics.median(cpu), "cpu_mean": statistics.mean(cpu),
            "statements": statistics.mean(counts), "avg_found": found / len(picks),
            "recurrences": flagged / len(picks), "search_p50": statistics.median(search),
            "like_count_p50": statistics.median(like)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg-url", default=PG_BASE)
    ap.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    ap.add_argument("--reuse", action="store_true", help="keep the loaded data and reuse it in the next run")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared machine)")
    DATA.mkdir(parents=True, exist_ok=True)
    targets = []
    if args.only in (None, "sqlite"):
        targets.append(("sqlite", f"sqlite:///{DATA / 'similar.db'}", None))
    if args.only in (None, "postgres"):
        schema = "bench_similar" if args.reuse else f"bench_sim_{uuid.uuid4().hex[:8]}"
        targets.append(("postgres", harness.schema_url(schema, args.pg_url), schema))

    for name, url, schema in targets:
        if schema:
            harness.create_schema(schema, args.pg_url)
        try:
            r = measure(url, args.incidents, args.queries, args.seed, args.reuse)
        finally:
            if schema and not args.reuse:
                harness.drop_schema(schema, args.pg_url)
        print(f"{name:8} {args.incidents:,} incidents (loaded+indexed in {r['load_s']:.0f} s): incidents similar "
              f"p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms, max {r['max']:.1f} ms over {args.queries} lookups; "
              f"CPU in this process p50 {r['cpu_p50']:.1f} ms (mean {r['cpu_mean']:.1f}); "
              f"{r['statements']:.1f} SQL statements per lookup "
              f"({r['avg_found']:.1f} similar found on average, {r['recurrences']:.0%} flagged as recurrences); "
              f"the intro's lookup of a new incident (the open path) p50 {r['intro_p50']:.1f} ms, "
              f"p95 {r['intro_p95']:.1f} ms; "
              f"list search p50 {r['search_p50']:.1f} ms (old LIKE count alone {r['like_count_p50']:.1f} ms); "
              f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
