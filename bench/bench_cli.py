"""The console script as people run it: start-up, and the two reports over 100,000 incidents.

    .venv/bin/python bench/bench_cli.py                    # this checkout, SQLite and PostgreSQL
    .venv/bin/python bench/bench_cli.py --compare main     # and main's code beside it, same data
    .venv/bin/python bench/bench_cli.py --compare 291a5e7  # or any commit
    .venv/bin/python bench/bench_cli.py --backends sqlite --runs 5 --json out.json

Each figure is the wall time of a fresh process (interpreter start-up, imports, settings, queries,
output), p50 and p95 over ``--runs`` runs, and its CPU time (user + system, p50: on a shared machine the
steadier of the two; the PostgreSQL server's work is not in it): ``python -c pass`` (the interpreter
alone: what the machine's load does to everything else), ``incident-bot --help``, ``incident-bot metrics
--help`` (a command's own imports), ``metrics`` over a year (every incident) and ``digest`` for a week
(2026-W43, with its 8-week trend). Goals (issue 12): ``--help`` < 200 ms; ``metrics`` and ``digest``
< 1 s at 100,000 incidents.

With ``--compare REV`` the code of REV (``git archive``) runs beside this checkout's, the runs
interleaved (this, REV, this, REV, ...) so that load on the machine falls on both alike, each on the
same data at its own schema revision (the same database when both have the same schema head: every
command measured only reads; otherwise a copy of the SQLite file, a second PostgreSQL schema, migrated
down to REV's head). Data: bench/gen_data.py, a year ending 2026-11-01 with ~10 timeline rows an
incident, kept in bench/data/ (git-ignored) and in PostgreSQL schemas ``bench_cli_<n>`` and
``bench_cli_<n>_base``, reused while they hold the right count (migrated when only the revision differs).
Each tree's bytecode is written by the warm-up run, as an installed bot has it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import gen_data
import harness
from alembic import command
from alembic.script import ScriptDirectory
from harness import END, PY, ROOT
from sqlalchemy import text

from storage import migrate
from storage.db import make_engine

MAIN = "import sys; from incident_bot.cli import main; sys.exit(main())"  # what the console script runs
COMMANDS: dict[str, list[str] | None] = {
    "python -c pass": None,
    "--help": ["--help"],
    "metrics --help": ["metrics", "--help"],
    "metrics, a year": ["metrics", "--since", "2025-11-01", "--until", "2026-11-01"],
    "digest, a week": ["digest", "--week", "2026-W43"],
}
NEEDS_DATA = ("metrics, a year", "digest, a week")


def revision(url: str) -> tuple[int, str | None]:
    """(incidents, schema revision) of a database; (-1, None) when it has no tables."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            n = int(conn.execute(text("SELECT count(*) FROM incidents")).scalar_one())
            return n, conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    except Exception:
        return -1, None
    finally:
        engine.dispose()


def prepare(backend: str, n: int, head: str, *, base: bool, ours: str | None = None) -> str:
    """A database with ``n`` incidents at revision ``head``: kept, migrated to ``head`` when it holds the
    data at another revision (an upgrade is what an installed bot does), or generated.

    ``ours`` (the other tree's database, for ``base``) is shared when both trees have the same schema
    head: every measured command only reads. Otherwise SQLite gets a copy of it, PostgreSQL its own schema.
    """
    if base and ours is not None and head == migrate.packaged_head():
        return ours
    url = harness.dataset_db("cli", backend, n, "_base" if base else "")
    count, at = revision(url)
    if (count, at) == (n, head):
        return url
    t0 = time.perf_counter()
    if backend == "sqlite" and base and ours is not None:  # the same data as ours, at the older revision
        shutil.copyfile(ours.removeprefix("sqlite:///"), url.removeprefix("sqlite:///"))
    elif count != n:
        gen_data.load(url, n, end=END, seed=1, do_reset=True)
    at = revision(url)[1]
    if at != head:
        config = migrate.alembic_config(url)
        newest_first = [r.revision for r in ScriptDirectory.from_config(config).walk_revisions()]
        older = at in newest_first and newest_first.index(head) > newest_first.index(at)
        (command.downgrade if older else command.upgrade)(config, head)
    print(f"  data: {backend} {n:,} incidents at revision {head} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return url


def run_once(tree: Path, args: list[str] | None, url: str, cwd: str) -> harness.Measured:
    """Wall time, peak RSS and CPU time of one fresh process running the CLI from ``tree``.

    Bytecode is written (PYTHONDONTWRITEBYTECODE dropped, if this shell sets it): an installed bot has its
    modules compiled (pip compiles them), and without it every run of a checkout would compile ours again.
    """
    env = harness.cli_env(url, PYTHONPATH=str(tree))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    argv = [PY, "-c", "pass"] if args is None else [PY, "-c", MAIN, *args]
    return harness.run_measured(argv, env, cwd)


def summarise(runs: list[harness.Measured]) -> dict[str, float]:
    ms = sorted(r.wall * 1000 for r in runs)
    return {"p50_ms": statistics.median(ms), "p95_ms": harness.pct(ms, 0.95), "min_ms": ms[0],
            "cpu_p50_ms": statistics.median(r.cpu * 1000 for r in runs), "rss_mib": max(r.rss for r in runs),
            "n": len(ms)}


def export(rev: str, into: Path) -> str:
    """``git archive REV`` into ``into``; returns the revision's schema head."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return migrate.packaged_head(into / "storage" / "migrations") or ""


def print_report(doc: dict[str, Any]) -> None:
    other = doc.get("compare")
    print(f"CLI wall time, fresh process each run, {doc['runs']} runs; {doc['incidents']:,} incidents; "
          f"load average {doc['loadavg']['start']} at the start, {doc['loadavg']['end']} at the end")
    head = "| backend | command | this p50 | this p95 | this CPU |" + (
        f" {other} p50 | {other} p95 | {other} CPU | {other}/this (wall) | (CPU) |" if other else "")
    print(head)
    print("|---|---|---:|---:|---:|" + ("---:|---:|---:|---:|---:|" if other else ""))
    for backend, rows in doc["results"].items():
        for label, r in rows.items():
            t = r["this"]
            line = f"| {backend} | {label} | {t['p50_ms']:.0f} ms | {t['p95_ms']:.0f} ms | {t['cpu_p50_ms']:.0f} ms |"
            if other and "base" in r:
                b = r["base"]
                line += (f" {b['p50_ms']:.0f} ms | {b['p95_ms']:.0f} ms | {b['cpu_p50_ms']:.0f} ms |"
                         f" {b['p50_ms'] / t['p50_ms']:.2f}x | {b['cpu_p50_ms'] / t['cpu_p50_ms']:.2f}x |")
            print(line)
    print("CPU: the process's own user + system time, p50 (what load from others inflates least; on PostgreSQL "
          "the server's work is not in it)")
    print("goals: --help < 200 ms; metrics (a year) and digest (a week) < 1 s at 100,000 incidents")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--incidents", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--compare", metavar="REV", help="also run REV's code (e.g. main), interleaved")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    doc: dict[str, Any] = {"incidents": args.incidents, "runs": args.runs, "compare": args.compare,
                           "loadavg": {"start": harness.loadavg()}, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this": ROOT}
        heads = {"this": migrate.packaged_head() or ""}
        if args.compare:
            (Path(tmp) / "base").mkdir()
            heads["base"] = export(args.compare, Path(tmp) / "base")
            trees["base"] = Path(tmp) / "base"
        cwd = Path(tmp) / "cwd"  # no .env here
        cwd.mkdir()
        for backend in backends:
            urls = {"this": prepare(backend, args.incidents, heads["this"], base=False)}
            if "base" in trees:
                urls["base"] = prepare(backend, args.incidents, heads["base"], base=True, ours=urls["this"])
            rows: dict[str, dict[str, dict[str, float]]] = {}
            for label, cmd in COMMANDS.items():
                if label not in NEEDS_DATA and backend != backends[0]:
                    continue  # start-up alone does not depend on the database
                samples: dict[str, list[harness.Measured]] = {k: [] for k in trees}
                for k in trees:
                    run_once(trees[k], cmd, urls[k], str(cwd))  # warm: bytecode written, pages cached
                for _ in range(args.runs):
                    for k in trees:
                        samples[k].append(run_once(trees[k], cmd, urls[k], str(cwd)))
                rows[label] = {k: summarise(v) for k, v in samples.items()}
                r = rows[label]
                extra = (f"; {args.compare} p50 {r['base']['p50_ms']:.0f} ms, CPU {r['base']['cpu_p50_ms']:.0f} ms"
                         if "base" in r else "")
                print(f"  {backend:8} {label:16} p50 {r['this']['p50_ms']:6.0f} ms  p95 {r['this']['p95_ms']:6.0f} ms"
                      f"  CPU {r['this']['cpu_p50_ms']:6.0f} ms{extra}", flush=True)
            doc["results"][backend] = rows
    doc["loadavg"]["end"] = harness.loadavg()
    print()
    print_report(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
