"""Benchmark of the weekly SEV digest at 10k and 100k incidents on SQLite and PostgreSQL (prints figures).

    .venv/bin/python bench/bench_digest.py                  # both backends, 10k and 100k
    .venv/bin/python bench/bench_digest.py --sizes 10000 --backends sqlite

Data: a year of incidents from bench/gen_data.py (ending 2026-11-01), plus CAPA action items (two or
three per SEV1/SEV2, a mix of open, done, overdue) and a written RCA for 70% of the major incidents,
so every part of the digest has rows to read. The week measured is 2026-W43 in Europe/Berlin (the
169-hour week), with its previous week and the 8-week trend.

Measured:
- in-process: ``build_digest`` (all queries + content) and ``post_digest`` (the same plus Block Kit,
  claim and enqueue; rolled back so it can repeat): median wall time, and the peak of Python
  allocations during one call (tracemalloc);
- ``incident-bot digest --week 2026-W43 --format md|html|json`` end to end in a fresh process: wall time
  and peak RSS (``os.wait4``), which includes interpreter start-up and imports.
SQLite files are kept in bench/data/ (git-ignored) and reused when they hold the right count;
PostgreSQL schemas ``bench_digest_<n>`` are dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import tracemalloc
from datetime import timedelta

import gen_data
import harness
from harness import PY
from sqlalchemy import text
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.core import schedule
from incident_bot.usecases.digest import build_digest, post_digest
from storage.db import is_sqlite, make_engine, session_scope
from storage.models import ActionItem

WEEK = "2026-W43"
ZONE = "Europe/Berlin"
RCA = json.dumps({"summary": "A deploy exhausted the pool.", "root_causes": "No pool limit in review."})


def _with_resolve_times(make):  # type: ignore[no-untyped-def]
    """gen_data predates ``incidents.resolve_times`` (NOT NULL): fill it the way the lifecycle does
    (the resolve instants since the last reopen). A no-op once gen_data sets it itself."""
    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        inc, rows = make(*args, **kwargs)
        inc.setdefault("resolve_times", [inc["resolved_at"].isoformat()] if inc.get("resolved_at") else [])
        return inc, rows
    return wrapped


gen_data.make_incident = _with_resolve_times(gen_data.make_incident)


def add_capa_and_rca(url: str, seed: int = 1) -> str:
    """After a generation: CAPA items for the major incidents (in place of gen_data's) and RCAs for most
    of them. Returns what the progress line says about them."""
    rng = random.Random(seed)
    engine = make_engine(url)
    rows = []
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM action_items"))
        majors = conn.execute(text("SELECT id, detected_at FROM incidents WHERE severity IN ('SEV1', 'SEV2')"))
        for inc_id, detected in majors:
            detected = harness.as_utc(detected)
            for k in range(rng.choice((2, 3))):
                created = detected + timedelta(days=rng.randint(1, 5))
                status = rng.choices(("open", "in_progress", "done", "wont_do"), (4, 2, 5, 1))[0]
                closed = created + timedelta(days=rng.randint(1, 30)) if status in ("done", "wont_do") else None
                rows.append({"incident_id": inc_id, "title": f"Action {k} for incident {inc_id}",
                             "type": "corrective", "priority": rng.choice(("high", "medium", "low")),
                             "owner_id": rng.choice(gen_data.PEOPLE), "status": status,
                             "due_date": (created + timedelta(days=rng.randint(3, 40))).date(),
                             "created_at": created, "closed_at": closed, "ticket_url": None,
                             "created_by": None})
        conn.execute(ActionItem.__table__.insert(), rows)  # type: ignore[attr-defined]
        value = ":rca" if is_sqlite(url) else "CAST(:rca AS JSON)"
        conn.execute(text(f"UPDATE incidents SET rca = {value} WHERE severity IN ('SEV1', 'SEV2') "
                          f"AND number % 10 < 7"), {"rca": RCA})
    engine.dispose()
    return f", {len(rows):,} CAPA items"


def settings_for(url: str) -> Settings:
    return Settings(_env_file=None, database_url=url, timezone=ZONE, digest_channel="C0DIGEST")  # type: ignore[call-arg]


def time_inprocess(url: str, repeat: int) -> dict[str, float]:
    settings = settings_for(url)
    period = schedule.iso_week(WEEK, settings.tzinfo)
    now = period[1] + timedelta(hours=9)
    engine = make_engine(url)

    def build() -> dict:
        with session_scope(engine) as s:
            return build_digest(s, settings, *period, now=now)

    def post() -> bool:
        with Session(engine) as s:  # never committed: the claim rolls back and the next run claims again
            ok = post_digest(s, settings, period, now=now, claimed_by="bench")
            s.rollback()
            return ok

    out: dict[str, float] = {}
    try:
        for name, fn in (("build", build), ("post", post)):
            times = []
            for _ in range(repeat + 1):  # the first call warms caches and the pool
                t0 = time.perf_counter()
                result = fn()
                times.append(time.perf_counter() - t0)
            tracemalloc.start()
            fn()
            out[f"{name}_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            out[f"{name}_s"] = statistics.median(times[1:])
            if name == "build":
                out["major"] = len(result["incidents"]["major"])  # type: ignore[index]
                out["total"] = result["incidents"]["total"]  # type: ignore[index]
            else:
                assert result is True
    finally:
        engine.dispose()
    return out


def time_cli(url: str, fmt: str | None, repeat: int) -> tuple[float, float]:
    """(median wall seconds, max peak RSS MiB) of ``incident-bot digest`` in a fresh process;
    ``fmt=None`` runs ``digest --help`` (start-up and imports only)."""
    cli_args = ["--help"] if fmt is None else ["--week", WEEK, "--format", fmt]
    env = harness.cli_env(url, TIMEZONE=ZONE, RCA_TEMPLATES_DIR="")
    return harness.time_process([PY, "-m", "incident_bot", "digest", *cli_args], env, repeat)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL bench schemas")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    backends = args.backends.split(",")
    startup_s, startup_mib = time_cli(harness.dataset_url("digest", "sqlite", 0), None, 3)
    rows = []
    try:
        for backend in backends:
            for n in sizes:
                url = harness.dataset("digest", backend, n, then=add_capa_and_rca)
                fn = time_inprocess(url, args.repeat)
                cli = {fmt: time_cli(url, fmt, max(3, args.repeat // 2)) for fmt in ("md", "html", "json")}
                rows.append((backend, n, fn, cli))
    finally:
        if not args.keep and "postgres" in backends:
            harness.drop_datasets("digest", sizes)

    print()
    print(f"Week {WEEK} ({ZONE}). CLI start-up alone (`incident-bot digest --help`): "
          f"{startup_s * 1000:.0f} ms, peak RSS {startup_mib:.0f} MiB")
    print("| backend | incidents | in week (major) | build_digest | alloc peak | post_digest | alloc peak "
          "| CLI md | CLI html | CLI json | CLI peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for backend, n, fn, cli in rows:
        walls = " | ".join(f"{cli[f][0] * 1000:.0f} ms" for f in ("md", "html", "json"))
        print(f"| {backend} | {n:,} | {int(fn['total'])} ({int(fn['major'])}) | {fn['build_s'] * 1000:.0f} ms "
              f"| {fn['build_mib']:.1f} MiB | {fn['post_s'] * 1000:.0f} ms | {fn['post_mib']:.1f} MiB "
              f"| {walls} | {max(c[1] for c in cli.values()):.0f} MiB |")
    if len(sizes) == 2:
        small, big = sorted(sizes)
        by = {(b, n): (fn, cli) for b, n, fn, cli in rows}
        print()
        for backend in backends:
            a, b = by.get((backend, small)), by.get((backend, big))
            if a and b:
                print(f"{backend}: {big // 1000}k/{small // 1000}k ratio: build_digest "
                      f"{b[0]['build_s'] / a[0]['build_s']:.1f}x, CLI md wall {b[1]['md'][0] / a[1]['md'][0]:.2f}x, "
                      f"CLI RSS {b[1]['md'][1] / a[1]['md'][1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
