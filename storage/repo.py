"""Queries used inside one transaction. Portable between SQLite and PostgreSQL.

Concurrency rules that make replicas safe:
- dedup is an ``INSERT .. ON CONFLICT DO NOTHING`` on a unique key: of two racing transactions one
  inserts, the other waits for it and then sees the conflict;
- an incident is locked (``FOR UPDATE``) before it changes; SQLite serialises writers with
  ``BEGIN IMMEDIATE`` instead;
- incident numbers come from a counter row updated in the creating transaction (gap-free), and the
  counter's row lock doubles as the mutex that stops two replicas opening the same incident twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from storage.models import (
    ChannelMember,
    Counter,
    Incident,
    OutboxMessage,
    PagerDutyLink,
    TimelineEvent,
    utcnow,
)

_STATEMENTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def _insert_ignore_stmt(dialect: str, model: type, conflict: list[str]) -> Any:
    """One statement object per (dialect, table, key), executed with parameters: building and hashing a
    new construct for every row costs more than running it (the fold inserts thousands a second)."""
    key = (dialect, model.__tablename__, tuple(conflict))  # type: ignore[attr-defined]
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        table = model.__table__  # type: ignore[attr-defined]
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        # RETURNING rather than rowcount: psycopg reports no reliable rowcount for ON CONFLICT DO NOTHING.
        pk = next(iter(table.primary_key.columns))
        stmt = _STATEMENTS[key] = ins.on_conflict_do_nothing(index_elements=conflict).returning(pk)
    return stmt


def insert_ignore(session: Session, model: type, values: dict[str, Any], conflict: list[str]) -> bool:
    """Insert a row unless one with the same unique key exists. True when this call inserted it."""
    stmt = _insert_ignore_stmt(session.get_bind().dialect.name, model, conflict)
    return session.execute(stmt, values).first() is not None


def _ensure_counter(session: Session, name: str) -> None:
    done = session.info.setdefault("counters", set())
    if name not in done:
        insert_ignore(session, Counter, {"name": name, "value": 0}, ["name"])
        done.add(name)


def _model_defaults(model: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model's field defaults: the constant ones, and the factories called for each new row."""
    constant, factories = {}, {}
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        if info.default_factory is not None:
            factories[name] = info.default_factory
        elif not info.is_required():
            constant[name] = info.default
    return constant, factories


_INCIDENT_DEFAULTS = _model_defaults(Incident)


def insert_incident(session: Session, values: dict[str, Any]) -> Incident:
    """Insert a new incident now and return it, persistent, with its id: one ``INSERT .. RETURNING``.
    Constructing the model and flushing it did the same through pydantic's validation of 50 fields and a
    unit-of-work flush of everything else pending, for every incident a storm opens (half of opening
    one). The caller indexes it for search (``storage.text_search.index_new``): no flush sees it new."""
    constant, factories = _INCIDENT_DEFAULTS
    row = {**constant, **{name: make() for name, make in factories.items()}, **values}
    row.pop("id", None)
    return session.scalars(insert(Incident).returning(Incident), row).one()


def add_link(session: Session, link: PagerDutyLink) -> PagerDutyLink:
    """Add a link and remember it for :func:`get_link` in this transaction (it is written at the flush)."""
    session.add(link)
    session.info.setdefault("pd_links", {})[link.pagerduty_incident_id] = link
    return link


def get_link(session: Session, pd_incident_id: str) -> PagerDutyLink | None:
    """The link of a PagerDuty incident, including one added earlier in this transaction and not yet
    written (the fold's PagerDuty path runs without autoflush, and ``session.get`` does not see those)."""
    known = session.info.get("pd_links", {}).get(pd_incident_id)
    if known is not None:
        return known  # loaded by lock_incidents, or added by add_link
    if pd_incident_id in session.info.get("pd_links_absent", ()):
        return None  # looked for by lock_incidents under the counter lock: none can appear but ours
    for obj in session.new:  # added with session.add by a caller that does not use add_link
        if isinstance(obj, PagerDutyLink) and obj.pagerduty_incident_id == pd_incident_id:
            return obj
    return session.get(PagerDutyLink, pd_incident_id)


def lock_counter(session: Session, name: str = "incident") -> None:
    """Take the counter's row lock now (PostgreSQL); SQLite already holds the database write lock."""
    if name in session.info.setdefault("counter_locked", set()):
        return
    _ensure_counter(session, name)
    session.execute(select(Counter.value).where(Counter.name == name).with_for_update())  # type: ignore[arg-type]
    session.info["counter_locked"].add(name)


def next_number(session: Session, name: str = "incident") -> int:
    """Take the next gap-free number; holds the counter's row lock until the transaction ends."""
    _ensure_counter(session, name)
    session.info.setdefault("counter_locked", set()).add(name)
    row = session.execute(
        text("UPDATE counters SET value = value + 1 WHERE name = :n RETURNING value"), {"n": name}
    ).one()
    return int(row[0])


def lock_incidents(session: Session, *, pagerduty_ids: Iterable[str] = (), channel_ids: Iterable[str] = (),
                   incident_ids: Iterable[int] = ()) -> None:
    """Lock every incident a batch will touch, in id order, before it writes: two batches then always
    take their locks in the same order and cannot deadlock. SQLite already holds the write lock.

    Then load them, and the PagerDuty links of the batch, into the transaction: the batch's lookups by
    PagerDuty id (``incident_for_pagerduty``, ``get_link``) are answered from memory instead of a query
    per delivery. The links are read after the locks, so they are the current ones (a merge moves links
    only while it holds both incidents' locks); an incident a link was moved to in between is locked
    here too (out of order, as a lookup after the lock always did: a deadlock is retried by the fold)."""
    pd_ids, channels, ids = list(pagerduty_ids), list(channel_ids), set(incident_ids)
    if not (pd_ids or channels or ids):
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        by_pd = select(PagerDutyLink.incident_id).where(PagerDutyLink.pagerduty_incident_id.in_(pd_ids))  # type: ignore[attr-defined]
        stmt = (select(Incident.id).where(Incident.id.in_(by_pd) | Incident.slack_channel_id.in_(channels)  # type: ignore[union-attr]
                                          | Incident.id.in_(ids))  # type: ignore[union-attr]
                .order_by(Incident.id).with_for_update())  # type: ignore[arg-type]
        ids.update(session.execute(stmt).scalars())
    links = list(session.execute(select(PagerDutyLink).where(
        PagerDutyLink.pagerduty_incident_id.in_(pd_ids))).scalars()) if pd_ids else []  # type: ignore[attr-defined]
    if "incident" in session.info.get("counter_locked", ()):
        # Under the counter lock no other transaction can add a link (opening or joining takes it), so
        # "no link" stays true until this transaction adds one.
        found = {link.pagerduty_incident_id for link in links}
        session.info.setdefault("pd_links_absent", set()).update(set(pd_ids) - found)
    # Held here, not only in the session's identity map, which keeps unchanged objects weakly.
    session.info.setdefault("pd_links", {}).update({link.pagerduty_incident_id: link for link in links})
    ids.update(link.incident_id for link in links)
    cond = Incident.id.in_(ids)  # type: ignore[union-attr]
    if channels and not postgres:
        cond = cond | Incident.slack_channel_id.in_(channels)  # type: ignore[union-attr]
    stmt = select(Incident).where(cond).order_by(Incident.id)  # type: ignore[arg-type]
    if postgres:
        stmt = stmt.with_for_update()
    loaded = {inc.id: inc for inc in session.execute(stmt).scalars()}
    known = session.info.setdefault("pd_incidents", {})
    for link in links:
        if link.incident_id in loaded:
            known.setdefault(link.pagerduty_incident_id, loaded[link.incident_id])
    session.info.setdefault("loaded_incidents", {}).update(loaded)


def lock_incident(session: Session, incident_id: int) -> Incident | None:
    stmt = select(Incident).where(Incident.id == incident_id).with_for_update()  # type: ignore[arg-type]
    return session.execute(stmt).scalar_one_or_none()


def incident_for_pagerduty(session: Session, pd_incident_id: str, *, lock: bool = True) -> Incident | None:
    """Our incident for a PagerDuty incident id (the triggering one or one paged from Slack): one query,
    and none for the same id again in this transaction (the row stays locked until it ends)."""
    known = session.info.setdefault("pd_incidents", {})
    if pd_incident_id in known:
        return known[pd_incident_id]
    if lock and pd_incident_id in session.info.get("pd_links_absent", ()):
        return None  # see lock_incidents: no link, and none can appear but one this transaction adds
    stmt = (select(Incident).join(PagerDutyLink, PagerDutyLink.incident_id == Incident.id)  # type: ignore[arg-type]
            .where(PagerDutyLink.pagerduty_incident_id == pd_incident_id))  # type: ignore[arg-type]
    if lock:
        stmt = stmt.with_for_update(of=Incident)  # type: ignore[arg-type]
    found = session.execute(stmt).scalar_one_or_none()
    if found is not None and lock:
        known[pd_incident_id] = found  # a miss is not cached: the incident may be opened right after
    return found


# The one form a reference takes (``incident_ref`` in incident_bot/core/naming.py): ``INC-<number>``.
_REF = re.compile(r"INC-([1-9][0-9]{0,9})")


def incident_by_ref(session: Session, ref: str, *, lock: bool = False) -> Incident | None:
    """``INC-42`` (any case) by ``number``, the unique index: ``upper(ref) = ...`` would read every
    incident (~70 ms at 100,000 on SQLite, for every RCA export, incident page and slash command)."""
    match = _REF.fullmatch(ref.strip().upper())
    if match is None:
        return None
    stmt = select(Incident).where(Incident.number == int(match.group(1)))  # type: ignore[arg-type]
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def incident_by_channel(session: Session, channel_id: str, *, lock: bool = False) -> Incident | None:
    stmt = select(Incident).where(Incident.slack_channel_id == channel_id)  # type: ignore[arg-type]
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def add_timeline(
    session: Session,
    *,
    incident_id: int,
    occurred_at: datetime,
    source: str,
    kind: str,
    text: str = "",
    actor: str | None = None,
    milestone: str | None = None,
    source_event_id: str | None = None,
    known_new: bool = False,
) -> bool:
    """Add a timeline row; with a ``source_event_id`` a second add of the same event is a no-op.

    ``known_new``: the caller knows this event was never added (the inbox applies each delivery once):
    the row is written with the transaction's other rows in one multi-row INSERT instead of its own
    round trip. The unique key still holds; a duplicate would fail the batch, not pass silently."""
    values = {
        "incident_id": incident_id, "occurred_at": occurred_at, "source": source, "kind": kind,
        "text": text, "actor": actor, "milestone": milestone, "source_event_id": source_event_id,
        "recorded_at": utcnow(),
    }
    if source_event_id is None or known_new:
        at_end = _at_end(session)
        if at_end is not None:
            at_end.timeline.append(values)  # no reader in this transaction looks for it before the end
        else:
            session.add(TimelineEvent(**values))
        return True
    return insert_ignore(session, TimelineEvent, values, ["incident_id", "source", "source_event_id"])


_AT_END = "rows_written_at_end"


@dataclass
class QueuedCall:
    """An outbox row queued inside :func:`written_at_end`: not in the database until the block ends. Its
    caller may still change it (a storm line's count, a topic superseded in the same batch)."""

    order_key: str
    method: str
    payload: dict[str, Any]
    incident_id: int | None
    next_attempt_at: datetime
    created_at: datetime
    dedup_key: str | None = None
    status: str = "pending"
    attempts: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    done_at: datetime | None = None


@dataclass
class _AtEnd:
    timeline: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[QueuedCall] = field(default_factory=list)


@contextmanager
def written_at_end(session: Session) -> Iterator[None]:
    """The new timeline and outbox rows of a block go out together when it ends, in one ``executemany``
    of a plain INSERT per table: no ORM object, no unit-of-work and no ``RETURNING`` for rows nothing
    reads back in the block. (A multi-row ``INSERT .. RETURNING`` of a few hundred rows is a long
    statement the driver parses afresh every time: with the ORM objects, these rows were about a third
    of the fold's CPU.) The fold wraps a PagerDuty batch in it. Only while the session does not autoflush
    (the fold's reads look at what it loaded, not at rows it adds); an outbox row that must be written
    at once (a dedup key) or through the ORM first writes the queued ones, so rows keep the order they
    were queued in (the outbox's per-incident order is by id). If the block raises, the rows are dropped
    with the transaction. Not for a block with savepoints: a rolled-back savepoint would not drop them."""
    session.flush()  # rows the ORM holds from before the block get their ids first
    rows = _AtEnd()
    session.info[_AT_END] = rows
    try:
        yield
        _write_timeline(session, rows)
        _write_outbox(session, rows)
    finally:
        session.info.pop(_AT_END, None)


def _at_end(session: Session) -> _AtEnd | None:
    rows: _AtEnd | None = session.info.get(_AT_END)
    return rows if rows is not None and not session.autoflush else None


def timeline_says(session: Session, incident_id: int | None, kind: str, since: datetime, until: datetime,
                  actor: str | None, text: str | None = None) -> bool:
    """The incident has a timeline row of ``kind`` at a time in [since, until), by ``actor`` (and with
    ``text``, when given): among the rows in the database, those queued by :func:`written_at_end` and
    those added to the session and not flushed (the fold writes without autoflush)."""
    at_end: _AtEnd | None = session.info.get(_AT_END)
    queued = [*(at_end.timeline if at_end is not None else ()),
              *({c: getattr(o, c) for c in ("incident_id", "occurred_at", "kind", "actor", "text")}
                for o in session.new if isinstance(o, TimelineEvent))]
    for row in queued:
        if (row["incident_id"] == incident_id and row["kind"] == kind and since <= row["occurred_at"] < until
                and row["actor"] == actor and (text is None or row["text"] == text)):
            return True
    params = {"incident_id": incident_id, "kind": kind, "since": since, "until": until, "actor": actor,
              "text": text}
    stmt = _timeline_says_stmt(actor is None, text is not None)
    return session.connection().execute(stmt, params).first() is not None


_SAYS: dict[tuple[bool, bool], Any] = {}


def _timeline_says_stmt(no_actor: bool, with_text: bool) -> Any:
    """Built once per shape, run with parameters (backfill asks it for every event it imports)."""
    stmt = _SAYS.get((no_actor, with_text))
    if stmt is None:
        t = TimelineEvent.__table__.c  # type: ignore[attr-defined]
        stmt = select(t.id).where(t.incident_id == bindparam("incident_id"), t.kind == bindparam("kind"),
                                  t.occurred_at >= bindparam("since"), t.occurred_at < bindparam("until"),
                                  t.actor.is_(None) if no_actor else t.actor == bindparam("actor"))
        if with_text:
            stmt = stmt.where(t.text == bindparam("text"))
        stmt = _SAYS[(no_actor, with_text)] = stmt.limit(1)
    return stmt


def _write_timeline(session: Session, rows: _AtEnd) -> None:
    if rows.timeline:
        session.connection().execute(insert(TimelineEvent.__table__), rows.timeline)  # type: ignore[attr-defined]
        rows.timeline.clear()


def _write_outbox(session: Session, rows: _AtEnd | None) -> None:
    if rows is not None and rows.outbox:
        # A shallow copy of each call's fields (``dataclasses.asdict`` deep-copies every payload).
        session.connection().execute(insert(OutboxMessage.__table__),  # type: ignore[attr-defined]
                                     [dict(call.__dict__) for call in rows.outbox])
        rows.outbox.clear()


def enqueue(
    session: Session,
    *,
    order_key: str,
    method: str,
    payload: dict[str, Any],
    incident_id: int | None = None,
    dedup_key: str | None = None,
    not_before: datetime | None = None,
) -> bool:
    """Queue a Slack/PagerDuty call for the outbox worker. False if ``dedup_key`` was already queued."""
    if dedup_key is None:
        enqueue_row(session, order_key=order_key, method=method, payload=payload, incident_id=incident_id,
                    not_before=not_before)
        return True
    values = {
        "order_key": order_key, "method": method, "payload": payload, "incident_id": incident_id,
        "status": "pending", "attempts": 0, "next_attempt_at": not_before or utcnow(),
        "dedup_key": dedup_key, "result": {}, "created_at": utcnow(),
    }
    _write_outbox(session, session.info.get(_AT_END))  # the rows queued before it go first
    return insert_ignore(session, OutboxMessage, values, ["dedup_key"])


def enqueue_row(session: Session, *, order_key: str, method: str, payload: dict[str, Any],
                incident_id: int | None = None, not_before: datetime | None = None,
                dedup_key: str | None = None) -> OutboxMessage | QueuedCall:
    """Queue a call and return its row (not yet written: a batch's rows go out together). A ``dedup_key``
    here must be new (a duplicate fails the transaction): use ``enqueue`` for keys that may exist."""
    now = utcnow()
    at_end = _at_end(session)
    if at_end is not None:
        call = QueuedCall(order_key=order_key, method=method, payload=payload, incident_id=incident_id,
                          next_attempt_at=not_before or now, created_at=now, dedup_key=dedup_key)
        at_end.outbox.append(call)
        return call
    _write_outbox(session, session.info.get(_AT_END))
    row = OutboxMessage(order_key=order_key, method=method, payload=payload, incident_id=incident_id,
                        status="pending", attempts=0, next_attempt_at=not_before or now, result={},
                        created_at=now, dedup_key=dedup_key)
    session.add(row)
    return row


def timeline(session: Session, incident_id: int) -> list[TimelineEvent]:
    stmt = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)  # type: ignore[arg-type]
        .order_by(TimelineEvent.occurred_at, TimelineEvent.id)  # type: ignore[arg-type]
    )
    return list(session.execute(stmt).scalars())


def set_members(session: Session, channel_id: str, added: Iterable[str] = (), removed: Iterable[str] = ()) -> None:
    """Record who is in a channel, as Slack told us (joins, leaves, our own invites)."""
    for uid in added:
        insert_ignore(session, ChannelMember, {"channel_id": channel_id, "user_id": uid, "updated_at": utcnow()},
                      ["channel_id", "user_id"])
    for uid in removed:
        session.execute(delete(ChannelMember).where(ChannelMember.channel_id == channel_id,  # type: ignore[arg-type]
                                                     ChannelMember.user_id == uid))  # type: ignore[arg-type]
