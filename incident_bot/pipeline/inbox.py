"""The inbox: every signed input is stored raw, with one INSERT, before it is answered.

Accept path (``accept``): SQLAlchemy Core, one ``INSERT .. ON CONFLICT (source, event_id) DO NOTHING``
in its own short transaction: no ORM, no lock on an incident, nothing else. When it returns, the row is
durable (SQLite ``synchronous=FULL``, PostgreSQL's commit), so a 2xx sent after it is never lost: the
fold worker applies the row later, after a crash too.

Worker side: ``pipeline.fold`` claims pending rows in batches and marks each ``done`` (``finish``) in
the transaction that applied it; a row claimed by a worker that dies is simply still pending, since the
claim and the effect commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Integer, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.models import InboxDelivery, utcnow

PENDING, DONE, FAILED, DEFERRED = "pending", "done", "failed", "deferred"
STATUSES = (PENDING, DONE, FAILED, DEFERRED)
_TABLE = InboxDelivery.__table__  # type: ignore[attr-defined]
# Column sizes: ids longer than these are refused at the door (HTTP 400), never truncated into a
# collision with another delivery.
MAX_EVENT_ID = 255


@dataclass(frozen=True)
class Accepted:
    inbox_id: int | None  # None: a redelivery of a row we already hold

    @property
    def duplicate(self) -> bool:
        return self.inbox_id is None


def _insert_stmt(dialect: str) -> Any:
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_TABLE)
    return ins.on_conflict_do_nothing(index_elements=["source", "event_id"]).returning(_TABLE.c.id)


_STATEMENTS: dict[str, Any] = {}


def accept(engine: Engine, *, source: str, event_id: str, event_type: str, payload: str,
           subject_id: str | None = None, status: str = PENDING, outcome: str | None = None) -> Accepted:
    """Store one input durably. Idempotent on (source, event_id)."""
    dialect = engine.dialect.name
    stmt = _STATEMENTS.get(dialect)
    if stmt is None:
        stmt = _STATEMENTS[dialect] = _insert_stmt(dialect)
    with engine.begin() as conn:
        row = conn.execute(stmt, {
            "source": source, "event_id": event_id, "event_type": event_type[:64], "status": status,
            "outcome": outcome,
            "attempts": 0, "payload": payload, "subject_id": subject_id, "received_at": utcnow(),
        }).first()
    return Accepted(row[0] if row else None)


def accept_many(engine: Engine, rows: list[dict[str, Any]], *, source: str) -> int:
    """Store many inputs of one source in one transaction (a history import); idempotent on (source,
    event_id). ``rows``: dicts with ``event_id``, ``event_type``, ``payload``, ``subject_id``. Returns how
    many were new."""
    if not rows:
        return 0
    dialect = engine.dialect.name
    stmt = _STATEMENTS.get(dialect)
    if stmt is None:
        stmt = _STATEMENTS[dialect] = _insert_stmt(dialect)
    now = utcnow()
    new = 0
    with engine.begin() as conn:
        for r in rows:
            new += conn.execute(stmt, {
                "source": source, "event_id": r["event_id"], "event_type": r["event_type"][:64],
                "status": PENDING, "outcome": None, "attempts": 0, "payload": r["payload"],
                "subject_id": r.get("subject_id"), "received_at": now}).first() is not None
    return new


# -- worker side ----------------------------------------------------------------------------------

def finish(session: Session, row: InboxDelivery, *, outcome: str, incident_id: int | None = None) -> None:
    """Mark a row applied, in the transaction that applied it (so the effect and the mark are one)."""
    row.status, row.outcome, row.done_at = DONE, outcome[:16], utcnow()
    row.incident_id = incident_id if incident_id is not None else row.incident_id
    row.last_error = None
    row.payload = None  # the effect is in the incident tables now; the raw input is not needed
    session.add(row)


# One UPDATE for a batch's rows, executed many times with their parameters (psycopg pipelines it).
_FINISH_MANY = (update(_TABLE).where(_TABLE.c.id == bindparam("row_id"))
                .values(status=DONE, outcome=bindparam("row_outcome"), done_at=bindparam("now"),
                        incident_id=func.coalesce(bindparam("row_incident", type_=Integer), _TABLE.c.incident_id),
                        last_error=None, payload=None))


def finish_many(session: Session, done: list[tuple[int, str, int | None]]) -> None:
    """:func:`finish` for a batch's rows ``(row id, outcome, incident id)`` at its end, as one statement
    run with each row's values: what the ORM did here (six attributes set on each row, then its
    unit-of-work) cost a tenth of the fold's CPU. Pending ORM changes are written first, so none of
    them lands on a row after its done mark."""
    if not done:
        return
    session.flush()
    now = utcnow()
    session.connection().execute(_FINISH_MANY, [
        {"row_id": row_id, "row_outcome": outcome[:16], "row_incident": incident_id, "now": now}
        for row_id, outcome, incident_id in done])


def defer(session: Session, row: InboxDelivery, subject_id: str) -> None:
    """Keep a row that cannot be applied yet (its incident does not exist) until its subject appears."""
    row.status, row.outcome, row.subject_id = DEFERRED, "deferred", subject_id
    session.add(row)
    session.info.setdefault(("deferred_now", row.source), []).append(row)


def expect_subjects(session: Session, source: str, subject_ids: set[str]) -> None:
    """Name the subjects this transaction may open (the fold's plan), so that the first
    ``take_deferred`` reads the deferred rows of all of them in one query."""
    session.info.setdefault(("subjects", source), set()).update(subject_ids)


def take_deferred(session: Session, source: str, subject_id: str) -> list[InboxDelivery]:
    """The rows deferred for ``subject_id``, by earlier transactions or this one. Read once per
    transaction for every subject ``expect_subjects`` named (the caller holds the lock under which rows
    are deferred, so none can be added behind its back); rows this transaction defers after that are
    kept in memory. A savepoint's rollback clears ``session.info``: the next call reads again."""
    cache: dict[str, list[InboxDelivery]] = session.info.setdefault(("deferred", source), {})
    loaded: set[str] = session.info.setdefault(("deferred_loaded", source), set())
    if subject_id not in loaded:
        session.flush()  # rows deferred earlier in this transaction must be seen by the query
        wanted = (session.info.get(("subjects", source), set()) | {subject_id}) - loaded
        stmt = (select(InboxDelivery).where(InboxDelivery.source == source,  # type: ignore[arg-type]
                                            InboxDelivery.status == DEFERRED,  # type: ignore[arg-type]
                                            InboxDelivery.subject_id.in_(wanted)))  # type: ignore[union-attr]
        for row in session.execute(stmt).scalars():
            cache.setdefault(row.subject_id or "", []).append(row)
        loaded |= wanted
    found = {id(r): r for r in cache.pop(subject_id, []) if r.status == DEFERRED}
    now = session.info.get(("deferred_now", source), [])
    for row in now:
        if row.subject_id == subject_id and row.status == DEFERRED:
            found[id(row)] = row
    return sorted(found.values(), key=lambda r: r.id or 0)


def retry(session: Session, *, row_id: int | None = None) -> int:
    """Put failed rows back in the queue with fresh attempts (``incident-bot inbox retry``): one, or all."""
    stmt = update(InboxDelivery).where(InboxDelivery.status == FAILED)  # type: ignore[arg-type]
    if row_id is not None:
        stmt = stmt.where(InboxDelivery.id == row_id)  # type: ignore[arg-type]
    stmt = stmt.values(status=PENDING, attempts=0, done_at=None)
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def rows(session: Session, *, status: str | None = None, limit: int = 100) -> list[InboxDelivery]:
    stmt = select(InboxDelivery).order_by(InboxDelivery.id.desc()).limit(limit)  # type: ignore[union-attr]
    if status:
        stmt = stmt.where(InboxDelivery.status == status)  # type: ignore[arg-type]
    return list(session.execute(stmt).scalars())


def listing(session: Session, *, status: str | None, limit: int) -> tuple[list[InboxDelivery], dict[str, int]]:
    """``incident-bot inbox list``: the newest rows of a status (none given: pending and failed), and the
    count of rows in each status."""
    if status:
        found = rows(session, status=status, limit=limit)
    else:
        found = sorted(rows(session, status=PENDING, limit=limit) + rows(session, status=FAILED, limit=limit),
                       key=lambda r: -(r.id or 0))
    return found[:limit], counts(session)


def counts(session: Session) -> dict[str, int]:
    found = dict(session.execute(select(InboxDelivery.status, func.count())  # type: ignore[call-overload]
                                 .group_by(InboxDelivery.status)).all())
    return {s: int(found.get(s, 0)) for s in STATUSES}


def has_work(session: Session) -> bool:
    q = select(InboxDelivery.id).where(InboxDelivery.status == PENDING).limit(1)  # type: ignore[attr-defined]
    return session.execute(q).first() is not None
