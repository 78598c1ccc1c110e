"""Webhook ingest: ``incident-bot serve`` against a minimal reference app, side by side, same run.

    .venv/bin/python bench/bench_ingest.py                       # SQLite and PostgreSQL, both apps
    .venv/bin/python bench/bench_ingest.py --backends sqlite --duration 10 --json out.json
    .venv/bin/python bench/bench_ingest.py --backends sqlite --apps ours --profile   # + py-spy profile

For each database and each app, a fresh database, a fresh server process on 127.0.0.1, and
bench/loadgen.py in its own process with pre-signed PagerDuty deliveries (triggers, acks, notes,
resolves, 30% redeliveries):
(a) closed loop, ``--concurrency`` connections for ``--duration`` s: maximum sustained deliveries/s;
(b) open loop at ``--rate`` deliveries/s for ``--duration`` s: p50/p99 latency of the 202.
Our server runs as an operator runs it (``incident-bot serve``, default settings, INFO logs to a file,
outbox worker on) with the Slack stand-in in this process enforcing ``conversations.create`` 20/min.
Goals (issue 6): ours/reference throughput >= 0.5, p99 < 25 ms at 200/s. The set-up (databases, server
processes, the Slack stand-in, the load generator) is bench/harness.py's.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import PD_SECRET, PY

from incident_bot.demo.slack_standin import SlackStandIn

GOAL_RATIO, GOAL_P99_MS = 0.5, 25.0


# -- profile reading --------------------------------------------------------------------------------

_HTTP = "HTTP stack (uvicorn, Starlette, FastAPI, anyio, asyncio)"
_ORM, _OURS, _DB = "SQLAlchemy (ORM, Core, pool)", "our code (incident_bot, storage)", "database driver"
LAYERS = (  # leaf frame's file -> layer, first match wins
    ("sqlalchemy/", _ORM), ("sqlmodel/", _ORM), ("psycopg/", _DB), ("sqlite3/", _DB),
    ("slack_sdk/", "Block Kit builders (slack_sdk.models)"), ("uvicorn/", _HTTP), ("starlette/", _HTTP),
    ("fastapi/", _HTTP), ("anyio/", _HTTP), ("asyncio/", _HTTP), ("logging/", "logging"),
    ("incident_bot/observability", "logging"), ("incident_bot/", _OURS), ("storage/", _OURS),
    ("pydantic", "pydantic"), ("dateutil/", "dateutil"), ("json/", "json"), ("threading", "threads, locks"),
    ("queue.py", "threads, locks"),
)
ROLES = (  # any frame of the stack -> what the thread was doing, first match wins
    ("pipeline/fold.py", "fold worker (applies stored inputs)"),
    ("pipeline/inbox.py", "accept: the inbox INSERT"),
    ("pipeline/outbox_worker.py", "outbox worker"), ("scheduler.py", "scheduler"),
    ("slack_bolt/", "Bolt: verify, parse, dispatch, ack (event loop)"),
    ("uvicorn/", "event loop: HTTP parsing, routing, responses"),
)


def profile_summary(raw: Path, seconds: float, rate: int = 250) -> dict[str, Any]:
    """py-spy ``--gil`` raw output -> where the interpreter's time went (start-up imports left out).

    With ``--gil`` only the thread holding the GIL is sampled, so the counts are the process's Python
    CPU time; ``gil_busy`` is the share of wall time some thread held it (1.0 = one core saturated).
    """
    layers: collections.Counter[str] = collections.Counter()
    roles: collections.Counter[str] = collections.Counter()
    ours_inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")[1:]
        if not frames or any("_find_and_load" in f for f in frames):
            continue
        c = int(count)
        total += c
        leaf = frames[-1]
        layers[next((name for key, name in LAYERS if key in leaf), "other")] += c
        roles[next((name for key, name in ROLES if any(key in f for f in frames)), "other")] += c
        for name in {re.sub(r":\d+\)$", ")", f) for f in frames if "incident_bot/" in f or "storage/" in f}:
            ours_inclusive[name] += c
    if not total:
        return {}

    def pcts(counter: collections.Counter[str], n: int = 12) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {"samples": total, "gil_busy": round(total / (rate * seconds), 2), "layers": pcts(layers),
            "roles": pcts(roles), "ours": pcts(ours_inclusive, 14)}


# -- the benchmark ----------------------------------------------------------------------------------

ACCEPT_ONLY = "ours --no-worker"
# The split topology whole: the accept-only replica and an `incident-bot worker` process folding and
# delivering beside it (the CPU of both is counted).
SPLIT = "ours split"
# `serve` with its workers in threads of its one process (SERVE_WORKER_PROCESS=false): the default on SQLite,
# and on PostgreSQL before the worker child (incident_bot/worker_process.py).
THREADS = "ours threads"
# fewer transactions in flight per replica: see the notes in RESULTS.md
TUNED = {"DB_POOL_SIZE": "2", "DB_POOL_OVERFLOW": "0"}


def run_phase(app: str, backend: str, mode: str, tmp: Path, args: argparse.Namespace, slack: SlackStandIn, *,
              rate: float | None = None, replicas: int = 1, env: dict[str, str] | None = None,
              profile: Path | None = None) -> dict[str, Any]:
    """One measurement on a fresh database and fresh server process(es)."""
    label = app + (f" x{replicas}" if replicas > 1 else "")
    label += "".join(f" {k}={v}" for k, v in (env or {}).items())
    name = f"{app}{replicas}{'t' if env else ''}_{backend}_{mode}{int(rate or 0)}{'_prof' if profile else ''}"
    name = re.sub(r"[^\w.]+", "_", name)
    with harness.database(backend, tmp, name, migrate=app != "reference") as url, \
            contextlib.ExitStack() as stack:
        extra = {**(env or {}), **({"SERVE_WORKER_PROCESS": "false"} if app == THREADS else {})}
        servers = [stack.enter_context(harness.ours(url, slack, tmp, f"{name}_{i}", profile=profile,
                                                    accept_only=app in (ACCEPT_ONLY, SPLIT), **extra)
                                       if app != "reference" else harness.reference(url, tmp, name))
                   for i in range(replicas)]
        pids = [srv.pid for srv in servers]
        if app == SPLIT:
            pids.append(stack.enter_context(harness.worker(url, slack, tmp, name)).pid)
        urls = ",".join(srv.url for srv in servers)
        cpu0 = sum(harness.cpu_seconds(pid) for pid in pids)
        if mode == "closed":
            doc = harness.loadgen(urls, workload="pd-mix", mode="closed", concurrency=args.concurrency,
                          duration=args.duration, warmup=2, secret=PD_SECRET, prefix="PC", seed=1)
        else:
            doc = harness.loadgen(urls, workload="pd-mix", mode="open", rate=rate, duration=args.duration, warmup=1,
                          secret=PD_SECRET, prefix="PO", seed=2)
        # under py-spy the pid is py-spy's: its CPU is not the server's
        doc["server_cpu_s"] = None if profile else round(sum(harness.cpu_seconds(pid) for pid in pids) - cpu0, 2)
        if app in ("ours", SPLIT, THREADS):
            doc["fold_lag"] = fold_lag(url)
    return {"app": label, "backend": backend, "mode": mode, "rate": rate, **doc}


def fold_lag(url: str, timeout: float = 120.0) -> dict[str, Any]:
    """Once the fold worker caught up: from a delivery's 202 (its inbox row) to its effects committed
    (the row's done mark, in the same transaction), p50/p99 over every applied delivery, and how long the
    backlog took to clear after the load stopped."""
    from sqlalchemy import text

    from storage.db import make_engine

    t0 = time.monotonic()
    harness.wait_folded(url, timeout)
    caught_up = round(time.monotonic() - t0, 1)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT received_at, done_at FROM inbox WHERE done_at IS NOT NULL "
                                     "AND payload IS NULL AND outcome = 'processed'")).all()
    finally:
        engine.dispose()
    lags = sorted(1000 * (harness.as_utc(d) - harness.as_utc(r)).total_seconds() for r, d in rows)
    p50, p99 = harness.pct(lags, 0.5), harness.pct(lags, 0.99)
    return {"applied": len(lags), "p50_ms": None if p50 is None else round(p50, 1),
            "p99_ms": None if p99 is None else round(p99, 1), "caught_up_after_s": caught_up}


Run = tuple[str, str, str, float | None, int, dict[str, str] | None]


def plan(args: argparse.Namespace) -> list[Run]:
    """(backend, app, mode, rate, replicas, env) in the order they run: the two apps back to back."""
    runs: list[Run] = []
    for backend in args.backends.split(","):
        for app in args.apps.split(","):
            runs += [(backend, app, "closed", None, 1, None), (backend, app, "open", args.rate, 1, None)]
            if app != "ours":  # the low rates and replicas: only the default topology
                continue
            runs += [(backend, app, "open", rate, 1, None) for rate in args.low_rates]
            if backend == "postgres" and args.replicas > 1:
                runs += [(backend, app, "closed", None, args.replicas, None),
                         (backend, app, "closed", None, args.replicas, TUNED),
                         (backend, app, "open", args.rate, args.replicas, TUNED)]
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--apps", default=f"reference,ours,{ACCEPT_ONLY},{SPLIT}",
                   help="reference: the minimal handler; ours: `serve` as installed (on PostgreSQL its workers "
                        "in a child process, on SQLite in threads); ours threads: `serve` with its workers in "
                        "threads (SERVE_WORKER_PROCESS=false); ours --no-worker: the accept-only replica of the "
                        "split topology; ours split: that replica with an `incident-bot worker` process beside it")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rate", type=float, default=200.0, help="open-loop rate of the goal")
    p.add_argument("--low-rates", default="50,100",
                   type=lambda v: [float(x) for x in v.split(",") if float(x)],
                   help="more open-loop rates for ours, within one process's capacity (0: none)")
    p.add_argument("--replicas", type=int, default=2,
                   help="also run ours as N replicas on PostgreSQL (1: skip)")
    p.add_argument("--profile", action="store_true", help="also run ours under py-spy (closed loop)")
    p.add_argument("--json", type=Path, help="write the figures here (for bench/run)")
    args = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    profiles: dict[str, dict[str, Any]] = {}
    inprocess: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmpdir:
        tmp = Path(tmpdir)
        slack = harness.slack_standin()
        try:
            for backend in args.backends.split(","):
                print(f"  ingest: the service layer alone on {backend} (no HTTP, one thread) ...", flush=True)
                with harness.database(backend, tmp, f"inproc_{backend}") as url:
                    inprocess[backend] = harness.loadgen_inprocess(url, workload="pd-mix", count=2000,
                                                                   secret=PD_SECRET, prefix="PI")
            for backend, app, mode, rate, replicas, env in plan(args):
                what = f"{app}{f' x{replicas}' if replicas > 1 else ''}{f' {env}' if env else ''}"
                what += f" on {backend}"
                print(f"  ingest: {what}, {mode} loop{f' at {rate:.0f}/s' if rate else ''} ...", flush=True)
                results.append(run_phase(app, backend, mode, tmp, args, slack, rate=rate, replicas=replicas,
                                         env=env))
            spy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
            if args.profile and not spy:
                print("  ingest: no py-spy (.venv/bin/pip install py-spy): no profile", flush=True)
            ours_apps = [a for a in args.apps.split(",") if a.startswith("ours")] if spy and args.profile else []
            for backend in args.backends.split(","):
                for app in ours_apps:
                    raw = tmp / ("profile_" + re.sub(r"[^\w]+", "_", f"{backend} {app}") + ".txt")
                    print(f"  ingest: {app} on {backend}, closed loop, under py-spy --gil ...", flush=True)
                    t0 = time.monotonic()
                    run_phase(app, backend, "closed", tmp, args, slack, profile=raw)
                    profiles[f"{app} on {backend}"] = profile_summary(raw, time.monotonic() - t0)
        finally:
            slack.stop()
    doc = {"results": results, "ratios": ratios(results), "profiles": profiles, "inprocess": inprocess,
           "params": {"duration": args.duration, "concurrency": args.concurrency, "rate": args.rate}}
    print_report(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


def find(results: list[dict[str, Any]], backend: str, app: str, mode: str, rate: float | None = None
         ) -> dict[str, Any] | None:
    return next((r for r in results if (r["backend"], r["app"], r["mode"]) == (backend, app, mode)
                 and (rate is None or r["rate"] == rate)), None)


def ratios(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Closed-loop throughput of each of our variants over the reference on the same database."""
    out: dict[str, dict[str, float]] = {}
    for r in results:
        ref = find(results, r["backend"], "reference", "closed")
        if r["mode"] == "closed" and r["app"] != "reference" and ref and ref["ok_per_s"]:
            out.setdefault(r["backend"], {})[r["app"]] = round(r["ok_per_s"] / ref["ok_per_s"], 2)
    return out


def failures(r: dict[str, Any]) -> str:
    """Non-2xx answers by status (0: no answer within the client's timeout)."""
    bad = {k: v for k, v in r["statuses"].items() if not k.startswith("2")}
    return ", ".join(f"{v} x {'timeout' if k == '0' else k}" for k, v in sorted(bad.items())) or "0"


def print_report(doc: dict[str, Any]) -> None:
    prm = doc["params"]
    print(f"\nWebhook ingest: closed loop {prm['concurrency']} connections x {prm['duration']:.0f} s; "
          f"open loop x {prm['duration']:.0f} s, latency from the scheduled send")
    print("| backend | app | load | deliveries/s answered 2xx | p50 | p99 | max | non-2xx "
          "| server CPU ms/delivery |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in doc["results"]:
        load = f"closed, {prm['concurrency']} conn" if r["mode"] == "closed" else f"open, {r['rate']:.0f}/s"
        cpu = f"{1000 * r['server_cpu_s'] / max(1, r['sent']):.2f}" if r.get("server_cpu_s") else "-"
        print(f"| {r['backend']} | {r['app']} | {load} | {r['ok_per_s']:.0f} | {r['p50_ms']} ms "
              f"| {r['p99_ms']} ms | {r['max_ms']} ms | {failures(r)} | {cpu} |")
    for r in doc["results"]:
        lag = r.get("fold_lag")
        if lag and lag["applied"]:
            load = "closed loop" if r["mode"] == "closed" else f"{r['rate']:.0f}/s"
            print(f"fold lag, {r['backend']}, {r['app']}, {load}: 202 -> applied p50 {lag['p50_ms']} ms, "
                  f"p99 {lag['p99_ms']} ms over {lag['applied']} deliveries; backlog cleared "
                  f"{lag['caught_up_after_s']} s after the load stopped")
    for backend, by_app in doc["ratios"].items():
        for app, ratio in by_app.items():
            at = find(doc["results"], backend, app, "open", prm["rate"])
            line = (f"{backend}, {app}: throughput ours/reference = {ratio:.2f} (goal >= {GOAL_RATIO}: "
                    f"{'met' if ratio >= GOAL_RATIO else 'MISSED'})")
            if at:
                p99 = at["p99_ms"]
                ok = p99 is not None and p99 < GOAL_P99_MS
                line += (f"; p99 at {prm['rate']:.0f}/s = {p99} ms (goal < {GOAL_P99_MS:.0f} ms: "
                         f"{'met' if ok else 'MISSED'})")
            print(line)
    for backend, c in doc.get("inprocess", {}).items():
        a, f = c["accept"], c["fold"]
        print(f"{backend}, below the web stack (one thread, {c['deliveries']} deliveries of the same mix, "
              f"{c['duplicates']} redeliveries): accept (parse + INSERT) {a['cpu_ms']} ms CPU, {a['wall_ms']} ms "
              f"wall, {a['statements']} statements per delivery; fold (batches of {f['batch']}) {f['cpu_ms']} ms "
              f"CPU, {f['wall_ms']} ms wall, {f['statements']} statements per stored delivery = "
              f"{f['per_s']} deliveries/s")
    for backend, prof in doc.get("profiles", {}).items():
        if not prof:
            continue
        print(f"\npy-spy --gil, {backend}, closed loop: {prof['samples']} samples, GIL held "
              f"{100 * prof['gil_busy']:.0f}% of the time")
        for title, key in (("thread doing", "roles"), ("leaf frame in", "layers"),
                           ("our function (inclusive)", "ours")):
            print(f"| {title} | % of Python CPU |\n|---|---:|")
            for name, pc in prof[key]:
                print(f"| {name.replace('|', '/')} | {pc} |")


if __name__ == "__main__":
    raise SystemExit(main())
