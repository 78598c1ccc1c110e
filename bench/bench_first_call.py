"""Webhook to first Slack call: how long after PagerDuty's delivery is answered does Slack hear of it?

    .venv/bin/python bench/bench_first_call.py                         # SQLite and PostgreSQL, 100/s
    .venv/bin/python bench/bench_first_call.py --backends postgres --rate 100 --duration 20

For each database: a fresh database, ``incident-bot serve`` as an operator runs it (fold and outbox
workers in the process) and the Slack stand-in; bench/loadgen.py sends the PagerDuty mix (triggers,
acknowledges, notes, resolves, 30% redeliveries) at ``--rate`` deliveries/s, open loop, for ``--duration``
seconds. Then, for every delivery that was applied and caused a Slack call: from its inbox row's
``received_at`` (stored just before the 202) to the ``done_at`` of the first outbox row its fold created
(the Slack call answered), matched by incident and by the fold's batch (the row was created between the
delivery's arrival and its done mark, in the same transaction). Redeliveries cause no call and are not
counted, nor are superseded topics (no call made). p50/p99/max over all deliveries, and separately for
triggers (a new incident: the first call is ``conversations.create``) and for follow-ups (a message in an
existing channel). With ``--group-by service`` (the default setting), a trigger that joins a storm says
nothing in Slack but the storm's "+N PagerDuty incidents" line, held up to 5 s by design to gather the
joins into one line: those are shown apart ("held storm line") and left out of "all".

Slack's Tier 2 limit on ``conversations.create`` (~20 a minute) is lifted here, in the stand-in and in the
bot's own budget (``SLACK_CHANNEL_CREATE_PER_MINUTE``): with it, a new incident's first call waits for
Slack, not for us, and bench/bench_storm.py measures that. This bench measures the pipeline: accept,
fold, outbox. Goal (issue 9): p99 < 1 s at 100 deliveries/s sustained. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import harness
from sqlalchemy import select

from incident_bot.pipeline.outbox import HELD
from storage.db import make_engine
from storage.models import InboxDelivery, OutboxMessage

GOAL_P99_MS = 1000.0


def first_calls(db_url: str) -> dict[str, list[float]]:
    """Milliseconds from each applied delivery's arrival to its first Slack call, by kind."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            deliveries = conn.execute(
                select(InboxDelivery.event_type, InboxDelivery.incident_id, InboxDelivery.received_at,
                       InboxDelivery.done_at)
                .where(InboxDelivery.source == "pagerduty", InboxDelivery.outcome == "processed",
                       InboxDelivery.incident_id.is_not(None))).all()
            calls = conn.execute(
                select(OutboxMessage.incident_id, OutboxMessage.created_at, OutboxMessage.done_at,
                       OutboxMessage.dedup_key, OutboxMessage.result)
                .where(OutboxMessage.incident_id.is_not(None), OutboxMessage.status == "done")
                .order_by(OutboxMessage.created_at)).all()
    finally:
        engine.dispose()
    by_incident: dict[int, list[tuple[datetime, datetime, bool]]] = {}
    for incident_id, created, done, dedup_key, result in calls:
        if (result or {}).get("skipped"):
            continue  # superseded (a topic replaced by a later one): no call was made
        held = (dedup_key or "").startswith(HELD)
        by_incident.setdefault(incident_id, []).append((harness.as_utc(created), harness.as_utc(done), held))
    out: dict[str, list[float]] = {"all": [], "trigger": [], "follow-up": [], "held storm line": []}
    for event_type, incident_id, received, folded in deliveries:
        received, folded = harness.as_utc(received), harness.as_utc(folded)
        # The fold writes a delivery's outbox rows in the transaction that marks it done: created after
        # it arrived and no later than its done mark.
        done = sorted((d, held) for c, d, held in by_incident.get(incident_id, ()) if received <= c <= folded)
        if not done:
            continue  # nothing to say in Slack (a join counted into a pending storm line, say)
        first, held = done[0]
        ms = 1000 * (first - received).total_seconds()
        if held:
            # A trigger that joined a storm and whose only message is the storm's "+N" line: held by design
            # (STORM_HOLD) to gather the joins into one line. Shown apart, not in "all".
            out["held storm line"].append(ms)
            continue
        out["all"].append(ms)
        out["trigger" if event_type == "incident.triggered" else "follow-up"].append(ms)
    return {k: sorted(v) for k, v in out.items()}


def run_backend(backend: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    slack = harness.slack_standin(create_per_minute=None)
    try:
        # --group-by none: one incident per trigger, every trigger opens a channel (the heavier case);
        # service (the default, what users install): a service's triggers while one is open join it.
        env = {"SLACK_CHANNEL_CREATE_PER_MINUTE": "10000", "GROUP_BY": args.group_by,
               **dict(kv.split("=", 1) for kv in args.env)}
        with harness.database(backend, tmp, f"first_{backend}") as url, \
                harness.ours(url, slack, tmp, f"first_{backend}", profile=args.profile and tmp / f"{backend}.spy",
                             **env) as server:
            doc = harness.loadgen(server.url, workload="pd-mix", mode="open", rate=args.rate,
                                  duration=args.duration, warmup=0, secret=harness.PD_SECRET, prefix="PF", seed=3)
            # Every delivery folded and every call made that Slack's limits do not pace: topics and
            # invitations (50 a minute) trail a storm by minutes and are never a delivery's first call.
            harness.wait_drained(url, timeout=600, ignore_methods=harness.PACED_METHODS)
            lat = first_calls(url)
    finally:
        slack.stop()
    if args.profile:
        shutil.copy(tmp / f"{backend}.spy", f"first-call-{backend}.spy")
    figures = {k: harness.spread(v, "ms") for k, v in lat.items()}
    return {"backend": backend, "rate": args.rate, "duration_s": args.duration,
            "answered_per_s": doc["ok_per_s"], "non_2xx": doc["requests"] - doc["ok"], "first_call": figures}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--rate", type=float, default=100.0, help="PagerDuty deliveries per second (open loop)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting for the bot, e.g. OUTBOX_WORKERS=8 (repeatable)")
    p.add_argument("--group-by", default="none", choices=("none", "service"),
                   help="the bot's GROUP_BY: none (every trigger a new incident and channel) or service "
                        "(the default setting: alert storms fold into one incident per service)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--profile", action="store_true",
                   help="run the server under py-spy (--gil); the raw samples are copied to ./first-call-BACKEND.spy")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-first-call-") as tmpdir:
        for backend in args.backends.split(","):
            print(f"  first call: {backend}, {args.rate:.0f} deliveries/s for {args.duration:.0f} s ...", flush=True)
            results.append(run_backend(backend, Path(tmpdir), args))
    doc = {"params": {"rate": args.rate, "duration": args.duration, "group_by": args.group_by,
                      "load": harness.loadavg()}, "results": results}
    print_report(doc)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


def print_report(doc: dict[str, Any]) -> None:
    """The figures of one run (also how bench/run writes them into bench/RESULTS.md)."""
    par = doc["params"]
    print(f"\nWebhook -> first Slack call: the PagerDuty mix at {par['rate']:.0f}/s for {par['duration']:.0f} s "
          f"through `serve`, GROUP_BY={par['group_by']} (Slack's channel-creation limit lifted; load "
          f"{par['load']})")
    print("| backend | deliveries/s answered | non-2xx | kind | deliveries with a call | p50 | p99 | max |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for r in doc["results"]:
        for kind, f in r["first_call"].items():
            print(f"| {r['backend']} | {r['answered_per_s']} | {r['non_2xx']} | {kind} | {f['n']} | "
                  f"{f['p50_ms']} ms | {f['p99_ms']} ms | {f['max_ms']} ms |")
    for r in doc["results"]:
        p99 = r["first_call"]["all"]["p99_ms"]
        verdict = "met" if p99 is not None and p99 < GOAL_P99_MS else "MISSED"
        print(f"{r['backend']}: webhook -> first Slack call p99 {p99} ms at {par['rate']:.0f}/s, "
              f"GROUP_BY={par['group_by']} (goal < {GOAL_P99_MS:.0f} ms: {verdict})")


if __name__ == "__main__":
    raise SystemExit(main())
