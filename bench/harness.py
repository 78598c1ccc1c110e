"""What every benchmark needs to set up and to measure; each bench_*.py keeps only its own measurement.

Paths and constants; fresh databases (a SQLite file or a PostgreSQL schema); the cached datasets of
bench/gen_data.py (bench/data/<kind>-<n>.db or the schema bench_<kind>_<n>, kept between runs); server
processes of ours (``incident-bot serve``, ``worker``) and of bench/reference_app.py; the Slack stand-in as
the benches configure it; the load generator (bench/loadgen.py, its own process) run to completion or in
the background; wall time and peak RSS of fresh CLI processes; percentiles (one definition: nearest rank)
and the machine's load.

Only the standard library is imported at import time: bench/loadgen.py imports this module too, and it
starts while servers are being measured on a shared machine.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from incident_bot.demo.slack_standin import SlackStandIn

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DATA = BENCH / "data"  # git-ignored: the cached datasets and bench/run's raw figures
PY = sys.executable
BOT = str(Path(PY).parent / "incident-bot")
PG_BASE = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PD_SECRET = "bench-pd-secret"
SLACK_SECRET = "bench-slack-signing-secret"
END = datetime(2026, 11, 1, tzinfo=UTC)  # the generated history is the year before this instant

# The checkout itself (tests.standins is not an installed package), ahead of any other copy.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The bot's own settings: cleared from the environment a bench passes on, so the operator's shell
# cannot change what is measured.
_BOT_PREFIXES = ("SLACK_", "PAGERDUTY_", "DATABASE_", "OUTBOX_", "INCIDENT_", "DIGEST_")


# -- databases --------------------------------------------------------------------------------------

def schema_url(schema: str, base: str = PG_BASE) -> str:
    """The URL of one schema of the PostgreSQL database ``base`` (its search_path)."""
    return f"{base}?options=-csearch_path%3D{schema}"


def create_schema(schema: str, base: str = PG_BASE) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def drop_schema(schema: str, base: str = PG_BASE) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def database(backend: str, tmp: Path, name: str, *, migrate: bool = True) -> Iterator[str]:
    """A fresh SQLite file, or a fresh schema in the PostgreSQL ``test`` database (dropped afterwards).

    ``migrate`` runs ``incident-bot db upgrade`` for PostgreSQL (``serve`` migrates SQLite by itself).
    """
    from storage.db import normalise_url

    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'{name}.db'}"
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    create_schema(schema)
    url = normalise_url(schema_url(schema))
    try:
        if migrate:
            subprocess.run([BOT, "db", "upgrade"], env=bot_env(url, None), cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        yield url
    finally:
        drop_schema(schema)


def incident_count(url: str) -> int:
    """Incidents in the database; -1 when it has no tables (or cannot be reached)."""
    from sqlalchemy import text

    from storage.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM incidents")).scalar_one())
    except Exception:
        return -1
    finally:
        engine.dispose()


# -- the cached datasets (bench/gen_data.py) --------------------------------------------------------

def dataset_url(kind: str, backend: str, n: int, suffix: str = "") -> str:
    """Where the dataset ``kind`` of ``n`` incidents is kept: bench/data/<kind>-<n><suffix>.db, or the
    schema bench_<kind>_<n><suffix>. Nothing is created."""
    if backend == "sqlite":
        return f"sqlite:///{DATA / f'{kind}-{n}{suffix}.db'}"
    return schema_url(f"bench_{kind}_{n}{suffix}")


def dataset_db(kind: str, backend: str, n: int, suffix: str = "") -> str:
    """:func:`dataset_url`, with bench/data/ or the schema created when missing (the data may not be)."""
    if backend == "sqlite":
        DATA.mkdir(parents=True, exist_ok=True)
    else:
        create_schema(f"bench_{kind}_{n}{suffix}")
    return dataset_url(kind, backend, n, suffix)


def dataset(kind: str, backend: str, n: int, *, then: Callable[[str], str] | None = None) -> str:
    """The dataset ``kind`` with ``n`` incidents (a year ending :data:`END`, seed 1), generated only when it
    does not hold ``n`` incidents already. ``then(url)`` adds a bench's own rows after a generation and
    returns what the progress line says about them."""
    import gen_data

    url = dataset_db(kind, backend, n)
    if incident_count(url) != n:
        t0 = time.perf_counter()
        res = gen_data.load(url, n, end=END, seed=1, do_reset=True)
        extra = then(url) if then else ""
        print(f"  generated {backend} {n:,}: {res['timeline_events']:,} timeline rows{extra} "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
    return url


def drop_datasets(kind: str, sizes: list[int]) -> None:
    """Drop the PostgreSQL schemas of a dataset (the SQLite files stay: they are cheap to keep)."""
    for n in sizes:
        drop_schema(f"bench_{kind}_{n}")


# -- processes --------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This process's environment without the bot's settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_BOT_PREFIXES)}


def bot_env(db_url: str, slack: SlackStandIn | None, announce: str = "C0NONE", **extra: str) -> dict[str, str]:
    """The environment an operator would set for a server; everything else stays at its default."""
    env = clean_env()
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


def cli_env(db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a one-off ``incident-bot`` command (a report) on ``db_url``, in UTC."""
    from storage.db import normalise_url

    return {**clean_env(), "DATABASE_URL": normalise_url(db_url), "TIMEZONE": "UTC", **extra}


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
        import httpx

        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                         stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                # Answering, and serve's worker child (PostgreSQL) past its start-up: not measured as load.
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200 and not _child_starting(self.url):
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc:
            _interrupt(self.proc)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _child_starting(url: str) -> bool:
    import httpx

    r = httpx.get(f"{url}/readyz", timeout=5)  # the reference app has none: 404
    return r.status_code == 200 and r.json().get("worker_process") == "starting"


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy, uvicorn and the worker all stop cleanly on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def ours(db_url: str, slack: SlackStandIn, tmp: Path, name: str, *, profile: Path | None = None,
         accept_only: bool = False, **extra: str) -> Server:
    """``incident-bot serve`` as an operator runs it (optionally under ``py-spy record``); ``accept_only``:
    ``serve --no-worker``, the HTTP replica of the split topology (its worker is another process)."""
    import shutil

    port = free_port()
    env = bot_env(db_url, slack, _announce_channel(slack), **extra)
    argv = [BOT, "serve", "--host", "127.0.0.1", "--port", str(port)] + (["--no-worker"] if accept_only else [])
    if profile is not None:
        spy = shutil.which("py-spy", path=str(Path(PY).parent)) or "py-spy"
        argv = [spy, "record", "--rate", "250", "--format", "raw", "--gil", "--nonblocking", "--subprocesses",
                "-o", str(profile), "--", *argv]
    return Server(argv, env, tmp / f"{name}.log", port, tmp)


def reference(db_url: str, tmp: Path, name: str) -> Server:
    """bench/reference_app.py: signature check and one row, the floor our server is compared with."""
    port = free_port()
    return Server([PY, str(BENCH / "reference_app.py"), "--port", str(port)], bot_env(db_url, None),
                  tmp / f"{name}.log", port, tmp)


@contextlib.contextmanager
def worker(db_url: str, slack: SlackStandIn, tmp: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """``incident-bot worker``: the fold and outbox workers beside an accept-only ``serve --no-worker``."""
    env = bot_env(db_url, slack, _announce_channel(slack))
    with open(tmp / f"{name}_worker.log", "ab") as log:
        proc = subprocess.Popen([BOT, "worker"], env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield proc
    finally:
        _interrupt(proc)


def _announce_channel(slack: SlackStandIn) -> str:
    announce = slack.channel_by_name("incidents")
    return str(announce["id"]) if announce else slack.add_channel("incidents")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (its threads) and of its live children (``serve``'s
    worker child on PostgreSQL), from /proc."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Measured(NamedTuple):
    wall: float  # seconds
    rss: float  # peak RSS, MiB
    cpu: float  # seconds of CPU, user + system: what load on a shared machine inflates least


def run_measured(argv: list[str], env: dict[str, str], cwd: str | Path) -> Measured:
    """Wall time, peak RSS and CPU time of one fresh process run to completion; exits when it fails.

    RSS and CPU are the process's own (``os.wait4`` rusage), which covers interpreter start-up and imports.
    """
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty process cannot block on it
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: Popen must not wait again
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{shlex.join(argv)} failed ({proc.returncode}):\n{err.read().decode()[-800:]}")
    return Measured(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)  # maxrss: KiB on Linux


def time_process(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """(median wall seconds, max peak RSS MiB) of ``repeat`` fresh runs, in an empty directory (no .env)."""
    walls, rss = [], []
    with tempfile.TemporaryDirectory() as cwd:
        for _ in range(repeat):
            wall, mib, _ = run_measured(argv, env, cwd)
            walls.append(wall)
            rss.append(mib)
    return statistics.median(walls), max(rss)


# -- the Slack stand-in and the pipeline ------------------------------------------------------------

def slack_standin(create_per_minute: int | None = 20) -> SlackStandIn:
    """The Slack stand-in, started, with the ``incidents`` channel and Slack's Tier 2 limit on channel
    creation (``None``: no limit, for benches that measure our pipeline rather than Slack's pace)."""
    from incident_bot.demo.slack_standin import SlackStandIn

    slack = SlackStandIn().start()
    slack.add_channel("incidents")
    if create_per_minute is not None:
        slack.rate_limit("conversations.create", create_per_minute)
    return slack


def wait_folded(db_url: str, timeout: float = 120.0) -> bool:
    """Until the fold worker has applied every stored delivery and command. True if it did in time."""
    from incident_bot.pipeline import inbox
    from storage.db import make_engine, session_scope

    engine = make_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(engine) as s:
                if not inbox.has_work(s):
                    return True
            time.sleep(0.2)
        return False
    finally:
        engine.dispose()


# Methods our own budget paces at Slack's Tier 2/3 (50 a minute): after a storm they drain for minutes.
PACED_METHODS = ("conversations.setTopic", "conversations.invite", "incident.invite_oncall",
                 "incident.invite_pd_user")


def outbox_left(session: Any, ignore_methods: tuple[str, ...] | frozenset[str] = ()) -> int:
    """Outbox rows pending or in flight, leaving aside those of ``ignore_methods``."""
    from sqlalchemy import func, select

    from storage.models import OutboxMessage

    return int(session.execute(
        select(func.count()).select_from(OutboxMessage)
        .where(OutboxMessage.status.in_(("pending", "inflight")),  # type: ignore[attr-defined]
               OutboxMessage.method.not_in(tuple(ignore_methods)))).scalar_one())  # type: ignore[attr-defined]


def wait_drained(db_url: str, timeout: float = 120.0, ignore_methods: tuple[str, ...] = ()) -> bool:
    """Until neither the inbox nor the outbox has work left (every Slack call made), leaving aside the
    outbox rows of ``ignore_methods``. True if in time."""
    from incident_bot.pipeline import inbox
    from storage.db import make_engine, session_scope

    engine = make_engine(db_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(engine) as s:
                if not inbox.has_work(s) and not outbox_left(s, ignore_methods):
                    return True
            time.sleep(0.1)
        return False
    finally:
        engine.dispose()


# -- the load generator (bench/loadgen.py, its own process) -----------------------------------------

def _loadgen_argv(target: list[str], opts: dict[str, Any]) -> list[str]:
    argv = [PY, str(BENCH / "loadgen.py"), *target]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def loadgen(url: str, **opts: Any) -> dict[str, Any]:
    """Run bench/loadgen.py against ``url`` (several: comma-separated) to completion; its figures.
    ``opts`` are its options, ``slack_user="U1"`` for ``--slack-user U1``."""
    out = subprocess.run(_loadgen_argv(["--url", url], opts), capture_output=True, text=True, check=True,
                         timeout=float(opts.get("duration", 20)) + 300)
    return json.loads(out.stdout)


def start_loadgen(url: str, **opts: Any) -> subprocess.Popen[str]:
    """:func:`loadgen` in the background (while another runs); :func:`finish_loadgen` collects it."""
    return subprocess.Popen(_loadgen_argv(["--url", url], opts), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_loadgen(proc: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {err[-2000:]}")
    return json.loads(out)


def loadgen_inprocess(db_url: str, **opts: Any) -> dict[str, Any]:
    """bench/loadgen.py ``--inprocess``: the deliveries applied by the service layer, no server."""
    out = subprocess.run(_loadgen_argv(["--inprocess", db_url], opts), capture_output=True, text=True,
                         check=True, timeout=600)
    return json.loads(out.stdout)


# -- figures ----------------------------------------------------------------------------------------

def pct(ascending: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` from 0 to 1) of an ascending list; None when it is empty."""
    if not ascending:
        return None
    return ascending[min(len(ascending) - 1, max(0, math.ceil(q * len(ascending)) - 1))]


def spread(values: list[float], unit: str = "ms") -> dict[str, float | int | None]:
    """n, p50, p99 and max of ``values`` (any order), to 0.1, the keys ending in ``unit`` (``p50_ms``)."""
    v = sorted(values)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 1)

    return {"n": len(v), f"p50_{unit}": r(pct(v, 0.5)), f"p99_{unit}": r(pct(v, 0.99)),
            f"max_{unit}": r(v[-1] if v else None)}


def as_utc(value: datetime | str) -> datetime:
    """A timestamp read back from either database as an aware UTC datetime (SQLite returns text, and
    naive values are UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def loadavg() -> str:
    """The machine's load average over 1, 5 and 15 minutes: others share it, so figures say what it was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
