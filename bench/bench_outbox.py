"""Outbox throughput: how many queued Slack calls a worker makes per second, and the CPU each costs.

    .venv/bin/python bench/bench_outbox.py                               # SQLite and PostgreSQL, 8 threads
    .venv/bin/python bench/bench_outbox.py --backends sqlite --threads 1,8 --deliveries 1500

For each database: a fresh database, the PagerDuty mix (``--deliveries``, triggers, acknowledges, notes,
resolves) folded below the web stack (bench/loadgen.py ``--inprocess``), which leaves the outbox full of
what those incidents say in Slack (channels, invitations, intros, timeline messages, topics). Then the
outbox worker, in this process, with ``--threads`` delivery threads, against the Slack stand-in (local
HTTP, unpaced, so the figure is ours), until every call that Slack's limits do not pace is made. Topics and
invitations are paced by our own budget (50 a minute: Slack's Tier 2/3) and are not counted; they are
left in the queue. The fold is done first, so this is the outbox alone, without the accept path or the
fold beside it; bench/bench_first_call.py measures them together.

Why it matters: at 100 PagerDuty deliveries/s the mix asks for ~130 unpaced Slack calls a second; an
outbox slower than that lets its queue grow, and the first Slack call of a new incident waits for it.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

from storage.db import make_engine, session_scope


def unpaced_left(engine: Any, paced: frozenset[str]) -> int:
    with session_scope(engine) as s:
        return harness.outbox_left(s, paced)


def bot_settings(url: str, slack: Any, threads: int) -> Any:
    from incident_bot.config import Settings

    env = harness.bot_env(url, slack, harness._announce_channel(slack))
    # One incident per trigger (no storm grouping), as bench_first_call: every trigger opens a channel.
    return Settings(_env_file=None, database_url=url, slack_bot_token=env["SLACK_BOT_TOKEN"],  # type: ignore[call-arg]
                    slack_api_url=env["SLACK_API_URL"], incident_announce_channel=env["INCIDENT_ANNOUNCE_CHANNEL"],
                    slack_channel_create_per_minute=10000, outbox_workers=threads, timezone="UTC", group_by="none")


def fold(settings: Any, deliveries: int) -> None:
    """Store the mix in the inbox and fold it (no Slack call yet): the outbox fills."""
    from loadgen import pd_mix

    from incident_bot.pagerduty import inbound
    from incident_bot.pagerduty.events import parse_delivery
    from incident_bot.pipeline.fold import FoldWorker
    from storage import migrate

    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        for req in pd_mix(deliveries, secret=harness.PD_SECRET, prefix="PO"):
            inbound.store(engine, parse_delivery(req.body), req.body)
        FoldWorker(engine, {"pagerduty": inbound.PagerDutyApplier(settings)},
                   batch_size=settings.fold_batch_size).drain(timeout=3600)
    finally:
        engine.dispose()


def drain(settings: Any) -> dict[str, Any]:
    from incident_bot.bootstrap import build_runtime

    threads = settings.outbox_workers
    paced = frozenset(harness.PACED_METHODS)
    rt = build_runtime(settings)
    engine = rt.engine
    total = unpaced_left(engine, paced)
    t0, c0 = time.perf_counter(), time.process_time()
    rt.worker.start()
    try:
        while unpaced_left(engine, paced):
            time.sleep(0.05)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        rt.worker.stop()
        engine.dispose()
    group = rt.worker.group
    return {"threads": threads, "calls": total, "per_s": round(total / wall, 1),
            "outcomes_per_tx": round(group.writes / max(1, group.transactions), 2),
            "cpu_ms_per_call": round(1000 * cpu / max(1, total), 2), "wall_s": round(wall, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--deliveries", type=int, default=2000, help="PagerDuty deliveries folded first")
    p.add_argument("--threads", default="8", help="delivery threads to try, comma-separated")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmpdir:
        for backend in args.backends.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                slack = harness.slack_standin(create_per_minute=None)
                try:
                    with harness.database(backend, Path(tmpdir), f"outbox_{backend}_{threads}") as url:
                        settings = bot_settings(url, slack, threads)
                        fold(settings, args.deliveries)
                        r = drain(settings)
                finally:
                    slack.stop()
                r["backend"] = backend
                print(f"  {backend}, {threads} thread(s): {r['calls']} calls in {r['wall_s']} s", flush=True)
                results.append(r)
    doc = {"params": {"deliveries": args.deliveries, "load": harness.loadavg()}, "results": results}
    print_report(doc)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


def print_report(doc: dict[str, Any]) -> None:
    """The figures of one run (also how bench/run writes them into bench/RESULTS.md)."""
    print(f"\nOutbox drain, the unpaced Slack calls of {doc['params']['deliveries']} PagerDuty deliveries "
          f"(load {doc['params']['load']})")
    print("| backend | threads | calls | calls/s | CPU per call | outcomes stored per transaction |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in doc["results"]:
        print(f"| {r['backend']} | {r['threads']} | {r['calls']} | {r['per_s']} | {r['cpu_ms_per_call']} ms "
              f"| {r['outcomes_per_tx']} |")


if __name__ == "__main__":
    raise SystemExit(main())
