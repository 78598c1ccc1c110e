"""The loop both workers run: take a step, back off when the database is away, sleep when idle.

A worker subclasses :class:`LoopWorker` and implements ``run_once`` (how many items it handled). The
loop never dies: a database outage waits a second and tries again, anything unexpected is logged with
its traceback and retried the same way. ``notify`` wakes an idle loop at once (new work in this process).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import OperationalError

from storage import sqlite_gate

log = logging.getLogger(__name__)


class LoopWorker:
    name = "worker"

    def __init__(self, *, poll_interval: float, threads: int = 1) -> None:
        self.poll_interval = poll_interval
        self.threads = threads
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def run_once(self) -> int:
        raise NotImplementedError

    def after_progress(self) -> None:
        """Called after a step that handled something."""

    def start(self) -> None:
        self._stop.clear()
        for i in range(self.threads):
            suffix = f"-{i}" if self.threads > 1 else ""
            t = threading.Thread(target=self._loop, args=(i,), name=f"{self.name}{suffix}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def notify(self) -> None:
        self.wake.set()

    def _loop(self, index: int = 0) -> None:
        # Idle, the first thread polls every poll_interval and the others far less often: new work wakes
        # them all (notify), so polling only catches work that came without a wake-up (another replica's,
        # a retry coming due), and idle polling does not grow with the number of threads.
        idle_wait = self.poll_interval * (1 if index == 0 else max(2, self.threads))
        sqlite_gate.mark_background()  # on SQLite, requests go first to the one writer (storage/sqlite_gate.py)
        while not self._stop.is_set():
            try:
                did = self.run_once()
            except OperationalError as exc:  # the database is away: wait, never die
                log.warning("%s: database unavailable (%s)", self.name, exc.__class__.__name__)
                did = 0
                self._stop.wait(1.0)
            except Exception:
                log.exception("%s: unexpected error in the worker loop", self.name)
                did = 0
                self._stop.wait(1.0)
            if did:
                self.after_progress()
            else:
                self.wake.wait(idle_wait)
                self.wake.clear()
