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
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from storage.db import session_scope
from storage.models import OutboxMessage, utcnow

PENDING, INFLIGHT, DONE, DEAD = "pending", "inflight", "done", "dead"

# Calls that later rows of their key never depend on: the channel's topic (state, superseded by the next
# one) and invitations (who is in the channel; messages before it are in the history they will read).
# While Slack's limit paces one of these, later messages of the same key may overtake it.
OVERTAKABLE = frozenset({"conversations.setTopic", "conversations.invite", "incident.invite_oncall",
                         "incident.invite_pd_user"})

# A row queued with a hold (``not_before``) to gather what arrives meanwhile into one message (an alert
# storm's "+N PagerDuty incidents" line) that nothing after it depends on: its dedup key starts with this.
# While it waits for its time, later rows of its key go ahead of it: an acknowledgement or a note is not
# kept seconds behind a summary. It still goes after everything queued before it (the channel first).
HELD = "held:"


def claim(
    session: Session, *, now: datetime, lease: timedelta, limit: int = 1,
    exclude_methods: Iterable[str] = (), worker_id: str | None = None,
    admit: Callable[[str], bool] | None = None,
) -> list[OutboxMessage]:
    """Up to ``limit`` due rows, each the head of its order key, marked in flight for ``worker_id``.
    ``admit(method)`` (the rate gate's token) may turn a row down: it stays pending, untouched.

    Its cost must not grow with the queue (a storm fills it, and a claim that slows down as the queue grows
    lets it grow faster still): the due rows are walked in order through the partial index ``ix_outbox_due``
    and the walk stops at the ``limit``-th head; "is an earlier row of this key still active" is one probe of
    ``ix_outbox_active_key``. The statement is SQL written once per dialect and set of excluded methods
    (building it with the ORM each time cost more than running it), two statements in all."""
    dialect = session.get_bind().dialect.name
    stmt = _claim_select(dialect, tuple(sorted(set(exclude_methods))))
    found = session.execute(stmt, {"now": now, "limit": limit}).scalars().all()
    rows = [row for row in found if admit is None or admit(row.method)]
    if not rows:
        return []
    until = now + lease
    session.execute(_CLAIM_UPDATE, {"ids": [row.id for row in rows], "lease_until": until, "worker": worker_id})
    for row in rows:  # what the UPDATE wrote, without a second write through the unit of work
        for key, value in (("status", INFLIGHT), ("lease_until", until), ("claimed_by", worker_id),
                           ("attempts", row.attempts + 1)):
            set_committed_value(row, key, value)
    return rows


_COLUMNS = OutboxMessage.__table__.c  # type: ignore[attr-defined]
_CLAIM_UPDATE = text(
    "UPDATE outbox SET status = 'inflight', lease_until = :lease_until, claimed_by = :worker, "
    "attempts = attempts + 1 WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True), bindparam("lease_until", type_=_COLUMNS.lease_until.type))


@lru_cache(maxsize=128)
def _claim_select(dialect: str, excluded: tuple[str, ...]) -> Any:
    def quoted(methods: Iterable[str]) -> str:
        return ", ".join("'" + m.replace("'", "''") + "'" for m in methods)

    # A pending call that is only paced (its method out of budget right now) and that nothing behind it
    # needs does not hold its key: a storm's intro and timeline messages are not kept minutes behind a
    # channel topic or an invitation waiting for Slack's limit. It still runs after what came before it.
    paced = [m for m in excluded if m in OVERTAKABLE]
    not_paced = f" AND NOT (e.status = 'pending' AND e.method IN ({quoted(paced)}))" if paced else ""
    # A held summary (see HELD) does not hold its key while it waits for its time either.
    not_held = f" AND NOT (e.status = 'pending' AND e.next_attempt_at > :now AND e.dedup_key LIKE '{HELD}%')"
    not_excluded = f" AND o.method NOT IN ({quoted(excluded)})" if excluded else ""
    # Statuses are literals, not parameters, so the partial indexes apply. SQLite's planner, without
    # statistics, prefers the equality on ``status`` (the status index: every pending row, then a sort);
    # likelihood() tells it that term selects most rows, so it walks the due index in order instead
    # (https://sqlite.org/lang_corefunc.html#likelihood). PostgreSQL: two workers never take the same row.
    pending = "likelihood(o.status = 'pending', 0.9)" if dialect == "sqlite" else "o.status = 'pending'"
    lock = "" if dialect == "sqlite" else " FOR UPDATE OF o SKIP LOCKED"
    columns = ", ".join("o." + c.name for c in _COLUMNS)
    sql = (
        f"SELECT {columns} FROM outbox AS o WHERE {pending} AND o.next_attempt_at <= :now{not_excluded}"
        " AND NOT EXISTS (SELECT 1 FROM outbox AS e WHERE e.order_key = o.order_key AND e.id < o.id"
        f" AND e.status IN ('pending', 'inflight'){not_paced}{not_held})"
        f" ORDER BY o.next_attempt_at, o.id LIMIT :limit{lock}"
    )
    # The columns are named in the model's order: .columns() maps them by position (a table migrated over
    # time need not have its columns in that order, so ``o.*`` would not do).
    textual = text(sql).bindparams(bindparam("now", type_=_COLUMNS.next_attempt_at.type)).columns(*_COLUMNS)
    return select(OutboxMessage).from_statement(textual)


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
    result = session.execute(_SUPERSEDE, {"key": order_key, "kind": method, "now": utcnow()})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# Core on the table, as _FINISH: the fold runs this for every change of an incident's state.
_SUPERSEDE = (update(OutboxMessage.__table__)  # type: ignore[attr-defined]
              .where(OutboxMessage.__table__.c.order_key == bindparam("key"),  # type: ignore[attr-defined]
                     OutboxMessage.__table__.c.method == bindparam("kind"),  # type: ignore[attr-defined]
                     OutboxMessage.__table__.c.status == PENDING)  # type: ignore[attr-defined]
              .values(status=DONE, result={"skipped": "superseded"}, done_at=bindparam("now")))


def finish(session: Session, row_id: int, *, result: dict[str, Any]) -> None:
    # Core, on the table: an UPDATE through the ORM entity also evaluates it against the session's
    # objects, which cost more than the statement (and this runs once for every call made).
    session.execute(_FINISH, {"row_id": row_id, "new_result": result, "now": utcnow()})


_FINISH = (update(OutboxMessage.__table__)  # type: ignore[attr-defined]
           .where(OutboxMessage.__table__.c.id == bindparam("row_id"))  # type: ignore[attr-defined]
           .values(status=DONE, result=bindparam("new_result"), done_at=bindparam("now"), lease_until=None,
                   last_error=None, claimed_by=None))


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
