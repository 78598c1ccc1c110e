"""The scheduler's leader lease: one row of ``job_leases`` that one replica holds at a time.

A replica takes the row when its lease ran out or is its own (one UPDATE wins: on PostgreSQL the second
waits for the first and re-checks the row; SQLite serialises writers), or inserts it when there is none.
Why that is enough, and what keeps a job exactly-once when a paused leader wakes up late: scheduler.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session

from storage import repo
from storage.models import JobLease


def take(session: Session, name: str, holder: str, *, now: datetime, expires: datetime) -> bool:
    """Take or renew the lease ``name`` until ``expires``. True while ``holder`` leads."""
    stmt = (update(JobLease)
            .where(JobLease.name == name,  # type: ignore[arg-type]
                   (JobLease.expires_at < now) | (JobLease.holder == holder))  # type: ignore[arg-type,operator]
            .values(holder=holder, expires_at=expires))
    if session.execute(stmt).rowcount == 1:  # type: ignore[attr-defined]
        return True
    return repo.insert_ignore(session, JobLease, {"name": name, "holder": holder, "expires_at": expires}, ["name"])


def give_up(session: Session, name: str, holder: str, *, at: datetime) -> None:
    """Let the lease run out at ``at`` (a clean shutdown: the others need not wait for it to expire)."""
    session.execute(update(JobLease)
                    .where(JobLease.name == name, JobLease.holder == holder)  # type: ignore[arg-type]
                    .values(expires_at=at))
