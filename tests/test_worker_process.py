"""``serve`` on PostgreSQL runs its workers in a child process (incident_bot/worker_process.py).

Real processes: the child is found in /proc, killed, and watched for; /metrics is scraped over HTTP and
parsed by prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlmodel import Session

from incident_bot.demo import pagerduty_payloads as pd
from storage.db import make_engine
from storage.models import Incident

from .conftest import PD_SECRET, ServerProcess, server_env

pytestmark = pytest.mark.postgres


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the command name
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, timeout: float = 30, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def trigger(url: str, pd_id: str, title: str) -> None:
    body = pd.encode(pd.delivery("incident.triggered", pd.incident_data(pd_id, title=title)))
    r = httpx.post(f"{url}/pagerduty/webhook", content=body, headers=pd.signed_headers(body, PD_SECRET), timeout=10)
    assert r.status_code == 202, r.text


def channel_of(engine, pd_id: str) -> str | None:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        inc = s.execute(select(Incident).where(Incident.pagerduty_incident_id == pd_id)).scalar_one_or_none()
        return inc.slack_channel_id if inc else None


def families(url: str) -> dict[str, dict[tuple, float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in out, f"{family.name} exposed twice"
        out[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return out


def test_serve_runs_its_workers_in_a_child_that_does_the_work_and_is_counted(pg_url, slack) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(server_env(pg_url, slack)).start()
    engine = make_engine(pg_url)
    try:
        child = wait_for(lambda: children(server.proc.pid), what="the worker child")[0]
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert ready["worker_process"] == "running"
        trigger(server.url, "PDCHILD1", "Checkout down")
        assert wait_for(lambda: channel_of(engine, "PDCHILD1"), what="the channel"), "the child folded and called"
        m = wait_for(lambda: (f := families(server.url))["incident_bot_outbox_calls"].get(
            ("incident_bot_outbox_calls_total", (("method", "conversations.create"), ("outcome", "done")))) and f,
            what="the child's outbox counter in /metrics")
        assert m["incident_bot_fold_batch_rows"][("incident_bot_fold_batch_rows_count", ())] >= 1
        assert m["incident_bot_deliveries"][
            ("incident_bot_deliveries_total", (("outcome", "accepted"), ("source", "pagerduty")))] == 1
        assert ("incident_bot_inbox_failed_total", ()) in m["incident_bot_inbox_failed"]

        # The child dies: serve starts another, which does the work, and the counters do not go back.
        os.kill(child, signal.SIGKILL)
        second = wait_for(lambda: [c for c in children(server.proc.pid) if c != child], what="a new child")[0]
        trigger(server.url, "PDCHILD2", "Search down")
        assert wait_for(lambda: channel_of(engine, "PDCHILD2"), what="the second channel")
        calls = wait_for(lambda: (v := families(server.url)["incident_bot_outbox_calls"].get(
            ("incident_bot_outbox_calls_total", (("method", "conversations.create"), ("outcome", "done"))))) and
            v >= 2 and v, what="both children's calls counted")
        assert calls == 2
        assert httpx.get(f"{server.url}/readyz", timeout=10).json()["worker_process"] == "running"

        # SIGTERM to serve: it stops its child, then itself, and removes the child's metrics files.
        metrics_dirs = {p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("incident-bot-worker-metrics-*")
                        if any(p.glob(f"*_{second}.db"))}
        assert len(metrics_dirs) == 1
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(40) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean shutdown
        assert not alive(second)
        assert not next(iter(metrics_dirs)).exists()
    finally:
        server.stop()
        engine.dispose()


def test_the_child_stops_by_itself_when_serve_is_killed_alone(pg_url, slack) -> None:  # type: ignore[no-untyped-def]
    server = ServerProcess(server_env(pg_url, slack)).start()
    try:
        child = wait_for(lambda: children(server.proc.pid), what="the worker child")[0]
        server.proc.send_signal(signal.SIGKILL)  # serve only, not its process group: the OOM killer's way
        server.proc.wait(10)
        wait_for(lambda: not alive(child), timeout=40, what="the orphaned child to stop")
    finally:
        server.kill()


def test_threads_when_asked_and_on_sqlite(pg_url, sqlite_url, slack) -> None:  # type: ignore[no-untyped-def]
    for env in (server_env(pg_url, slack, SERVE_WORKER_PROCESS="false"), server_env(sqlite_url, slack)):
        server = ServerProcess(env).start()
        try:
            assert "worker_process" not in httpx.get(f"{server.url}/readyz", timeout=10).json()
            assert children(server.proc.pid) == []  # a child would be there: serve starts it before it answers
            trigger(server.url, "PDTHREAD", "Threads")
            engine = make_engine(env["DATABASE_URL"])
            assert wait_for(lambda: channel_of(engine, "PDTHREAD"), what="the channel")  # noqa: B023
            engine.dispose()
        finally:
            server.stop()


def test_wake_ups_coalesce_and_the_last_one_is_never_dropped() -> None:
    """A burst of stored inputs wakes the child a few times, not once per input, and an input stored just
    after a wake-up still gets one (the trailing write), without a child or a database."""
    from incident_bot.worker_process import WAKE_EVERY, WorkerProcess

    wp = WorkerProcess()
    os.set_blocking(wp._read_fd, False)  # the child's end, read here as the child would

    def written() -> int:
        try:
            return len(os.read(wp._read_fd, 65536))
        except BlockingIOError:
            return 0

    async def burst() -> tuple[int, int]:
        for _ in range(200):
            wp.wake()
        first = written()  # the leading write only: the trailing one is not due yet
        await asyncio.sleep(WAKE_EVERY * 10)
        return first, written()

    try:
        first, trailing = asyncio.run(burst())
        assert first >= 1 and first + trailing <= 5, (first, trailing)
        assert trailing >= 1, "the inputs after the first wake-up get one too"
        time.sleep(WAKE_EVERY * 2)
        asyncio.run(_one(wp))
        assert written() == 1, "a lone input after a quiet spell is written at once"
    finally:
        wp.stop_now()


async def _one(wp) -> None:  # type: ignore[no-untyped-def]
    wp.wake()
