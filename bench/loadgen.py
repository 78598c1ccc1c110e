"""HTTP load generator for the benchmarks: a separate process, asyncio + aiohttp, pre-signed requests.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8080 --workload pd-mix --mode closed \\
        --concurrency 32 --duration 20 --secret S
    .venv/bin/python bench/loadgen.py --url ... --workload pd-mix --mode open --rate 200 --duration 20 \\
        --secret S

Every body is built and signed before the clock starts, so signing never competes with the server for
the CPU during the measurement. Workloads:
- ``pd-mix``: PagerDuty v3 deliveries of many interleaved incidents (trigger, acknowledge, 0-2 notes,
  resolve) with 30% redeliveries of an earlier delivery (same body, same event id), as PagerDuty retries;
- ``pd-triggers``: ``incident.triggered`` only, one new incident each (the alert storm);
- ``slack-note``: signed ``/incident note ...`` slash commands from one user in one channel.
Modes:
- ``closed``: ``--concurrency`` connections, each sends its next request when the last one answered
  (maximum sustained throughput);
- ``open``: requests start at a fixed ``--rate`` whatever the server does, and latency is measured from
  the *scheduled* start, so a slow server cannot hide its queueing (no coordinated omission);
- ``burst``: ``--concurrency`` requests at the same instant, every ``--every`` seconds.
Prints one JSON document on stdout: counts by status, throughput, latency percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from harness import pct

from incident_bot.demo import pagerduty_payloads as pd
from incident_bot.demo.slack_requests import FORM, signed, slash_body

PD_PATH = "/pagerduty/webhook"
SLACK_PATH = "/slack/events"


# Five services, each with its own id: with the default grouping (GROUP_BY=service) the mix's triggers
# join the open incident of their service, as an alert storm on five services would.
SERVICES = ("checkout-api", "payments", "search", "auth", "catalog")


@dataclass(frozen=True)
class Req:
    path: str
    body: bytes
    headers: dict[str, str]
    kind: str


def _pd_req(doc: dict[str, Any], secret: str, kind: str) -> Req:
    body = pd.encode(doc)
    return Req(PD_PATH, body, pd.signed_headers(body, secret), kind)


def pd_mix(count: int, *, secret: str, prefix: str, seed: int = 1, redeliver: float = 0.3,
           active: int = 64) -> list[Req]:
    """``count`` deliveries; ``active`` incidents in flight at a time, each trigger, ack, notes, resolve."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out: list[Req] = []
    live: list[list[Req]] = []  # per incident, its remaining deliveries in order
    made = 0

    def new_incident() -> list[Req]:
        nonlocal made
        made += 1
        pd_id = f"{prefix}{made:07d}"
        created = now - timedelta(seconds=rng.randint(0, 600))
        what = rng.choice(("5xx rate above 5%", "p99 latency high", "Disk full", "Queue backlog"))
        title = f"{what} #{made}"
        service = rng.choice(SERVICES)

        def data(status: str) -> dict[str, Any]:
            return pd.incident_data(pd_id, title=title, created_at=created, status=status,
                                    priority=rng.choice(("P1", "P2", "P3", None)), service_name=service,
                                    service_id=f"PSVC{SERVICES.index(service) + 1:03d}", number=made)

        at = created
        steps = [_pd_req(pd.delivery("incident.triggered", data("triggered"), occurred_at=at), secret,
                         "trigger")]
        at += timedelta(seconds=rng.randint(20, 300))
        steps.append(_pd_req(pd.delivery("incident.acknowledged", data("acknowledged"), occurred_at=at),
                             secret, "ack"))
        for n in range(rng.choice((0, 1, 1, 2))):
            at += timedelta(seconds=rng.randint(30, 600))
            steps.append(_pd_req(pd.delivery("incident.annotated", pd.note_data(pd_id, f"note {n} on {title}",
                                                                               f"PN{made}x{n}"),
                                              occurred_at=at), secret, "note"))
        at += timedelta(seconds=rng.randint(60, 3600))
        steps.append(_pd_req(pd.delivery("incident.resolved", data("resolved"), occurred_at=at), secret,
                             "resolve"))
        return steps

    while len(out) < count:
        if out and rng.random() < redeliver:
            earlier = out[rng.randrange(max(0, len(out) - 500), len(out))]  # PagerDuty retries within minutes
            out.append(Req(earlier.path, earlier.body, earlier.headers, "redelivery"))
            continue
        while len(live) < active:
            live.append(new_incident())
        i = rng.randrange(len(live))
        out.append(live[i].pop(0))
        if not live[i]:
            live.pop(i)
    return out


def pd_triggers(count: int, *, secret: str, prefix: str) -> list[Req]:
    now = datetime.now(UTC)
    return [_pd_req(pd.delivery("incident.triggered", pd.incident_data(
        f"{prefix}{i:07d}", title=f"Storm alert {i}: host-{i % 97} unreachable", created_at=now,
        number=i + 1)), secret, "trigger") for i in range(count)]


def slack_notes(count: int, *, secret: str, user: str, channel: str, response_url: str | None = None) -> list[Req]:
    out = []
    for i in range(count):
        extra = {"response_url": response_url} if response_url else {}
        raw, headers = signed(slash_body(f"note bench note {i}: checked shard {i % 16}", user=user,
                                         channel=channel, **extra), secret)
        out.append(Req(SLACK_PATH, raw, {**headers, "Content-Type": FORM}, "note"))
    return out


# -- running --------------------------------------------------------------------------------------------

@dataclass
class Sample:
    start: float  # scheduled (open, burst) or actual (closed) start, loop time
    latency: float
    status: int  # 0 = connection error or timeout
    kind: str


async def _send(session: aiohttp.ClientSession, url: str, req: Req, start: float, out: list[Sample]) -> None:
    loop = asyncio.get_running_loop()
    try:
        async with session.post(url + req.path, data=req.body, headers=req.headers) as resp:
            await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError):
        status = 0
    out.append(Sample(start, loop.time() - start, status, req.kind))


async def run(urls: list[str], reqs: list[Req], *, mode: str, concurrency: int, rate: float, duration: float,
              every: float, timeout: float) -> tuple[list[Sample], float, float]:
    """Returns the samples, the loop time the run started and its wall duration."""
    loop = asyncio.get_running_loop()
    limit = concurrency if mode in ("closed", "burst") else 0  # open loop: as many connections as needed
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=None)
    samples: list[Sample] = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        # Open the connections before the clock starts (a real PagerDuty/Slack keeps them warm too).
        warm = min(max(limit, 8), 64)
        await asyncio.gather(*(s.get(urls[i % len(urls)] + "/healthz") for i in range(warm)),
                             return_exceptions=True)
        t0 = loop.time() + 0.05
        end = t0 + duration
        queue = iter(reqs)
        if mode == "closed":
            async def worker(url: str) -> None:  # a connection sticks to one server, as behind a balancer
                while loop.time() < end:
                    req = next(queue, None)
                    if req is None:
                        return
                    await _send(s, url, req, loop.time(), samples)
            await asyncio.sleep(max(0.0, t0 - loop.time()))
            await asyncio.gather(*(worker(urls[w % len(urls)]) for w in range(concurrency)))
        else:
            tasks = []
            if mode == "open":
                schedule = [t0 + i / rate for i in range(min(len(reqs), math.ceil(duration * rate)))]
            else:
                waves = max(1, math.ceil(duration / every))
                schedule = [t0 + w * every for w in range(waves) for _ in range(concurrency)]
            for i, (at, req) in enumerate(zip(schedule, queue, strict=False)):
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(_send(s, urls[i % len(urls)], req, at, samples)))
            await asyncio.gather(*tasks)
        return samples, t0, loop.time() - t0


def drive_inprocess(db_url: str, reqs: list[Req]) -> dict[str, Any]:
    """The two halves of the pipeline below the web stack, one thread, no HTTP: the accept step (verify is
    the HTTP layer's; here parse + the one INSERT) for every delivery, then the fold worker applying them
    all in batches. What each costs per delivery, in CPU, wall time and SQL statements."""
    from sqlalchemy import event

    from incident_bot.config import Settings
    from incident_bot.pagerduty import inbound
    from incident_bot.pagerduty.events import parse_delivery
    from incident_bot.pipeline import inbox
    from incident_bot.pipeline.fold import FoldWorker
    from storage import migrate
    from storage.db import make_engine, session_scope

    migrate.upgrade(db_url)
    settings = Settings(_env_file=None, database_url=db_url, incident_announce_channel="C0ANNOUNCE",  # type: ignore[call-arg]
                        timezone="UTC")
    engine = make_engine(db_url)
    statements = 0

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    n = max(1, len(reqs))
    t0, c0 = time.perf_counter(), time.process_time()
    duplicates = sum(inbound.store(engine, parse_delivery(req.body), req.body).duplicate for req in reqs)
    accept = {"wall_ms": round(1000 * (time.perf_counter() - t0) / n, 3),
              "cpu_ms": round(1000 * (time.process_time() - c0) / n, 3), "statements": round(statements / n, 2)}
    with session_scope(engine) as s:
        stored = inbox.counts(s)["pending"]
    statements = 0
    fold = FoldWorker(engine, {"pagerduty": inbound.PagerDutyApplier(settings)}, batch_size=settings.fold_batch_size)
    t0, c0 = time.perf_counter(), time.process_time()
    fold.drain(timeout=3600)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    with session_scope(engine) as s:
        counts = inbox.counts(s)
    engine.dispose()
    m = max(1, stored)
    return {"deliveries": len(reqs), "duplicates": duplicates, "stored": stored, "inbox": counts,
            "accept": accept,
            "fold": {"wall_ms": round(1000 * wall / m, 3), "cpu_ms": round(1000 * cpu / m, 3),
                     "statements": round(statements / m, 2), "per_s": round(m / wall) if wall else None,
                     "batch": fold.batch_size}}


def summarise(samples: list[Sample], t0: float, wall: float, warmup: float) -> dict[str, Any]:
    kept = [x for x in samples if x.start >= t0 + warmup]
    ok = [x for x in kept if 200 <= x.status < 300]
    statuses: dict[str, int] = {}
    for x in kept:
        statuses[str(x.status)] = statuses.get(str(x.status), 0) + 1
    lat = sorted(x.latency * 1000 for x in ok)
    seconds = max(1e-9, wall - warmup)
    return {
        "sent": len(samples), "requests": len(kept), "ok": len(ok), "statuses": statuses,
        "over_3s": sum(1 for ms in lat if ms > 3000),
        "seconds": round(seconds, 3),
        "ok_per_s": round(len(ok) / seconds, 1),
        "p50_ms": _r(pct(lat, 0.50)), "p90_ms": _r(pct(lat, 0.90)), "p99_ms": _r(pct(lat, 0.99)),
        "max_ms": _r(lat[-1] if lat else None), "mean_ms": _r(sum(lat) / len(lat) if lat else None),
        "by_kind": {k: sum(1 for x in kept if x.kind == k) for k in sorted({x.kind for x in kept})},
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="base URL of the server, e.g. http://127.0.0.1:8080; several, "
                                      "comma-separated: round robin")
    target.add_argument("--inprocess", metavar="DATABASE_URL",
                        help="no server: apply pd-* deliveries with the service layer in this process")
    p.add_argument("--workload", choices=("pd-mix", "pd-triggers", "slack-note"), default="pd-mix")
    p.add_argument("--mode", choices=("closed", "open", "burst"), default="closed")
    p.add_argument("--concurrency", type=int, default=32, help="connections (closed) or requests a burst")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (open)")
    p.add_argument("--every", type=float, default=2.0, help="seconds between bursts (burst)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds")
    p.add_argument("--warmup", type=float, default=0.0, help="leave out requests started in the first N s")
    p.add_argument("--count", type=int, help="requests to prepare (default: enough for the run)")
    p.add_argument("--prefix", default="PBENCH", help="PagerDuty incident id prefix (unique per run)")
    p.add_argument("--secret", required=True, help="PagerDuty webhook secret or Slack signing secret")
    p.add_argument("--slack-user", default="U0BENCH")
    p.add_argument("--slack-channel", default="C0BENCH")
    p.add_argument("--slack-response-url", default=None,
                   help="response_url of the commands (the Slack stand-in's), where their answers go")
    p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    if args.count:
        count = args.count
    elif args.mode == "open":
        count = math.ceil(args.rate * args.duration)
    elif args.mode == "burst":
        count = args.concurrency * max(1, math.ceil(args.duration / args.every))
    else:
        count = 60_000  # closed loop: more than any server here can take in the run
    t_prep = time.perf_counter()
    if args.workload == "pd-mix":
        reqs = pd_mix(count, secret=args.secret, prefix=args.prefix, seed=args.seed)
    elif args.workload == "pd-triggers":
        reqs = pd_triggers(count, secret=args.secret, prefix=args.prefix)
    else:
        reqs = slack_notes(count, secret=args.secret, user=args.slack_user, channel=args.slack_channel,
                           response_url=args.slack_response_url)
    prep_s = time.perf_counter() - t_prep
    if args.inprocess:
        print(json.dumps(drive_inprocess(args.inprocess, reqs)))
        return 0

    samples, t0, wall = asyncio.run(run(args.url.split(","), reqs, mode=args.mode,
                                        concurrency=args.concurrency,
                                        rate=args.rate, duration=args.duration, every=args.every,
                                        timeout=args.timeout))
    doc = summarise(samples, t0, wall, args.warmup)
    doc.update(workload=args.workload, mode=args.mode, concurrency=args.concurrency,
               rate=args.rate if args.mode == "open" else None, prepared=count, prepare_s=round(prep_s, 2),
               ran_out=args.mode == "closed" and len(samples) >= count)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
