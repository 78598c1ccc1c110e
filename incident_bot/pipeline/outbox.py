"""The outbox queue: claim the head row of each order key, finish, retry, park as dead.

Claiming is safe with many workers and replicas: a row is taken only if no earlier row of its
``order_key`` is still pending or in flight (per-channel order; a topic or an invitation held back by
Slack's rate limit is the one exception, see :data:`OVERTAKABLE`), and on PostgreSQL with
``FOR UPDATE SKIP LOCKED`` so two workers never take the same row. A claimed row is ``inflight`` with a
lease and the worker's id; when a worker dies, a live one sees its heartbeat stop and hands its rows out
again within seconds (``release_claims_of``), marked ``uncertain`` so the job checks whether the first
attempt reached Slack before repeating it. The lease is the last resort for a worker that hangs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session

from storage.db import session_scope
from storage.models import OutboxMessage, utcnow

PENDING, INFLIGHT, DONE, DEAD = "pending", "inflight", "done", "dead"

# Calls that later rows of their key never depend on: the channel's topic (state, superseded by the next
# one) and invitations (who is in the channel; messages before it are in the history they will read).
# While Slack's limit paces one of these, later messages of the same key may overtake it.
OVERTAKABLE = frozenset({"conversations.setTopic", "conversations.invite", "incident.invite_oncall",
                         "incident.invite_pd_user"})


def claim(
    session: Session, *, now: datetime, lease: timedelta, limit: int = 1,
    exclude_methods: Iterable[str] = (), worker_id: str | None = None,
) -> list[OutboxMessage]:
    excluded = list(exclude_methods)
    earlier = aliased(OutboxMessage)
    blocking = earlier.status.in_((PENDING, INFLIGHT))  # type: ignore[attr-defined]
    # A pending call that is only paced (its method out of budget right now) and that nothing behind it
    # needs does not hold its key: a storm's intro and timeline messages are not kept minutes behind a
    # channel topic or an invitation waiting for Slack's limit. It still runs after what came before it.
    paced = [m for m in excluded if m in OVERTAKABLE]
    if paced:
        blocking = and_(blocking, ~and_(earlier.status == PENDING, earlier.method.in_(paced)))  # type: ignore[attr-defined]
    head = ~exists().where(
        and_(earlier.order_key == OutboxMessage.order_key, earlier.id < OutboxMessage.id, blocking)
    )
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.status == PENDING, OutboxMessage.next_attempt_at <= now, head)  # type: ignore[arg-type]
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    if excluded:
        stmt = stmt.where(OutboxMessage.method.not_in(excluded))  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=OutboxMessage)
    rows = list(session.execute(stmt).scalars())
    for row in rows:
        row.status = INFLIGHT
        row.lease_until = now + lease
        row.claimed_by = worker_id
        row.attempts += 1
        session.add(row)
    return rows


def release_claims(session: Session, tokens: list[datetime]) -> int:
    """Hand back rows claimed with these lease ends (claims whose COMMIT answer was lost); never started."""
    stmt = (update(OutboxMessage)
            .where(OutboxMessage.status == INFLIGHT, OutboxMessage.lease_until.in_(tokens))  # type: ignore[arg-type, union-attr]
            .values(status=PENDING, lease_until=None, attempts=OutboxMessage.attempts - 1))
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def requeue_expired(session: Session, *, now: datetime) -> int:
    """In-flight rows whose worker died: hand them out again, flagged as uncertain."""
    stmt = select(OutboxMessage).where(OutboxMessage.status == INFLIGHT, OutboxMessage.lease_until < now)  # type: ignore[arg-type, operator]
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.execute(stmt).scalars())
    for row in rows:
        row.status = PENDING
        row.result = {**row.result, "uncertain": True}
        row.next_attempt_at = now
        session.add(row)
    return len(rows)


def release_claims_of(session: Session, worker_ids: list[str] | None, *, now: datetime) -> int:
    """In-flight rows of dead workers (``None``: of any worker, for SQLite at start-up, where this process
    is the only one and every in-flight row was left by a previous run that died): hand them out again
    now, flagged as uncertain (the call may have reached Slack before the worker died)."""
    if worker_ids is not None and not worker_ids:
        return 0
    stmt = select(OutboxMessage).where(OutboxMessage.status == INFLIGHT)  # type: ignore[arg-type]
    if worker_ids is not None:
        stmt = stmt.where(OutboxMessage.claimed_by.in_(worker_ids))  # type: ignore[union-attr]
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(session.execute(stmt).scalars())
    for row in rows:
        row.status, row.claimed_by, row.lease_until, row.next_attempt_at = PENDING, None, None, now
        row.result = {**row.result, "uncertain": True}
        session.add(row)
    return len(rows)


def supersede(session: Session, *, order_key: str, method: str) -> int:
    """Drop pending rows of ``method`` queued under ``order_key``: a later row makes them pointless (a
    channel topic: only the last state matters). Rows already in flight are left alone."""
    stmt = (update(OutboxMessage)
            .where(OutboxMessage.order_key == order_key, OutboxMessage.method == method,  # type: ignore[arg-type]
                   OutboxMessage.status == PENDING)  # type: ignore[arg-type]
            .values(status=DONE, result={"skipped": "superseded"}, done_at=utcnow()))
    return int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]


def finish(session: Session, row_id: int, *, result: dict[str, Any]) -> None:
    session.execute(
        update(OutboxMessage).where(OutboxMessage.id == row_id)  # type: ignore[arg-type]
        .values(status=DONE, result=result, done_at=utcnow(), lease_until=None, last_error=None,
                claimed_by=None)
    )


def retry_later(session: Session, row_id: int, *, at: datetime, error: str, uncertain: bool,
                count_attempt: bool = True, result: dict[str, Any] | None = None) -> None:
    row = session.get(OutboxMessage, row_id)
    if row is None:
        return
    row.status = PENDING
    row.next_attempt_at = at
    row.lease_until = None
    row.claimed_by = None
    row.last_error = error[:2000]
    row.result = {**(result if result is not None else row.result), "uncertain": uncertain}
    if not count_attempt:
        row.attempts = max(0, row.attempts - 1)
    session.add(row)


def park_dead(session: Session, row_id: int, *, error: str) -> None:
    session.execute(
        update(OutboxMessage).where(OutboxMessage.id == row_id)  # type: ignore[arg-type]
        .values(status=DEAD, last_error=error[:2000], lease_until=None, done_at=utcnow())
    )


def update_payload(session: Session, row_id: int, payload: dict[str, Any]) -> None:
    session.execute(
        update(OutboxMessage).where(OutboxMessage.id == row_id).values(payload=payload)  # type: ignore[arg-type]
    )


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)  # type: ignore[arg-type]
    ).all()
    result = {PENDING: 0, INFLIGHT: 0, DONE: 0, DEAD: 0}
    result.update({status: int(n) for status, n in rows})
    return result


def has_work(session: Session) -> bool:
    q = select(OutboxMessage.id).where(OutboxMessage.status.in_((PENDING, INFLIGHT))).limit(1)  # type: ignore[attr-defined]
    return session.execute(q).first() is not None


def wait_until_drained(engine: Any, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll until neither the inbox nor the outbox has work pending or in flight (the demo, tests,
    benchmarks). True if both drained."""
    from incident_bot.pipeline import inbox

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as s:
            if not inbox.has_work(s) and not has_work(s):
                return True
        time.sleep(interval)
    return False


# -- intents -------------------------------------------------------------------------------------------
# A use case says *what* a message says; the adapter that delivers it draws it. A payload queued as an
# intent names its renderer (a key of ``incident_bot/slack/intents.py``'s ``RENDERERS``) and carries plain
# JSON: ids, names, user ids, times as ISO strings, never Block Kit or mrkdwn. Escaping user text is the
# renderer's job, at the edge.

INCIDENT_FACTS = ("ref", "title", "severity", "status", "service", "description", "reporter_id", "commander_id",
                  "pagerduty_url", "impact_started_at", "detected_at", "slack_channel_id", "slack_channel_name")
FACT_TIMES = frozenset({"impact_started_at", "detected_at"})


def intent(render: str, **data: Any) -> dict[str, Any]:
    """A message as an intent: the renderer's name and its plain data (JSON-serialisable)."""
    return {"render": render, "data": data}


def facts(inc: Any, *names: str) -> dict[str, Any]:
    """The incident as the message shows it *when it is queued* (a later change must not rewrite an earlier
    message): the named fields of :data:`INCIDENT_FACTS` (all of them by default), times as ISO strings."""
    out: dict[str, Any] = {}
    for name in names or INCIDENT_FACTS:
        value = getattr(inc, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out
