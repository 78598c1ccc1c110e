"""The web view's speed at scale, through real HTTP (uvicorn, the app, the signed session, the database).

Goals: the incident list at 100,000 incidents p95 < 100 ms; an incident page with 5,000 timeline
rows < 200 ms (its latest window, and a window from the middle by cursor); the metrics page "fast
too". Prints p50 / p95 / max in milliseconds per page variant; asserts nothing.

Usage: .venv/bin/python bench/bench_web.py [--backend sqlite|postgres] [--incidents 100000] [--rows 5000]
       [--requests 100] [--database-url URL] [--fresh] [--only incident,list] [--json FILE]

Data (gen_data.py: a year of incidents, ~10 timeline rows each, plus one incident with --rows timeline
rows from bench_rca.py) is kept between runs: SQLite in bench/data/web-<n>.db (git-ignored), PostgreSQL
in the schema bench_web_<n> of BENCH_PG_URL; it is reused while it holds the right incidents (--fresh
rebuilds it). With --database-url, use a scratch database: its incidents are replaced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import harness
import httpx
from bench_rca import build as build_long_incident
from gen_data import load
from sqlalchemy import func, select

from incident_bot.bootstrap import build_app
from incident_bot.config import Settings
from incident_bot.demo.live_server import LiveServer
from incident_bot.runtime import freeze_heap
from incident_bot.usecases.timeline_window import Key
from incident_bot.web import session as web_session
from incident_bot.web.settings import web_config
from storage import migrate
from storage.db import make_engine, session_scope
from storage.models import Incident, TimelineEvent

SECRET = "bench-web-session-secret-0123456789abcdef"


def measure(http: httpx.Client, path: str, n: int) -> dict[str, float]:
    http.get(path)  # warm: templates compiled, caches filled
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{path}: HTTP {r.status_code}")
    times.sort()
    return {"p50_ms": statistics.median(times), "p95_ms": harness.pct(times, 0.95), "max_ms": times[-1], "n": n,
            "kib": len(r.content) / 1024}


def long_incident(url: str, n: int, rows: int) -> str | None:
    """The ref of the long incident when the database holds this bench's data at this schema, else None."""
    engine = make_engine(url)
    try:
        if not migrate.is_current(engine):
            return None
        with session_scope(engine) as s:
            if s.execute(select(func.count()).select_from(Incident)).scalar_one() != n + 1:
                return None
            last = s.execute(select(Incident).order_by(Incident.number.desc()).limit(1)).scalar_one()
            count = s.execute(select(func.count()).select_from(TimelineEvent)
                              .where(TimelineEvent.incident_id == last.id)).scalar_one()
            return last.ref if count >= rows else None
    except Exception:
        return None
    finally:
        engine.dispose()


def middle(url: str, ref: str) -> str:
    """The cursor of the long incident's middle row: the page's window just older than it (keyset)."""
    engine = make_engine(url)
    try:
        with session_scope(engine) as s:
            iid = s.execute(select(Incident.id).where(Incident.ref == ref)).scalar_one()
            t = TimelineEvent
            count = s.execute(select(func.count()).select_from(t).where(t.incident_id == iid)).scalar_one()
            at, row_id = s.execute(select(t.occurred_at, t.id).where(t.incident_id == iid)
                                   .order_by(t.occurred_at, t.id).offset(count // 2).limit(1)).one()
        return Key(at, row_id).token
    finally:
        engine.dispose()


def prepare(url: str, n: int, rows: int, fresh: bool) -> str:
    """The long incident's ref, after loading the data unless it is there already."""
    ref = None if fresh else long_incident(url, n, rows)
    if ref is None:
        t0 = time.perf_counter()
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        load(url, n, end=end, seed=1, do_reset=True)
        ref = build_long_incident(url, rows)
        print(f"data: {n:,} incidents + {ref} with {rows:,} timeline rows ({url.split(':')[0]}) "
              f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return ref


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--database-url", help="a scratch database instead of the kept one (its incidents are replaced)")
    ap.add_argument("--fresh", action="store_true", help="rebuild the kept data")
    ap.add_argument("--only", metavar="WORDS", help="only the pages whose label contains one of these "
                    "comma-separated words (e.g. incident,list)")
    ap.add_argument("--no-freeze", action="store_true", help="leave the start-up heap to the garbage collector "
                    "(as before `serve` froze it), to see what that costs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    url = args.database_url or harness.dataset_db("web", args.backend, args.incidents)
    long_ref = prepare(url, args.incidents, args.rows, args.fresh)
    port = harness.free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(_env_file=None, database_url=url, slack_bot_token="xoxb-bench",  # type: ignore[call-arg]
                        slack_signing_secret="bench", slack_api_url="http://127.0.0.1:9/api/",
                        pagerduty_webhook_secrets="bench", slack_client_id="1.2",  # type: ignore[arg-type]
                        slack_client_secret="bench-client-secret", web_base_url=base,
                        web_session_secret=SECRET, slack_team_id="T0BENCH", scheduler_enabled=False)
    app = build_app(settings, start_worker=False, listen_host="127.0.0.1")
    if not args.no_freeze:
        freeze_heap()  # as `incident-bot serve` does once the app is built
    config = web_config(settings, listen_host="127.0.0.1")
    assert config is not None
    cookie = web_session.issue_session(config, user_id="U0BENCH", team_id="T0BENCH", name="bench")
    deep = max(1, args.incidents + 2 - 1000 * 50)  # the cursor of the 1,000th page (50 a page)
    pages = {
        "list, page 1": "/ui/incidents",
        "list, SEV1 + resolved": "/ui/incidents?severity=SEV1&status=resolved",
        "list, SEV1 + triggered (rare)": "/ui/incidents?severity=SEV1&status=triggered",
        "list, service + last 30d": "/ui/incidents?service=svc-checkout&period=30d",
        "list, title search": "/ui/incidents?q=checkout",
        "list, page 1000 (cursor)": f"/ui/incidents?before={deep}",
        f"incident, {args.rows:,} timeline rows": f"/ui/incidents/{long_ref}",
        f"incident, {args.rows:,} rows, middle window": f"/ui/incidents/{long_ref}?before={middle(url, long_ref)}",
        "actions": "/ui/actions",
        "metrics, 12 weeks": "/ui/metrics",
        "metrics, 52 weeks": "/ui/metrics?weeks=52",
        "metrics, SEV1 + service, 12 weeks": "/ui/metrics?severity=SEV1&service=svc-checkout",
    }
    if args.only:
        pages = {k: v for k, v in pages.items() if any(w.strip() in k for w in args.only.split(","))}
    figures: dict[str, dict[str, float]] = {}
    with LiveServer(app, port=port), httpx.Client(base_url=base, cookies={"ib_session": cookie},
                                                   timeout=60) as http:
        print(f"web view, {args.incidents:,} incidents ({url.split(':')[0]}), {args.requests} sequential "
              "requests per page over keep-alive HTTP, signed session")
        for label, path in pages.items():
            n = max(10, args.requests // 5) if label.startswith(("metrics", "incident,")) else args.requests
            f = figures[label] = measure(http, path, n)
            print(f"  {label:<36} p50 {f['p50_ms']:7.1f} ms  p95 {f['p95_ms']:7.1f} ms  "
                  f"max {f['max_ms']:7.1f} ms  ({f['kib']:.0f} KiB, n={n})")
    print("  goals: list p95 < 100 ms at 100,000 incidents; incident with 5,000 rows < 200 ms")
    app.state.runtime.engine.dispose()
    if args.json:
        args.json.write_text(json.dumps({"incidents": args.incidents, "rows": args.rows,
                                         "backend": url.split(":")[0], "pages": figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
