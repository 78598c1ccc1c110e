"""SQLite's one writer, handed out in arrival order within the process.

Every transaction on SQLite begins with ``BEGIN IMMEDIATE`` (storage/db.py): it takes the database's
write lock or waits for it. SQLite's own wait is a busy handler that sleeps and polls (1, 2, 5 ... 100 ms):
a thread that just committed takes the lock again before the sleepers wake, so under an alert storm the
fold worker's back-to-back batches starved the accept path's one-row INSERTs past their 4 s deadline
(503s). Here the threads of one process queue for it in a ticket line instead: first come, first served,
woken the moment the lock is free, so an accept waits at most for the batch in front of it.

Background threads (the fold and outbox workers: :func:`mark_background`) queue in a second line, served
when the first is empty: a request has a deadline and a client waiting, a worker's batch does not. So a
faster outbox does not push the accept path's INSERTs back; a worker still gets the lock at least once
every :data:`FAIR_EVERY` hand-overs, however busy the requests keep it.

Other processes (the CLI next to ``serve``) still meet SQLite's busy handler; the gate only orders this
process's threads. A transaction that does not end within ``timeout`` (a leak, a hung statement) does not
block the line for ever: the next in line goes ahead and SQLite's own lock decides.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event

FAIR_EVERY = 8  # hand-overs to requests in a row before a waiting background thread is served
_thread = threading.local()


def mark_background() -> None:
    """This thread is a background worker: its transactions wait behind the requests' (see above)."""
    _thread.background = True


def is_background() -> bool:
    return bool(getattr(_thread, "background", False))


class TicketGate:
    """A FIFO lock handed from one holder straight to the next waiter (one wake-up, no herd), which any
    thread may release (the pool's check-in may run on another thread than the BEGIN)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._held = False
        self._line: collections.deque[threading.Event] = collections.deque()  # requests
        self._background: collections.deque[threading.Event] = collections.deque()  # workers
        self._urgent_in_a_row = 0

    def acquire(self, *, background: bool = False) -> threading.Event | None:
        """Wait for the gate; returns the token to give back. None: taken without waiting."""
        with self._mutex:
            if not self._held:
                self._held = True
                return None
            turn = threading.Event()
            line = self._background if background else self._line
            line.append(turn)
        if not turn.wait(self.timeout):
            with self._mutex:
                if turn in line:  # the holder is stuck: go ahead, SQLite's own lock decides
                    line.remove(turn)
                    return turn
        return turn

    def release(self) -> None:
        with self._mutex:
            fair = self._background and self._urgent_in_a_row >= FAIR_EVERY
            if self._line and not fair:
                self._urgent_in_a_row += 1
                self._line.popleft().set()  # still held: handed to the next in line
            elif self._background:
                self._urgent_in_a_row = 0
                self._background.popleft().set()
            else:
                self._urgent_in_a_row = 0
                self._held = False

    @property
    def waiting(self) -> int:
        with self._mutex:
            return len(self._line) + len(self._background)


def install(engine: Engine, timeout: float = 30.0, *, reads_only: Callable[[Any], bool] = lambda _conn: False
            ) -> TicketGate:
    """Queue this engine's transactions through one gate: taken at BEGIN, given back once COMMIT or
    ROLLBACK has finished (not before: the next in line would meet the lock still held and fall back
    to SQLite's sleeping busy handler), or when the connection goes back to the pool. A transaction for
    which ``reads_only(connection)`` is true (``storage.db.read_scope``: a DEFERRED BEGIN, no write lock in
    WAL mode) does not queue: it waits for no writer and holds none up."""
    gate = TicketGate(timeout)
    holding: set[int] = set()  # id() of the DBAPI connections that hold the gate
    dialect = engine.dialect

    def _take(conn: Any) -> None:
        key = id(conn.connection.dbapi_connection)
        if key in holding or reads_only(conn):
            return  # this connection holds it already, or it only reads
        gate.acquire(background=is_background())
        holding.add(key)

    def _give_back(dbapi_conn: Any) -> None:
        key = id(dbapi_conn)
        if key in holding:
            holding.discard(key)
            gate.release()

    def _ending(original: Callable[[Any], None]) -> Callable[[Any], None]:
        def end(dbapi_conn: Any) -> None:
            try:
                original(dbapi_conn)
            finally:
                _give_back(dbapi_conn)
        return end

    dialect.do_commit = _ending(dialect.do_commit)  # type: ignore[method-assign]
    dialect.do_rollback = _ending(dialect.do_rollback)  # type: ignore[method-assign]
    event.listen(engine, "begin", _take)
    event.listen(engine.pool, "checkin", lambda dbapi_conn, _record: _give_back(dbapi_conn))
    return gate
