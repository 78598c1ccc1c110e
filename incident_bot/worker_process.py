"""``serve``'s workers in a child process (PostgreSQL): the accept path keeps an interpreter to itself.

Why: in one process the fold and the outbox share the GIL with the HTTP accept path, and under a storm
they take most of it (bench/bench_ingest.py: ``serve`` with its workers in threads accepted 0.22-0.33x
the reference handler, the accept-only replica 0.54-0.57x). So on PostgreSQL ``serve`` starts
``incident-bot worker --wake-fd N`` beside itself: the same fold, outbox and scheduler a worker replica
runs, in its own interpreter. SQLite keeps them in threads: one process is its one writer, and its
request-first gate (storage/sqlite_gate.py) works inside a process only.

How the two talk, and what happens when one dies:
- wake-ups: the parent writes a byte to a pipe after each stored input, and the child's fold wakes at
  once (without it the row would wait for the next poll, up to FOLD_POLL_INTERVAL);
- the parent's death, however it dies: the kernel closes the pipe's write end with it, the child reads
  EOF and stops after its current batch and call, as on SIGTERM;
- the child's death: the parent starts another after 1 s, doubling up to 30 s while children keep dying
  young, each logged; what the dead child had claimed is taken over as any dead worker's (heartbeats);
- metrics: the child counts in prometheus_client's multiprocess files, in a directory the parent made and
  removes; the parent's ``/metrics`` reads the workers' counters from there (observability.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's name: read by the child at import
GRACE = 25.0  # seconds the child has to finish its batch and call on SIGTERM (a Slack call times out in 10)
WAKE_EVERY = 0.005  # seconds: the most a stored input waits for its wake-up when others came just before it
LIVED_LONG = 60.0  # a child that ran this long died of something new: restart it after the first delay again


class WorkerProcess:
    """Starts, watches and stops the worker child of ``serve``; a lifespan hook of the ASGI app."""

    def __init__(self, *, first_delay: float = 1.0, max_delay: float = 30.0,
                 argv: list[str] | None = None) -> None:
        self.metrics_dir = tempfile.mkdtemp(prefix="incident-bot-worker-metrics-")
        self._read_fd, self._write_fd = os.pipe()  # not inherited, but for the read end passed to the child
        os.set_blocking(self._write_fd, False)
        self.argv = argv or [sys.executable, "-m", "incident_bot", "worker", "--wake-fd", str(self._read_fd)]
        self.first_delay, self.max_delay = first_delay, max_delay
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready: subprocess.Popen[bytes] | None = None  # the child that said its workers run
        self._last_wake, self._wake_due = 0.0, False
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def status(self) -> str:
        """starting (imports and connects: a second or two), running, restarting (dead, waiting), stopped."""
        if self.pid is not None:
            return "running" if self._ready is self._proc else "starting"
        return "stopped" if self._stopping.is_set() else "restarting"

    def wake(self) -> None:
        """Tell the child's fold that an input was stored; at most one write per ``WAKE_EVERY``, and one
        more at the end of it for what came in between. A write that wakes the child's reader costs the
        kernel a wake-up: one per request was a tenth of the accept path's CPU under load, and a busy fold
        needs none (after a batch that did work it looks again at once). Called on the event loop."""
        now = time.monotonic()
        if now - self._last_wake >= WAKE_EVERY:
            self._last_wake = now
            self._write_wake()
        elif not self._wake_due:
            self._wake_due = True
            try:
                asyncio.get_running_loop().call_later(WAKE_EVERY, self._trailing_wake)
            except RuntimeError:  # not on an event loop: no timer to set, so write now
                self._wake_due = False
                self._write_wake()

    def _trailing_wake(self) -> None:
        self._wake_due = False
        self._last_wake = time.monotonic()
        self._write_wake()

    def _write_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: a wake-up is already waiting
            os.write(self._write_fd, b"\0")

    async def start(self) -> None:
        with self._lock:
            self._spawn()
        threading.Thread(target=self._watch, name="worker-process", daemon=True).start()

    async def stop(self) -> None:
        await run_in_threadpool(self.stop_now)

    def stop_now(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.terminate()  # the worker finishes its batch and call, then exits
                try:
                    proc.wait(GRACE)
                except subprocess.TimeoutExpired:
                    log.warning("the worker process (pid %s) did not stop in %.0f s; killing it", proc.pid, GRACE)
                    proc.kill()
                    proc.wait()
        # The pipe's ends are left open until the process exits: a request or a Socket Mode event still
        # finishing may call wake(), and a closed descriptor's number may already belong to another file.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _spawn(self) -> None:
        env = {**os.environ, METRICS_ENV: self.metrics_dir}
        ready_r, ready_w = os.pipe()  # the child writes a byte once its workers run, then closes it
        try:
            proc = subprocess.Popen([*self.argv, "--ready-fd", str(ready_w)], env=env,
                                    pass_fds=(self._read_fd, ready_w))
        finally:
            os.close(ready_w)
        self._proc = proc
        log.info("worker process started (pid %s)", proc.pid, extra={"fields": {"worker_pid": proc.pid}})
        threading.Thread(target=self._await_ready, args=(proc, ready_r), name="worker-ready", daemon=True).start()

    def _await_ready(self, proc: subprocess.Popen[bytes], fd: int) -> None:
        try:
            if os.read(fd, 1):  # EOF instead: the child died before its workers ran (the watcher logs it)
                self._ready = proc
        finally:
            os.close(fd)

    def _watch(self) -> None:
        delay = self.first_delay
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= LIVED_LONG:
                delay = self.first_delay
            log.error("the worker process (pid %s) exited with %s; starting another in %.0f s",
                      proc.pid, code, delay, extra={"fields": {"worker_pid": proc.pid, "exit_code": code}})
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.max_delay)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()


def tell_parent_ready(fd: int) -> None:
    """The child's workers run: ``serve``'s /readyz says ``running`` instead of ``starting``."""
    try:
        os.write(fd, b"r")
    finally:
        os.close(fd)


def wake_from_parent(fd: int, wake: Callable[[], None], stop: threading.Event) -> threading.Thread:
    """The child's end (``incident-bot worker --wake-fd``): each byte wakes the fold; EOF means ``serve``
    is gone, so the worker stops as on SIGTERM."""

    def run() -> None:
        try:
            while os.read(fd, 4096):
                wake()
        except OSError as exc:
            log.warning("wake-up pipe: %s", exc)
        log.info("serve is gone (its wake-up pipe closed); stopping")
        stop.set()

    thread = threading.Thread(target=run, name="wake-pipe", daemon=True)
    thread.start()
    return thread

