"""The trackers' outbox job kinds: create a CAPA's ticket (exactly once), update it, reconcile.

Exactly once: a create whose earlier attempt may have reached the tracker (a timeout, a worker that died
mid-call: the row is ``uncertain``) first looks for its own ticket by the incident label and the
``incident-bot:capa=<id>`` marker in the body, and adopts it instead of creating a second one.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from incident_bot.pipeline.jobs import Context, Delivered, Failure, JobKind, Permanent, Wait
from incident_bot.trackers.base import Ticket, TicketSpec, TrackerAuthError, TrackerError, TrackerRateLimited
from incident_bot.trackers.outbound import TrackerSync
from incident_bot.usecases.runner import Session
from incident_bot.usecases.ticket_changes import Tracked, reconcile, ticket_created, ticket_updated
from storage.models import Incident, OutboxMessage


def _sync(ctx: Context) -> TrackerSync:
    tracker = getattr(ctx, "tracker", None)
    if tracker is None:
        raise Permanent("no CAPA tracker is configured (CAPA_TRACKER is unset)")
    return tracker


def create_ticket(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    ts = _sync(ctx)
    snap = ts.load(int(row.payload["action_id"]))
    if snap is None:
        return Delivered(result={"skipped": "no such action"})
    if snap.item.ticket_key:
        return Delivered(result={"ticket": snap.item.ticket_key, "skipped": "has a ticket"})
    spec = ts.spec(ctx, snap)
    found = ts.tracker.find_ticket(spec) if uncertain else None
    if uncertain and found is None:
        _settle(ts, row)
    ticket = found or ts.tracker.create(spec)
    return Delivered(result={"ticket": ticket.key, "adopted": found is not None},
                     store=_store(ts, spec, ticket, adopted=found is not None))


def _settle(ts: TrackerSync, row: OutboxMessage) -> None:
    """Before creating after a lost answer, give an eventually consistent search (Jira's) time to show the
    ticket that answer was about: wait ``search_settle`` seconds once per failed attempt, then look again."""
    settle = float(getattr(ts.tracker, "search_settle", 0.0) or 0.0)
    if settle <= 0:
        return
    waited = row.result.get("search_wait") or {}
    now = time.time()
    if waited.get("attempt") != row.attempts:  # the first look after this failed attempt
        raise Wait(f"no {ts.name} ticket found yet; its search can lag, looking again in {settle:g} s",
                   seconds=settle, note={"search_wait": {"attempt": row.attempts, "since": now}})
    left = settle - (now - float(waited.get("since") or 0.0))
    if left > 0.05:
        raise Wait(f"no {ts.name} ticket found yet; looking again in {left:.0f} s", seconds=left)


def _store(ts: TrackerSync, spec: TicketSpec, ticket: Ticket, *, adopted: bool) -> Any:
    told = Tracked(tracker=ts.name, assigned=bool(spec.assignee), owner_name=spec.owner_name,
                   assignee_note=spec.assignee_note)

    def store(session: Session) -> None:
        # ``adopted``: found after a lost answer, it was written from an older state: brought up to date.
        ticket_created(session, spec.action_id, ticket, told, adopted=adopted, capa_tracker=ts.settings.capa_tracker)

    return store


def update_ticket(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    ts = _sync(ctx)
    snap = ts.load(int(row.payload["action_id"]))
    if snap is None or not snap.item.ticket_key:
        return Delivered(result={"skipped": "no ticket"})
    spec = ts.spec(ctx, snap)
    ticket = ts.tracker.update(snap.item.ticket_key, spec)
    action_id = spec.action_id

    def store(session: Session) -> None:
        ticket_updated(session, action_id, ticket)

    return Delivered(result={"ticket": ticket.key, "state": ticket.state}, store=store)


def sync_tickets(ctx: Context, row: OutboxMessage, inc: Incident | None, uncertain: bool) -> Delivered:
    """The reconcile (daily from the scheduler): read every ticket back, apply what webhooks missed, and
    queue tickets for open actions that have none."""
    ts = _sync(ctx)
    tickets = ts.fetch(row.payload.get("incident"))
    counts: dict[str, int] = {}

    def store(session: Session) -> None:
        counts.update(reconcile(session, tickets, tracker=ts.name, capa_tracker=ts.settings.capa_tracker)[0])

    return Delivered(result={"tickets": len(tickets)}, store=store)


def classify(exc: BaseException) -> Failure | None:
    if isinstance(exc, TrackerAuthError):
        return Failure("permanent", str(exc), uncertain=False)
    if isinstance(exc, TrackerRateLimited):
        return Failure("rate_limited", str(exc), retry_after=exc.retry_after, uncertain=False)
    if isinstance(exc, TrackerError):
        if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 409):
            return Failure("permanent", str(exc), uncertain=False)
        return Failure("retry", str(exc))
    if isinstance(exc, httpx.ConnectError):  # never reached the tracker
        return Failure("retry", f"tracker unreachable: {exc}", uncertain=False)
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
        return Failure("retry", f"tracker: {exc.__class__.__name__}: {exc}")
    return None


JOBS = (
    JobKind("tracker.create", create_ticket),
    JobKind("tracker.update", update_ticket),
    JobKind("tracker.sync", sync_tickets),
)
