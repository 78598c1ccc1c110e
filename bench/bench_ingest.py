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
Goals (issue 6): ours/reference throughput >= 0.5, p99 < 25 ms at 200/s.

This module also holds the helpers the other load benchmarks share (databases, server processes,
the load generator).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from incident_bot.testing.slack_standin import SlackStandIn

BENCH = ROOT / "bench"
PY = sys.executable
BOT = str(Path(PY).parent / "incident-bot")
PG_BASE = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PD_SECRET = "bench-pd-secret"
SLACK_SECRET = "bench-slack-signing-secret"
GOAL_RATIO, GOAL_P99_MS = 0.5, 25.0


# -- databases --------------------------------------------------------------------------------------

@contextlib.contextmanager
def database(backend: str, tmp: Path, name: str, *, migrate: bool = True) -> Iterator[str]:
    """A fresh SQLite file, or a fresh schema in the PostgreSQL ``test`` database (dropped afterwards).

    ``migrate`` runs ``incident-bot db upgrade`` for PostgreSQL (``serve`` migrates SQLite by itself).
    """
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'{name}.db'}"
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{PG_BASE}?options=-csearch_path%3D{schema}".replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        if migrate:
            subprocess.run([BOT, "db", "upgrade"], env=bot_env(url, None), cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        yield url
    finally:
        with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- server processes -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_env(db_url: str, slack: SlackStandIn | None, announce: str = "C0NONE", **extra: str) -> dict[str, str]:
    """The environment an operator would set; everything else stays at its default."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "PAGERDUTY_", "DATABASE_", "OUTBOX_", "INCIDENT_", "DIGEST_"))}
    env.update({
        "DATABASE_URL": db_url,
        "SLACK_BOT_TOKEN": "xoxb-bench-token",
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_API_URL": slack.url if slack else "http://127.0.0.1:9/api/",
        "PAGERDUTY_WEBHOOK_SECRETS": PD_SECRET,
        "INCIDENT_ANNOUNCE_CHANNEL": announce,
        "TIMEZONE": "UTC",
        "LOG_LEVEL": "INFO",
    })
    env.update(extra)
    return env


class Server:
    """A server in its own process; stderr (the logs) goes to a file, never to an unread pipe."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int, cwd: Path) -> None:
        self.argv, self.env, self.log, self.port, self.cwd = argv, env, log, port, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Server:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                         stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy and uvicorn both stop cleanly on SIGINT
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ours(db_url: str, slack: SlackStandIn, tmp: Path, name: str, *, profile: Path | None = None,
         **extra: str) -> Server:
    """``incident-bot serve`` as an operator runs it (optionally under ``py-spy record``)."""
    port = free_port()
    announce = slack.channel_by_name("incidents")
    env = bot_env(db_url, slack, announce["id"] if announce else slack.add_channel("incidents"), **extra)
    argv = [BOT, "serve", "--host", "127.0.0.1", "--port", str(port)]
    if profile is not None:
        spy = shutil.which("py-spy", path=str(Path(PY).parent)) or "py-spy"
        argv = [spy, "record", "--rate", "250", "--format", "raw", "--gil", "--nonblocking",
                "-o", str(profile), "--", *argv]
    return Server(argv, env, tmp / f"{name}.log", port, tmp)


def reference(db_url: str, tmp: Path, name: str) -> Server:
    port = free_port()
    env = bot_env(db_url, None)
    return Server([PY, str(BENCH / "reference_app.py"), "--port", str(port)], env, tmp / f"{name}.log", port,
                  tmp)


def slack_standin() -> SlackStandIn:
    """The Slack stand-in with Slack's Tier 2 limit on channel creation."""
    slack = SlackStandIn().start()
    slack.add_channel("incidents")
    slack.rate_limit("conversations.create", 20)
    return slack


# -- the load generator -----------------------------------------------------------------------------

def loadgen_argv(url: str, **opts: Any) -> list[str]:
    argv = [PY, str(BENCH / "loadgen.py"), "--url", url]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def loadgen(url: str, **opts: Any) -> dict[str, Any]:
    """Run bench/loadgen.py to completion in its own process and return its figures."""
    out = subprocess.run(loadgen_argv(url, **opts), capture_output=True, text=True, check=True,
                         timeout=float(opts.get("duration", 20)) + 300)
    return json.loads(out.stdout)


def start_loadgen(url: str, **opts: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(loadgen_argv(url, **opts), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_loadgen(proc: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err[-2000:]}")
    return json.loads(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- profile reading --------------------------------------------------------------------------------

def top_frames(raw: Path, n: int = 18) -> list[tuple[str, float, float]]:
    """From py-spy's raw (collapsed) output: (function, % of samples inside it, % on top of stack).

    Only samples of the server's threads that were running Python are counted (idle threads waiting
    on a lock or a socket show up as ``--nonblocking`` samples of their wait frame).
    """
    inclusive: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [re.sub(r" \(/.*?/(site-packages|incident_bot|storage)/", r" (\1/", f)
                  for f in stack.split(";")[1:]]  # first frame is the thread
        c = int(count)
        total += c
        for f in set(frames):
            inclusive[f] += c
        if frames:
            self_[frames[-1]] += c
    if not total:
        return []
    return [(f, 100 * c / total, 100 * self_[f] / total) for f, c in inclusive.most_common(n)]


# -- the benchmark ----------------------------------------------------------------------------------

PHASES = ("closed", "open")


def run_phase(app: str, backend: str, phase: str, tmp: Path, args: argparse.Namespace, slack: SlackStandIn,
              profile: Path | None = None) -> dict[str, Any]:
    """One measurement on a fresh database and a fresh server process."""
    name = f"{app}_{backend}_{phase}" + ("_profiled" if profile else "")
    with database(backend, tmp, name, migrate=app == "ours") as url:
        server = ours(url, slack, tmp, name, profile=profile) if app == "ours" else reference(url, tmp, name)
        with server:
            cpu0 = cpu_seconds(server.pid)
            if phase == "closed":
                doc = loadgen(server.url, workload="pd-mix", mode="closed", concurrency=args.concurrency,
                              duration=args.duration, warmup=2, secret=PD_SECRET, prefix=f"P{phase[0]}",
                              seed=1)
            else:
                doc = loadgen(server.url, workload="pd-mix", mode="open", rate=args.rate,
                              duration=args.duration, warmup=1, secret=PD_SECRET, prefix=f"P{phase[0]}", seed=2)
            # py-spy is the parent when profiling: its own CPU is not the server's
            doc["server_cpu_s"] = None if profile else round(cpu_seconds(server.pid) - cpu0, 2)
    return doc


def run_app(app: str, backend: str, tmp: Path, args: argparse.Namespace, slack: SlackStandIn) -> dict[str, Any]:
    return {"app": app, "backend": backend,
            **{phase: run_phase(app, backend, phase, tmp, args, slack) for phase in PHASES}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--apps", default="reference,ours")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--profile", action="store_true", help="also run ours under py-spy and print the hot spots")
    p.add_argument("--json", type=Path, help="write the figures here (for bench/run)")
    args = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    profiles: dict[str, list[tuple[str, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmpdir:
        tmp = Path(tmpdir)
        slack = slack_standin()
        try:
            for backend in args.backends.split(","):
                for app in args.apps.split(","):
                    print(f"  ingest: {app} on {backend} ...", flush=True)
                    results.append(run_app(app, backend, tmp, args, slack))
                if args.profile and "ours" in args.apps:
                    for phase in PHASES:
                        raw = tmp / f"profile_{backend}_{phase}.txt"
                        print(f"  ingest: ours on {backend}, {phase} loop, under py-spy ...", flush=True)
                        run_phase("ours", backend, phase, tmp, args, slack, profile=raw)
                        profiles[f"{backend} {phase} loop"] = top_frames(raw)
        finally:
            slack.stop()
    doc = {"results": results, "ratios": ratios(results), "profiles": profiles,
           "params": {"duration": args.duration, "concurrency": args.concurrency, "rate": args.rate}}
    print_report(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


def ratios(results: list[dict[str, Any]]) -> dict[str, float | None]:
    by = {(r["app"], r["backend"]): r for r in results}
    out: dict[str, float | None] = {}
    for backend in sorted({r["backend"] for r in results}):
        a, b = by.get(("ours", backend)), by.get(("reference", backend))
        if a and b and b["closed"]["ok_per_s"]:
            out[backend] = round(a["closed"]["ok_per_s"] / b["closed"]["ok_per_s"], 2)
    return out


def print_report(doc: dict[str, Any]) -> None:
    prm = doc["params"]
    print(f"\nWebhook ingest: closed loop {prm['concurrency']} connections x {prm['duration']:.0f} s; "
          f"open loop {prm['rate']:.0f}/s x {prm['duration']:.0f} s (latency from the scheduled send)")
    print("| backend | app | max deliveries/s | server CPU s/1k | non-2xx | p50 @rate | p99 @rate | max @rate "
          "| non-2xx @rate |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in doc["results"]:
        c, o = r["closed"], r["open"]
        cpu = f"{1000 * c['server_cpu_s'] / max(1, c['sent']):.2f}" if c.get("server_cpu_s") else "-"
        print(f"| {r['backend']} | {r['app']} | {c['ok_per_s']:.0f} | {cpu} | {c['requests'] - c['ok']} "
              f"| {o['p50_ms']} ms | {o['p99_ms']} ms | {o['max_ms']} ms | {o['requests'] - o['ok']} |")
    for backend, ratio in doc["ratios"].items():
        ours_p99 = next((r["open"]["p99_ms"] for r in doc["results"]
                         if r["backend"] == backend and r["app"] == "ours"), None)
        print(f"{backend}: throughput ours/reference = {ratio:.2f} (goal >= {GOAL_RATIO}: "
              f"{'met' if ratio >= GOAL_RATIO else 'MISSED'}); ours p99 at {prm['rate']:.0f}/s = {ours_p99} ms "
              f"(goal < {GOAL_P99_MS:.0f} ms: {'met' if ours_p99 is not None and ours_p99 < GOAL_P99_MS else 'MISSED'})")
    for backend, frames in doc.get("profiles", {}).items():
        print(f"\npy-spy, ours on {backend} (closed + open loop; % of all samples of running threads):")
        print("| function | inclusive | self |\n|---|---:|---:|")
        for f, inc, own in frames:
            print(f"| `{f}` | {inc:.1f}% | {own:.1f}% |")


if __name__ == "__main__":
    raise SystemExit(main())
