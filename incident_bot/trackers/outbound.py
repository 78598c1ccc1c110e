"""CAPA -> ticket: the tracker client with what its jobs need besides it (the use cases queue the jobs
and read the action for them: ``usecases/tickets.py``)."""

from __future__ import annotations

import logging
from typing import Any

from incident_bot.config import Settings
from incident_bot.trackers.base import Ticket, TicketSpec, Tracker
from incident_bot.usecases import runner, tickets
from incident_bot.usecases.runner import Engine
from incident_bot.usecases.tickets import ActionSnapshot

log = logging.getLogger("incident_bot.trackers")


class TrackerSync:
    """The tracker client and what its jobs need besides it (the database to read the CAPA, settings for
    the RCA link). One per process, in the outbox's :class:`~incident_bot.pipeline.jobs.Context`."""

    def __init__(self, settings: Settings, engine: Engine, tracker: Tracker) -> None:
        self.settings, self.engine, self.tracker = settings, engine, tracker
        self._accounts: dict[str, str | None] = {}  # email -> tracker account, for this process

    @property
    def name(self) -> str:
        return self.tracker.name

    def load(self, action_id: int) -> ActionSnapshot | None:
        return runner.read(self.engine, tickets.action_snapshot, action_id)

    def owner_email(self, ctx: Any, snap: ActionSnapshot) -> tuple[str | None, str | None]:
        """The owner's (name, email): the Slack user cache first, then ``users.info``."""
        if not snap.item.owner_id:
            return None, None
        if snap.owner_email:
            return snap.owner_name or snap.item.owner_id, snap.owner_email
        try:
            user = ctx.slack.users_info(user=snap.item.owner_id)["user"]
        except Exception as exc:  # Slack down or the user gone: unassigned, said in the ticket
            log.warning("trackers: users.info %s failed (%s)", snap.item.owner_id, exc.__class__.__name__)
            return snap.owner_name or snap.item.owner_id, None
        profile = user.get("profile") or {}
        return (profile.get("real_name") or user.get("real_name") or user.get("name") or snap.item.owner_id,
                profile.get("email"))

    def spec(self, ctx: Any, snap: ActionSnapshot) -> TicketSpec:
        item, inc = snap.item, snap.incident
        name, email = self.owner_email(ctx, snap)
        assignee, note = None, None
        if item.owner_id and not email:
            note = "no email for this Slack user"
        elif email:
            if email.lower() not in self._accounts:
                self._accounts[email.lower()] = self.tracker.find_user(email)
            assignee = self._accounts[email.lower()]
            if assignee is None:
                note = f"no {self.tracker.name} account for {email}"
        base = (self.settings.web_base_url or "").rstrip("/")
        return TicketSpec(
            action_id=item.id or 0, incident_ref=inc.ref, title=item.title, type=item.type,
            priority=item.priority, status=item.status, due=item.due_date,
            rca_url=f"{base}/ui/incidents/{inc.ref}" if base else None, incident_title=inc.title,
            owner_name=f"{name} (Slack {item.owner_id})" if item.owner_id else None, assignee=assignee,
            assignee_note=note)

    def fetch(self, incident_ref: str | None = None) -> list[Ticket]:
        """The current state of every ticket we hold (of one incident), for the reconcile."""
        keys = runner.read(self.engine, tickets.ticket_keys, incident_ref)
        return self.tracker.fetch(keys) if keys else []


def build(settings: Settings, engine: Engine) -> TrackerSync | None:
    """The configured tracker (CAPA_TRACKER), or None: no sync."""
    if settings.capa_tracker == "github":
        from incident_bot.trackers.github import GitHubTracker

        return TrackerSync(settings, engine, GitHubTracker(settings))
    if settings.capa_tracker == "jira":
        from incident_bot.trackers.jira import JiraTracker

        return TrackerSync(settings, engine, JiraTracker(settings))
    if settings.capa_tracker == "linear":
        from incident_bot.trackers.linear import LinearTracker

        return TrackerSync(settings, engine, LinearTracker(settings))
    return None
