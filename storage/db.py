"""Engine and sessions for SQLite (embedded default) and PostgreSQL (many replicas).

SQLite is put in WAL mode with ``synchronous=FULL`` so a transaction we answered 2xx for survives a
crash of the process or the machine, and every transaction starts with ``BEGIN IMMEDIATE`` so two
writers queue on the lock instead of failing with "database is locked" when a read upgrades to a write
(except :func:`read_scope`'s, which only read).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from storage import (
    sqlite_gate,
    text_search,  # noqa: F401  (its flush hook keeps the text index in step with incidents)
)

DEFAULT_SQLITE_URL = "sqlite:///incident-bot.db"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def normalise_url(url: str) -> str:
    """Accept the URLs operators paste (``postgres://``, ``postgresql://``) and use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    # Queued in this process first (first come, first served; see storage/sqlite_gate.py), then the lock.
    sqlite_gate.install(engine, reads_only=lambda conn: bool(conn.get_execution_options().get(READ_ONLY)))

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # A read_scope() transaction begins DEFERRED: in WAL mode it takes no lock, so it neither waits
        # behind a writer nor holds one up.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: a database error's text names the statement, never the values bound to it
        # (user text, tokens), so logging an exception cannot leak them.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        hide_parameters=True,
        # No ping before every checkout: it is a round trip on every accepted request (a quarter of the
        # accept path's time). A connection that went stale (PostgreSQL restarted) fails its first
        # statement instead; SQLAlchemy then invalidates the whole pool, and that one request is answered
        # 503 and retried by its sender, or retried by the worker loop. pool_recycle retires connections
        # before a firewall's idle timeout can.
        pool_pre_ping=False,
        pool_recycle=1800,
        # Kept: as many as the accept paths may use at once (Runtime.store); a connection past the kept
        # ones is opened for one checkout and closed after it. 10 + 5: the same 15 at most as before.
        pool_size=int(os.environ.get("DB_POOL_SIZE", "10")),
        max_overflow=int(os.environ.get("DB_POOL_OVERFLOW", "5")),
        pool_timeout=5,
        # Fail fast when PostgreSQL is down so the server answers 503 instead of hanging; keepalives and
        # tcp_user_timeout so a connection behind a network partition errors in ~10 s, not the kernel's ~15 min.
        connect_args={"connect_timeout": 3, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
                      "keepalives_count": 3, "tcp_user_timeout": 10_000, "options": _utc_session(url)},
    )


def kept_connections(engine: Engine) -> int:
    """How many connections the engine's pool keeps open (DB_POOL_SIZE): more at once are opened and closed."""
    size = getattr(engine.pool, "size", None)
    return size() if callable(size) else 5


def _utc_session(url: str) -> str:
    """The connection's ``options`` (those of the URL kept) with the session's time zone set to UTC.

    Every column is ``timestamptz`` and read as UTC: in a UTC session psycopg hands over datetimes that
    already are (``datetime.UTC``), where a server set to, say, ``Etc/UTC`` made it attach a zone that each
    read then converted, ~1 us a timestamp (a digest reads 60,000). No SQL here depends on the session's zone.
    """
    options = make_url(url).query.get("options") or ""
    return " ".join([*([options] if isinstance(options, str) else options), "-c timezone=UTC"]).strip()


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One engine (one pool) per database URL in this process."""
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url)
    return _ENGINES[url]


def dispose_all() -> None:
    """Close every pooled connection (tests, and process shutdown)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


@event.listens_for(Session, "after_soft_rollback")
def _forget_transaction_caches(session: Session, previous_transaction: object) -> None:
    """``session.info`` holds what this transaction already did (counter row ensured and locked, incidents
    looked up): a rollback, a savepoint's too, undoes it, so the caches go with it."""
    session.info.clear()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


READ_ONLY = "incident_bot_read_only"


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A transaction that only reads (the intro's history lookup, on the outbox's path): on SQLite it does
    not take the write lock every other transaction takes at its start, so it neither waits behind the
    fold or the accept path nor makes them wait. A write in it fails on SQLite (it may have to wait for
    the lock after all): use :func:`session_scope` for that."""
    with session_scope(engine.execution_options(**{READ_ONLY: True})) as session:
        yield session


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
