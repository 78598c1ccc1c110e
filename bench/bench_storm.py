"""Alert storm: N ``incident.triggered`` deliveries at 1,000 a minute against ``serve``, with Slack's Tier 2
limit on ``conversations.create`` (20 a minute) enforced by the Slack stand-in.

    .venv/bin/python bench/bench_storm.py                    # 100 triggers (~6 s of storm, ~5 min of queue)
    .venv/bin/python bench/bench_storm.py --triggers 1000    # the full storm: ~50 min until the last channel

What it shows: how many 429s the bot received (its own per-method budget should keep it under the limit,
so few or none), how long until every incident has its channel, what users see meanwhile (the
announcement in the incidents channel waits for the incident's channel, so time-to-announcement is
time-to-channel), and the webhook latency during the storm. Grouping is off (``GROUP_BY=none``): every
trigger is its own incident, as when a region's outage pages many services at once. With fewer than
1,000 triggers the time for 1,000 is extrapolated from the measured channel-creation rate, and the
output says so.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from sqlalchemy import func, select

from storage.db import make_engine
from storage.models import Incident, OutboxMessage

FULL = 1000
STORM_RATE = FULL / 60.0


def progress(db_url: str) -> tuple[int, int, int]:
    """(incidents, incidents with their channel, outbox rows not done)."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(Incident)).scalar_one()
            n = select(func.count())
            has_channel = Incident.slack_channel_id.is_not(None)  # type: ignore[union-attr]
            with_channel = conn.execute(n.select_from(Incident).where(has_channel)).scalar_one()
            waiting = OutboxMessage.status.in_(("pending", "inflight"))  # type: ignore[attr-defined]
            pending = conn.execute(n.select_from(OutboxMessage).where(waiting)).scalar_one()
            return int(total), int(with_channel), int(pending)
    finally:
        engine.dispose()


def delays(db_url: str) -> dict[str, list[float]]:
    """Per incident, seconds from the incident's creation (the 202) to each user-visible effect."""
    engine = make_engine(db_url)
    first: dict[str, dict[int, float]] = {"channel": {}, "announcement": {}, "intro": {}}
    try:
        with engine.connect() as conn:
            created = dict(conn.execute(select(Incident.id, Incident.created_at)).all())
            rows = conn.execute(select(OutboxMessage.incident_id, OutboxMessage.method, OutboxMessage.payload,
                                       OutboxMessage.done_at).where(OutboxMessage.status == "done")).all()
    finally:
        engine.dispose()
    for incident_id, method, payload, done_at in rows:
        if incident_id not in created or done_at is None:
            continue
        seconds = (harness.as_utc(done_at) - harness.as_utc(created[incident_id])).total_seconds()
        post = method == "chat.postMessage"
        what = ("channel" if method == "conversations.create"
                else "announcement" if post and payload.get("capture") == "announce"
                else "intro" if post and payload.get("channel") == "$incident" else None)
        if what:
            first[what][incident_id] = min(seconds, first[what].get(incident_id, seconds))
    return {k: list(v.values()) for k, v in first.items()}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    slack = harness.slack_standin()
    try:
        # One incident per trigger: the worst case for Slack's channel limit. With the default grouping
        # (GROUP_BY=service) the storm's triggers, all on one service, join one incident and one channel.
        with harness.database(args.backend, tmp, "storm") as url, \
                harness.ours(url, slack, tmp, "storm", GROUP_BY="none") as srv:
            t0 = time.monotonic()
            storm = harness.start_loadgen(srv.url, workload="pd-triggers", mode="open", rate=STORM_RATE,
                                          duration=args.triggers / STORM_RATE, count=args.triggers,
                                          secret=harness.PD_SECRET, prefix="PSTORM")
            hooks = harness.finish_loadgen(storm)
            storm_s = time.monotonic() - t0
            print(f"  storm: {hooks['ok']}/{args.triggers} triggers answered 2xx in {storm_s:.0f} s; "
                  "waiting for the channels ...", flush=True)
            deadline = t0 + args.triggers * 60 / 20 * 1.3 + 120
            seen: list[tuple[float, int]] = []
            while True:
                total, with_channel, pending = progress(url)
                seen.append((time.monotonic() - t0, with_channel))
                if total >= hooks["ok"] and with_channel >= total and pending == 0:
                    break
                if time.monotonic() > deadline:
                    print("  storm: gave up waiting", flush=True)
                    break
                if len(seen) % 30 == 0:
                    print(f"  storm: +{seen[-1][0]:.0f} s: {with_channel}/{total} channels, "
                          f"{pending} outbox rows waiting", flush=True)
                time.sleep(2)
            all_s = time.monotonic() - t0
            d = delays(url)
            calls = slack.calls()
    finally:
        slack.stop()
    rate_limited: dict[str, int] = {}
    for c in calls:
        if c.status == 429:
            rate_limited[c.method] = rate_limited.get(c.method, 0) + 1
    creates = sorted(c.at for c in calls if c.method == "conversations.create" and c.status == 200)
    per_min = (len(creates) - 1) / ((creates[-1] - creates[0]) / 60) if len(creates) > 1 else None
    marks = {"first": 1, "half": args.triggers // 2, "all": args.triggers}
    at = {k: next((round(s) for s, n in seen if n >= m), None) for k, m in marks.items()}
    return {
        "triggers": args.triggers, "backend": args.backend, "webhooks": hooks, "storm_s": round(storm_s, 1),
        "incidents_with_channel": seen[-1][1] if seen else 0, "all_channels_s": round(all_s, 1),
        "channels_at": at, "created_per_min": round(per_min, 1) if per_min else None,
        "rate_limited": rate_limited, "calls": len(calls),
        "create_calls": sum(1 for c in calls if c.method == "conversations.create"),
        "time_to": {k: harness.spread(v, "s") for k, v in d.items()},
        "extrapolated_full_s": None if args.triggers >= FULL or not per_min else round(FULL / per_min * 60),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triggers", type=int, default=100, help=f"storm size (the issue's storm is {FULL})")
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--json", type=Path, help="write the figures here (for bench/run)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmpdir:
        doc = run(args, Path(tmpdir))
    print_report(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


def print_report(doc: dict[str, Any]) -> None:
    w, n = doc["webhooks"], doc["triggers"]
    print(f"\nAlert storm ({doc['backend']}): {n} incident.triggered at {STORM_RATE:.1f}/s; Slack stand-in "
          "limits conversations.create to 20 per 60 s (429 + Retry-After)")
    print(f"- webhooks: {w['ok']}/{w['requests']} answered 2xx, p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms, "
          f"max {w['max_ms']} ms during the storm ({doc['storm_s']} s)")
    print(f"- 429s received by the bot: {sum(doc['rate_limited'].values())} {doc['rate_limited'] or ''} "
          f"out of {doc['create_calls']} conversations.create calls ({doc['calls']} Slack calls in all)")
    print(f"- channels: {doc['incidents_with_channel']}/{n} after {doc['all_channels_s']} s; "
          f"first at +{doc['channels_at']['first']} s, half at +{doc['channels_at']['half']} s; "
          f"sustained {doc['created_per_min']} channels/min")
    for what, s in doc["time_to"].items():
        if s["n"]:
            print(f"- time from the 202 to the {what}: p50 {s['p50_s']} s, p99 {s['p99_s']} s, "
                  f"max {s['max_s']} s (n={s['n']})")
    if doc["extrapolated_full_s"]:
        print(f"- EXTRAPOLATED, not measured: {FULL} triggers would have every channel after about "
              f"{doc['extrapolated_full_s'] / 60:.0f} min at the measured {doc['created_per_min']} "
              "channels/min (run `bench/run --full` to measure it)")


if __name__ == "__main__":
    raise SystemExit(main())
