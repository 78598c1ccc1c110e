"""Benchmark of period metrics at 10k and 100k incidents on SQLite and PostgreSQL (prints figures).

    .venv/bin/python bench/bench_metrics.py                 # both backends, 10k and 100k
    .venv/bin/python bench/bench_metrics.py --sizes 10000 --backends sqlite

For each database it loads a year of incidents with bench/gen_data.py (~10 timeline rows each), then
measures, over the whole year (every incident in the set) and over the last 30 days:
- ``period_metrics`` in-process: median wall time of several calls, and the peak of Python allocations
  during one call (tracemalloc);
- ``incident-bot metrics --format json`` end to end in a fresh process: wall time and peak RSS of that
  process (``os.wait4`` rusage), which includes interpreter start-up, imports and settings.
The goal (issue 4) is under 1 s and 300 MB at 100k; the 100k/10k ratio shows how it scales.
SQLite files are kept in bench/data/ (git-ignored) and reused when they hold the right count;
PostgreSQL schemas ``bench_metrics_<n>`` are dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

import harness
from harness import END, PY

from incident_bot.usecases.metrics import period_metrics
from storage.db import make_engine, session_scope

WINDOWS = {"year": (END - timedelta(days=365), END), "30d": (END - timedelta(days=30), END)}


def time_inprocess(url: str, window: tuple[datetime, datetime], repeat: int) -> tuple[float, float, int]:
    """(median seconds, peak traced MiB, incidents in the MTTR set)."""
    engine = make_engine(url)
    try:
        since, until = window
        times = []
        doc: dict = {}
        for _ in range(repeat + 1):  # the first call warms the cache and the connection pool
            t0 = time.perf_counter()
            with session_scope(engine) as s:
                doc = period_metrics(s, since=since, until=until)
            times.append(time.perf_counter() - t0)
        tracemalloc.start()
        with session_scope(engine) as s:
            period_metrics(s, since=since, until=until)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return statistics.median(times[1:]), peak, doc["mttr_s"]["n"]
    finally:
        engine.dispose()


def time_cli(url: str, window: tuple[datetime, datetime] | None, repeat: int) -> tuple[float, float]:
    """(median wall seconds, max peak RSS MiB) of ``incident-bot metrics`` in a fresh process.

    With ``window=None`` it runs ``metrics --help``: the cost of starting Python and importing the CLI,
    which every run pays before the first query.
    """
    if window is None:
        cli_args = ["--help"]
    else:
        since, until = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
        cli_args = ["--since", since, "--until", until, "--format", "json"]
    return harness.time_process([PY, "-m", "incident_bot", "metrics", *cli_args], harness.cli_env(url), repeat)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the PostgreSQL bench schemas")
    p.add_argument("--json", type=Path, help="also write the figures to this file (for bench/run)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    backends = args.backends.split(",")
    results: dict[tuple[str, int, str], tuple[float, float, int, float, float]] = {}
    startup_s, startup_mib = time_cli(harness.dataset_url("metrics", "sqlite", 0), None, 3)
    try:
        for backend in backends:
            for n in sizes:
                url = harness.dataset("metrics", backend, n)
                for wname, window in WINDOWS.items():
                    fn_s, fn_mib, mttr_n = time_inprocess(url, window, args.repeat)
                    cli_s, cli_mib = time_cli(url, window, max(3, args.repeat // 2))
                    results[(backend, n, wname)] = (fn_s, fn_mib, mttr_n, cli_s, cli_mib)
    finally:
        if not args.keep and "postgres" in backends:
            harness.drop_datasets("metrics", sizes)

    if args.json:
        args.json.write_text(json.dumps({
            "startup": {"cli_s": startup_s, "cli_mib": startup_mib},
            "results": [{"backend": b, "incidents": n, "window": w, "mttr_n": r[2], "fn_s": r[0],
                         "fn_mib": r[1], "cli_s": r[3], "cli_mib": r[4]}
                        for (b, n, w), r in results.items()]}, indent=1))
    print()
    print(f"CLI start-up alone (`incident-bot metrics --help`): {startup_s * 1000:.0f} ms, "
          f"peak RSS {startup_mib:.0f} MiB")
    print("| backend | incidents | window | MTTR n | period_metrics | py alloc peak | CLI wall "
          "| CLI peak RSS |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for (backend, n, wname), (fn_s, fn_mib, mttr_n, cli_s, cli_mib) in results.items():
        print(f"| {backend} | {n:,} | {wname} | {mttr_n:,} | {fn_s * 1000:.0f} ms | {fn_mib:.1f} MiB "
              f"| {cli_s * 1000:.0f} ms | {cli_mib:.0f} MiB |")
    if len(sizes) == 2:
        small, big = sorted(sizes)
        print()
        for backend in backends:
            for wname in WINDOWS:
                a, b = results.get((backend, small, wname)), results.get((backend, big, wname))
                if a and b:
                    print(f"{backend} {wname}: {big // 1000}k/{small // 1000}k ratio: period_metrics "
                          f"{b[0] / a[0]:.1f}x, CLI wall {b[3] / a[3]:.2f}x, CLI RSS {b[4] / a[4]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
