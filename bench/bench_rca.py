"""RCA export speed for a long incident: one incident with 5,000 timeline rows (goal: < 200 ms a format).

Usage: .venv/bin/python bench/bench_rca.py [--rows 5000] [--repeat 7] [--database-url URL]

Without --database-url the incident is built in a temporary SQLite file. With a PostgreSQL URL, use a
scratch database: the script creates its tables there with the migrations and adds one incident.
Prints milliseconds per export (min and median of the repeats), split into load+build and render.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import harness  # noqa: F401  (puts this checkout's code first on sys.path)
from sqlalchemy import insert

from incident_bot.core.lifecycle import Signal
from incident_bot.rendering import render
from incident_bot.usecases import actions, rca
from incident_bot.usecases.incidents import NewIncident, apply_signals, open_incident
from storage import migrate
from storage.db import make_engine, session_scope
from storage.models import TimelineEvent

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def build(url: str, rows: int) -> str:
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as s:
        inc = open_incident(s, NewIncident(title="Checkout | payments outage <long>", detected_at=T0,
                                           severity="SEV1", origin="pagerduty", service="checkout",
                                           impact_started_at=T0 - timedelta(minutes=5)),
                            announce_channel=None, invite_oncall=False)
        apply_signals(s, inc, [Signal("acknowledge", T0 + timedelta(minutes=3)),
                               Signal("resolve", T0 + timedelta(hours=6))], strict=False, source="pagerduty")
        s.execute(insert(TimelineEvent), [
            {"incident_id": inc.id, "occurred_at": T0 + timedelta(seconds=4 * i), "source": "slack",
             "kind": "note", "actor": f"U{i % 40:04d}", "recorded_at": T0,
             "text": f"Note {i}: checked shard {i % 16} | p99 fine\nok"}
            for i in range(rows)
        ])
        for i in range(12):
            actions.add_action(s, inc, f"Action {i} | follow-up", ("corrective", "preventive")[i % 2],
                               ("high", "medium", "low")[i % 3], f"U{i:04d}", date(2026, 12, 1 + i),
                               f"https://jira.example.com/OPS-{i}", None, at=T0 + timedelta(hours=7))
        rca.set_narrative(s, inc.ref, {k: f"{k} text. " * 20 for k in ("summary", "impact", "root_causes")})
        return inc.ref


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--database-url")
    ap.add_argument("--json", type=Path, help="also write the figures to this file (for bench/run)")
    args = ap.parse_args()
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        ref = build(url, args.rows)
        engine = make_engine(url)
        print(f"RCA export, 1 incident, {args.rows} timeline rows, 12 actions ({url.split(':')[0]}); "
              f"{args.repeat} runs each")
        for fmt in ("md", "html"):
            total, load, rendering, size = [], [], [], 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                with session_scope(engine) as s:
                    ctx = rca.rca_context(s, ref)
                t1 = time.perf_counter()
                text = render(rca.template_for(fmt), ctx).text
                t2 = time.perf_counter()
                load.append((t1 - t0) * 1000)
                rendering.append((t2 - t1) * 1000)
                total.append((t2 - t0) * 1000)
                size = len(text)
            with session_scope(engine) as s:  # the public entry point, once, as a cross-check
                t0 = time.perf_counter()
                rca.export_rca(s, ref, fmt)
                once = (time.perf_counter() - t0) * 1000
            med = statistics.median
            figures[fmt] = {"min_ms": min(total), "median_ms": med(total), "load_ms": med(load),
                            "render_ms": med(rendering), "export_rca_ms": once, "kib": size / 1024}
            print(f"  {fmt:<4} total min {min(total):6.1f} ms  median {med(total):6.1f} ms  "
                  f"(load+build {med(load):5.1f} ms, render {med(rendering):5.1f} ms; "
                  f"export_rca {once:5.1f} ms; {size / 1024:.0f} KiB)  goal < 200 ms")
        engine.dispose()
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "backend": url.split(":")[0], "formats": figures},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
