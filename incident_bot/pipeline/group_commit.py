"""Group commit: the outcomes several threads finish at about the same time, stored in one transaction.

Every Slack call the outbox makes ends in a small write (the row done, what the call produced). Under a
storm, eight delivery threads each opening a transaction for that spent more on transactions than on the
calls, and on SQLite each commit also waits its turn for the one writer. Here a thread queues its write
and whoever holds the flush lock stores everything queued in one transaction; the others find theirs
already stored. With one thread, or at a quiet moment, it is one transaction per write, as before.

A batch that fails (the database away, or one write that raises) stores nothing: each thread is told so
and stores its own write alone, with its own retries, so one bad write never sinks the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from storage.db import session_scope

QUEUED, STORED, FAILED = "queued", "stored", "failed"


@dataclass
class _Write:
    store: Callable[[Session], None]
    state: str = QUEUED


class GroupCommit:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: list[_Write] = []
        self._queue_lock = threading.Lock()
        self._flushing = threading.Lock()
        self.transactions = 0  # for tests and figures: how many transactions stored how many writes
        self.writes = 0

    @property
    def queued(self) -> int:
        """Writes waiting for the next flush."""
        with self._queue_lock:
            return len(self._queue)

    def store(self, store: Callable[[Session], None]) -> bool:
        """Store ``store``'s writes with whatever else is queued. True once stored; False if the batch
        failed (nothing of it was stored): the caller stores it alone."""
        mine = _Write(store)
        with self._queue_lock:
            self._queue.append(mine)
        with self._flushing:
            if mine.state == QUEUED:  # no batch took it while we waited for the lock: flush, ours included
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._flush(batch)
        return mine.state == STORED

    def _flush(self, batch: list[_Write]) -> None:
        try:
            with session_scope(self.engine) as s:
                for write in batch:
                    write.store(s)
        except Exception:
            for write in batch:  # nothing of the batch was stored: each caller stores its own alone
                write.state = FAILED
            return
        for write in batch:
            write.state = STORED
        self.transactions += 1
        self.writes += len(batch)
