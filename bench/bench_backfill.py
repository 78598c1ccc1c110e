"""Backfill benchmark: import N PagerDuty incidents with their log entries from the HTTPS stand-in.

Prints wall time, requests and peak memory (RSS high-water mark of this process, which also runs the
stand-in, so it is an upper bound) for each size. No asserts: figures go in bench/RESULTS.md.

    .venv/bin/python bench/bench_backfill.py [--sizes 5000,20000,50000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta

import harness  # noqa: F401  (puts the checkout on sys.path: tests.standins is not installed)

from incident_bot.config import Settings
from incident_bot.demo.pagerduty_standin import PagerDutyStandIn
from incident_bot.pagerduty.backfill import RestHistory, make_client
from incident_bot.pagerduty.inbound import PagerDutyApplier
from incident_bot.usecases import backfill as svc
from storage import migrate
from storage.db import make_engine
from tests.standins.pagerduty_history import make_history


def one(n: int, url: str | None) -> dict[str, float]:
    since = datetime(2025, 1, 1, tzinfo=UTC)
    until = since + timedelta(days=365)
    history = make_history(n, since=since, until=until, services=20, seed=n)
    with tempfile.TemporaryDirectory() as tmp:
        db = url or f"sqlite:///{tmp}/bench.db"
        migrate.upgrade(db)
        settings = Settings(_env_file=None, database_url=db, group_by="none")  # type: ignore[call-arg]
        engine = make_engine(db)
        with PagerDutyStandIn() as standin:
            history.attach(standin)
            # The stand-in answers at once; pacing is lifted so the figure is our own cost, not the 960/min.
            client, stats = make_client("tok", standin.url, ca_bundle=standin.ca_pem_path, per_minute=10_000_000)
            started = time.perf_counter()
            summary = svc.run(engine, settings, RestHistory(client, stats), svc.Options(since=since, until=until),
                              applier=PagerDutyApplier(settings, imported=True))
            wall = time.perf_counter() - started
        engine.dispose()
    return {"incidents": summary.incidents, "log_entries": summary.log_entries, "requests": stats.requests,
            "wall_s": wall, "per_s": summary.incidents / wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "at_960_per_min_s": stats.requests / 16.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,20000,50000")
    ap.add_argument("--database-url", default=None, help="a migrated PostgreSQL schema; default a temp SQLite")
    args = ap.parse_args()
    print(f"{'incidents':>10} {'entries':>9} {'requests':>8} {'wall s':>8} {'inc/s':>7} {'peak MB':>8} "
          f"{'PD time at 960/min':>18}")
    for n in (int(x) for x in args.sizes.split(",")):
        r = one(n, args.database_url)
        print(f"{r['incidents']:>10,} {r['log_entries']:>9,} {r['requests']:>8,} {r['wall_s']:>8.1f} "
              f"{r['per_s']:>7.0f} {r['peak_rss_mb']:>8.0f} {r['at_960_per_min_s'] / 60:>15.1f} min", flush=True)


if __name__ == "__main__":
    main()
