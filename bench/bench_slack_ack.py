"""Slack ack latency: ``/incident note`` under 50 concurrent commands while the webhook load runs.

    .venv/bin/python bench/bench_slack_ack.py                          # SQLite and PostgreSQL
    .venv/bin/python bench/bench_slack_ack.py --backends sqlite --webhook-rates 200 --json out.json

For each database: a fresh database and ``incident-bot serve`` with the Slack stand-in; a user declares
an incident with a signed ``/incident declare``, and the bench waits until the outbox has created the
channel and recorded the user as a member (so ``note`` is allowed). Then, for each webhook rate, two
load generator processes run at once: PagerDuty deliveries at that open-loop rate, and bursts of 50
signed ``/incident note ...`` commands fired at the same instant every 2 s. The ack's latency is from
the burst's start to the HTTP 200 (the ephemeral answer is the ack's body). A rate of 0 measures the
commands alone. Goal (issue 6): p99 < 100 ms while the 200/s webhook load runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest as bi

from incident_bot.testing.slack_requests import FORM, signed, slash_body
from storage.db import make_engine
from storage.models import ChannelMember, Incident, TimelineEvent

USER = "U0BENCH"
GOAL_P99_MS = 100.0


def declare(url: str, title: str) -> None:
    raw, headers = signed(slash_body(f"declare {title}", user=USER, channel="C0GENERAL"), bi.SLACK_SECRET)
    r = httpx.post(f"{url}/slack/events", content=raw, headers={**headers, "Content-Type": FORM}, timeout=10)
    r.raise_for_status()


def wait_for_channel(db_url: str, timeout: float = 60.0) -> str:
    """The incident channel's id, once the outbox created it and recorded USER as a member."""
    engine = make_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                channel = conn.execute(select(Incident.slack_channel_id).where(Incident.number == 1)).scalar()
                if channel and conn.execute(select(ChannelMember).where(
                        ChannelMember.channel_id == channel, ChannelMember.user_id == USER)).first():
                    return str(channel)
            time.sleep(0.1)
        raise RuntimeError("the incident channel or the membership did not appear in time")
    finally:
        engine.dispose()


def notes_stored(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stmt = (select(func.count()).select_from(TimelineEvent)
                    .where(TimelineEvent.kind == "note", TimelineEvent.actor == USER))
            return int(conn.execute(stmt).scalar_one())
    finally:
        engine.dispose()


def run_backend(backend: str, tmp: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    slack = bi.slack_standin()
    slack.add_user(USER, "bench-user", "bench@example.com")
    out = []
    try:
        with bi.database(backend, tmp, f"ack_{backend}") as url, \
                bi.ours(url, slack, tmp, f"ack_{backend}") as srv:
            declare(srv.url, "Checkout errors (slack ack bench)")
            channel = wait_for_channel(url)
            stored_before = notes_stored(url)
            single = bi.loadgen(srv.url, workload="slack-note", mode="burst", concurrency=1, every=0.5,
                                duration=5, secret=bi.SLACK_SECRET, slack_user=USER, slack_channel=channel)
            out.append({"backend": backend, "webhook_rate": 0.0, "burst": 1, "acks": single,
                        "webhooks": None})
            for i, rate in enumerate(args.webhook_rates):
                hook = None
                if rate:
                    hook = bi.start_loadgen(srv.url, workload="pd-mix", mode="open", rate=rate,
                                            duration=args.duration + 2, warmup=1, secret=bi.PD_SECRET,
                                            prefix=f"SA{i}", seed=3 + i)
                    time.sleep(2.5)  # the generator prepares its bodies, then the load runs for a second
                acks = bi.loadgen(srv.url, workload="slack-note", mode="burst", concurrency=args.burst,
                                  every=args.every, duration=args.duration - 1, secret=bi.SLACK_SECRET,
                                  slack_user=USER, slack_channel=channel)
                hooks = bi.finish_loadgen(hook) if hook else None
                out.append({"backend": backend, "webhook_rate": rate, "burst": args.burst, "acks": acks,
                            "webhooks": hooks})
                time.sleep(2)
            stored = notes_stored(url) - stored_before
            for row in out:
                row["notes_stored_total"] = stored
            out[-1]["notes_acked_total"] = sum(r["acks"]["ok"] for r in out)
    finally:
        slack.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--webhook-rates", default="200,50,0",
                   type=lambda v: [float(x) for x in v.split(",")],
                   help="PagerDuty deliveries/s running meanwhile, one measurement each (0 = none)")
    p.add_argument("--burst", type=int, default=50, help="concurrent commands per burst")
    p.add_argument("--every", type=float, default=2.0, help="seconds between bursts")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of commands per measurement")
    p.add_argument("--json", type=Path, help="write the figures here (for bench/run)")
    args = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ack-") as tmpdir:
        for backend in args.backends.split(","):
            print(f"  slack ack: {backend} ...", flush=True)
            results += run_backend(backend, Path(tmpdir), args)
    doc = {"results": results,
           "params": {"burst": args.burst, "every": args.every, "duration": args.duration}}
    print_report(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


def print_report(doc: dict[str, Any]) -> None:
    prm = doc["params"]
    print(f"\nSlack ack: bursts of {prm['burst']} concurrent `/incident note` every {prm['every']:.0f} s for "
          f"{prm['duration']:.0f} s, while PagerDuty deliveries arrive at the given open-loop rate")
    print("| backend | commands at once | webhooks/s offered | webhooks/s answered | webhook p99 | note acks "
          "| ack p50 | ack p99 | ack max | not acked in time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in doc["results"]:
        a, w = r["acks"], r["webhooks"]
        wh = (f"{w['ok_per_s']:.0f} | {w['p99_ms']} ms" if w else "- | -")
        print(f"| {r['backend']} | {r.get('burst', prm['burst'])} | {r['webhook_rate']:.0f} | {wh} "
              f"| {a['requests']} | {a['p50_ms']} ms | {a['p99_ms']} ms | {a['max_ms']} ms "
              f"| {a['requests'] - a['ok']} |")
    for r in doc["results"]:
        if "notes_acked_total" in r:
            print(f"{r['backend']}: {r['notes_acked_total']} notes acked, {r['notes_stored_total']} "
                  "on the timeline")
    print("(not acked in time: Bolt answers 404 when the listener has not acked within 3 s; Slack then shows "
          "the user an error although the note may be stored)")
    for r in doc["results"]:
        if r["webhook_rate"] == 200:
            p99 = r["acks"]["p99_ms"]
            ok = p99 is not None and p99 < GOAL_P99_MS and r["acks"]["ok"] == r["acks"]["requests"]
            print(f"{r['backend']}: ack p99 with 200 webhooks/s = {p99} ms (goal < {GOAL_P99_MS:.0f} ms: "
                  f"{'met' if ok else 'MISSED'})")


if __name__ == "__main__":
    raise SystemExit(main())
