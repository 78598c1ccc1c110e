"""Run a stored Slack request: the fold worker's side of ``slack.accept``.

One request, one savepoint inside the fold's transaction: a refused command (not a member, an order
rule) rolls back its own writes and keeps only its answer; the answer goes to the user through the
request's ``response_url`` from the outbox, in the same transaction as the effect, so the user is told
exactly what was done.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError

from incident_bot.pipeline.fold import Applied, Plan
from incident_bot.runtime import Runtime
from incident_bot.slack import events, interactions, slash_dispatch
from incident_bot.slack.workspace import workspace_refusal
from incident_bot.usecases.runner import Session, savepoint
from incident_bot.usecases.user_views import respond
from storage.models import InboxDelivery

log = logging.getLogger(__name__)


def apply_slack(s: Session, rt: Runtime, row: InboxDelivery) -> str:
    """Apply one stored Slack request; returns the outcome recorded on the inbox row."""
    body: dict[str, Any] = json.loads(row.payload or "{}")
    why = workspace_refusal(body, rt.identity.team_id)
    if why:
        log.warning("slack %s: ignored, from another workspace (%s)", row.event_type, why)
        return "ignored"
    kind = row.event_type
    if kind.startswith("event:"):
        return savepoint(s, lambda: events.apply_event(s, body))
    if kind == "view_submission":
        return savepoint(s, lambda: interactions.apply_view(s, rt, body))
    if kind == "command":
        return _answered(s, body.get("response_url"), lambda: slash_dispatch.run_command(s, rt, body))
    if kind == "block_actions":
        return _answered(s, body.get("response_url"), lambda: interactions.apply_action(s, rt, body))
    log.info("slack %s: nothing to apply", kind)
    return "ignored"


def _answered(s: Session, response_url: str | None, run: Callable[[], slash_dispatch.Outcome]) -> str:
    try:
        # A refused command (outcome.ok False) writes nothing but its answer: its savepoint is rolled back.
        outcome = savepoint(s, run, keep=lambda out: out.ok)
    except (DataError, IntegrityError) as exc:
        # The database is up and refused this input (a value it cannot store): the user's mistake or a gap
        # in validation, not an outage: answered in words, the class logged (never the values).
        log.warning("slack command: input refused by the database (%s)", exc.__class__.__name__)
        respond(s, response_url, {"text": "I could not store that: a value in it is too long or not valid "
                                          "text. Nothing was changed."})
        return "refused"
    if outcome.reply:
        respond(s, response_url, outcome.reply)
    return "processed" if outcome.ok else "refused"


class SlackApplier:
    """The fold's applier for stored Slack requests (see ``pipeline.fold.Applier``)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def plan(self, s: Session, rows: Sequence[InboxDelivery], plan: Plan) -> None:
        for row in rows:
            if row.subject_id:
                plan.channel_ids.add(row.subject_id)
            if row.event_type == "view_submission" or (row.event_type == "command" and _declares(row)):
                plan.may_open = True  # a declaration takes the incident counter

    def apply(self, s: Session, row: InboxDelivery) -> Applied:
        return Applied(apply_slack(s, self.rt, row))


def _declares(row: InboxDelivery) -> bool:
    try:
        text = str(json.loads(row.payload or "{}").get("text") or "")
    except ValueError:
        return False
    # merge/unlink may open an incident (unlink) or lock a second one: the counter lock first, always.
    return text.strip().lower().startswith(("declare", "unlink", "merge"))
