"""``incident-bot incidents similar`` at 100,000 incidents: p50/p95 of the lookup, SQLite and PostgreSQL.

    .venv/bin/python bench/bench_similar.py [--incidents 100000] [--queries 200] [--pg-url URL]

Loads a year of incidents with ``bench/gen_data.py`` (titles and root causes drawn from 16 failure modes
on 30 services, CAPA on closed incidents; the text index built by ``storage.text_search.rebuild``) into a
fresh SQLite file and a fresh PostgreSQL schema, then times, in one process and the same run, what the
CLI and the intro message do for an incident: ``services.similar.learn`` (the word counts, the text and
same-service candidates, the ranking, the details of the top 3, and the recurrence check) on random
incidents of the last month. Also the web list's search through the index against the old LIKE scan.
Prints figures; asserts nothing. The machine is shared: compare within a run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_data

from incident_bot.usecases import similar
from incident_bot.web import queries
from storage.db import make_engine, session_scope
from storage.models import Incident

END = datetime(2026, 11, 1, tzinfo=UTC)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def measure(url: str, n: int, queries_n: int, seed: int) -> dict[str, float]:
    t0 = time.perf_counter()
    gen_data.load(url, n, end=END, seed=seed, do_reset=True)
    load_s = time.perf_counter() - t0
    engine = make_engine(url)
    rng = random.Random(seed)
    with session_scope(engine) as s:
        recent = list(s.execute(select(Incident.id).where(Incident.detected_at >= END - timedelta(days=30))).scalars())
    picks = [rng.choice(recent) for _ in range(queries_n)]
    times, found, flagged = [], 0, 0
    for iid in picks:
        with session_scope(engine) as s:
            inc = s.get(Incident, iid)
            assert inc is not None
            start = time.perf_counter()
            learned = similar.learn(s, inc, window=timedelta(days=30))
            times.append((time.perf_counter() - start) * 1000)
            found += len(learned.similar)
            flagged += learned.recurrence is not None
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
    return {"load_s": load_s, "p50": statistics.median(times), "p95": pct(times, 95), "max": max(times),
            "avg_found": found / len(picks), "recurrences": flagged / len(picks),
            "search_p50": statistics.median(search), "like_count_p50": statistics.median(like)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--only", choices=("sqlite", "postgres"), default=None)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared machine)")
    data = Path(__file__).parent / "data"
    data.mkdir(exist_ok=True)
    targets = []
    if args.only in (None, "sqlite"):
        targets.append(("sqlite", f"sqlite:///{data / 'similar.db'}", None))
    if args.only in (None, "postgres"):
        schema = f"bench_sim_{uuid.uuid4().hex[:8]}"
        targets.append(("postgres", f"{args.pg_url}?options=-csearch_path%3D{schema}", schema))
    for name, url, schema in targets:
        if schema:
            import psycopg
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            r = measure(url, args.incidents, args.queries, args.seed)
        finally:
            if schema:
                import psycopg
                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        print(f"{name:8} {args.incidents:,} incidents (loaded+indexed in {r['load_s']:.0f} s): incidents similar "
              f"p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms, max {r['max']:.1f} ms over {args.queries} lookups "
              f"({r['avg_found']:.1f} similar found on average, {r['recurrences']:.0%} flagged as recurrences); "
              f"list search p50 {r['search_p50']:.1f} ms (old LIKE count alone {r['like_count_p50']:.1f} ms); "
              f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
