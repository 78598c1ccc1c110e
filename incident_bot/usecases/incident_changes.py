"""What the Slack commands do to an incident: one transaction each, Slack writes queued in the outbox.

Functions return a :class:`Reply` (the ephemeral text for the ack) and never call Slack themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.config import Settings
from incident_bot.core.lifecycle import Signal
from incident_bot.core.markup import stored
from incident_bot.pipeline.outbox import facts, intent
from incident_bot.usecases import directory
from incident_bot.usecases.incidents import (
    BADGE_FACTS,
    NewIncident,
    apply_signals,
    milestone_for,
    open_incident,
    order_key,
    post,
    set_topic,
)
from storage import repo
from storage.models import ChannelMember, Incident, PagerDutyLink, SlackUser, TimelineEvent, utcnow

# What each role is told when named is Slack's to say (slack/intents.py ``ROLE_HELP``).
ROLES = ("commander", "comms", "scribe")
MILESTONE_COMMANDS = {"ack": "acknowledge", "mitigated": "mitigate", "resolve": "resolve", "reopen": "reopen"}
DONE_WORDS = {"acknowledge": "acknowledged", "mitigate": "mitigated", "resolve": "resolved",
              "reopen": "reopened"}


@dataclass(frozen=True)
class Reply:
    """What to tell the person who asked, in plain words (the Slack adapter may say it its own way)."""

    text: str
    ok: bool = True
    ref: str | None = None


def is_member(session: Session, channel_id: str, user_id: str) -> bool:
    return session.get(ChannelMember, (channel_id, user_id)) is not None


def incident_in_channel(session: Session, channel_id: str, *, lock: bool = False) -> Incident | None:
    """The incident of a Slack channel (None: not an incident channel); ``lock``: its row, for a change."""
    return repo.incident_by_channel(session, channel_id, lock=lock)


def incident_by_ref(session: Session, ref: str, *, lock: bool = False) -> Incident | None:
    """``INC-42`` (any case); None when no incident has that ref."""
    return repo.incident_by_ref(session, ref, lock=lock)


def timeline_of(session: Session, inc: Incident) -> list[TimelineEvent]:
    """The incident's timeline, oldest first (``/incident timeline``)."""
    return repo.timeline(session, inc.id or 0)


def channel_incident(session: Session, channel_id: str, user_id: str) -> tuple[Incident | None, bool]:
    """The incident of a channel (None: not an incident channel), and whether ``user_id`` is a member of it:
    what a form opened in the channel checks before it opens (``/incident rca edit``)."""
    inc = repo.incident_by_channel(session, channel_id)
    return inc, inc is not None and is_member(session, channel_id, user_id)


set_members = repo.set_members


def user_tz_name(session: Session, user_id: str) -> str | None:
    row = session.get(SlackUser, user_id)
    return row.tz if row else None


def remember_user(session: Session, user_id: str) -> None:
    """Queue a users.info lookup for display names and time zones, once per user."""
    if session.get(SlackUser, user_id) is None:
        repo.enqueue(session, order_key=f"user:{user_id}", method="users.info", payload={"user": user_id},
                     dedup_key=f"users.info:{user_id}")


def declare(session: Session, settings: Settings, *, reporter: str, title: str, severity: str = "SEV3",
            service: str | None = None, description: str | None = None,
            impact_started_at: datetime | None = None, detected_at: datetime | None = None) -> Incident:
    now = utcnow()
    inc = open_incident(
        session,
        NewIncident(title=title.strip()[:1024], detected_at=detected_at or now, severity=severity,
                    origin="slack", service=service, description=description,
                    impact_started_at=impact_started_at, reporter_id=reporter,
                    fired_by="Declared", opened_kind="declared", web_base_url=settings.web_base_url),
        announce_channel=settings.incident_announce_channel,
        invite_oncall=False,
    )
    inc.commander_id = reporter  # the declarer leads until someone else is named
    session.add(inc)
    remember_user(session, reporter)
    return inc


def milestone(session: Session, settings: Settings, inc: Incident, *, user_id: str, command: str,
              note: str = "") -> Reply:
    kind = MILESTONE_COMMANDS[command]
    now = utcnow()
    tr = apply_signals(session, inc, [Signal(kind, at=now)], strict=True, source="slack", actor=user_id)  # type: ignore[arg-type]
    if tr.refused:
        return Reply(f"Can't mark {inc.ref} {DONE_WORDS[kind]}: {tr.refused}.", ok=False)
    word = DONE_WORDS[kind]
    assert inc.id is not None
    repo.add_timeline(session, incident_id=inc.id, occurred_at=now, source="slack", kind=word,
                      actor=user_id, text=f"{word.capitalize()}" + (f": {note}" if note else ""),
                      milestone=milestone_for(word, tr.changed))
    # ``note`` is mrkdwn typed in Slack (mrkdwn.from_slack): shown as typed, never escaped again.
    post(session, inc, intent("milestone", incident=facts(inc, *BADGE_FACTS), kind=kind, word=word, user=user_id,
                              note_md=note))
    _topic(session, inc)
    if kind == "resolve" and settings.resolve_linked_pagerduty and settings.pagerduty_rest_enabled:
        _resolve_pagerduty(session, inc)
    return Reply(f"{inc.ref} is {inc.status}.", ref=inc.ref)


def _resolve_pagerduty(session: Session, inc: Incident) -> None:
    links = list(session.execute(select(PagerDutyLink).where(PagerDutyLink.incident_id == inc.id)  # type: ignore[arg-type]
                                 .order_by(PagerDutyLink.pagerduty_incident_id)).scalars())  # type: ignore[arg-type]
    open_ids = [link.pagerduty_incident_id for link in links if link.status != "resolved"]
    if len(links) > 1:
        # An alert-storm group: every linked PagerDuty incident, 100 per bulk call (PagerDuty's rate limit
        # is per request, 960/min: a thousand single calls would hit it).
        for k in range(0, len(open_ids), 100):
            chunk = open_ids[k:k + 100]
            repo.enqueue(session, order_key=f"pagerduty-group:{inc.id}", method="pagerduty.resolve_many",
                         payload={"incident_ids": chunk}, incident_id=inc.id)
        return
    for link in links:
        # PagerDuty's own "resolved" webhook comes back later; it finds the incident resolved: no loop.
        repo.enqueue(session, order_key=f"pagerduty:{link.pagerduty_incident_id}", method="pagerduty.resolve",
                     payload={"incident_id": link.pagerduty_incident_id}, incident_id=inc.id)


def _topic(session: Session, inc: Incident) -> None:
    set_topic(session, inc)


def severity(session: Session, settings: Settings, inc: Incident, *, user_id: str, sev: str) -> Reply:
    before = inc.severity
    now = utcnow()
    tr = apply_signals(session, inc, [Signal("severity", at=now, value=sev)], strict=True, source="slack",
                       actor=user_id)
    if tr.refused:
        return Reply(f"Severity unchanged: {tr.refused}.", ok=False)
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=now, source="slack", kind="severity",
                      actor=user_id, text=f"Severity {before} → {sev}")
    post(session, inc, intent("severity", incident=facts(inc, *BADGE_FACTS), before=before, after=sev, user=user_id))
    _topic(session, inc)
    raised = sev < before and sev in ("SEV1", "SEV2")
    if raised and settings.incident_announce_channel:
        repo.enqueue(session, order_key=order_key(inc.id or 0), method="chat.postMessage", incident_id=inc.id,
                     payload={"channel": settings.incident_announce_channel, "render": "announcement"})
    return Reply(f"{inc.ref} is now {sev}.", ref=inc.ref)


def assign_role(session: Session, inc: Incident, *, user_id: str, role: str, assignee: str) -> Reply:
    setattr(inc, f"{role}_id", assignee)
    session.add(inc)
    now = utcnow()
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=now, source="slack", kind="role",
                      actor=user_id, text=f"{role.capitalize()}: {assignee}")
    key = order_key(inc.id or 0)
    repo.enqueue(session, order_key=key, method="conversations.invite", incident_id=inc.id,
                 payload={"channel": "$incident", "users": assignee})
    post(session, inc, intent("role", ref=inc.ref, role=role, assignee=assignee, user=user_id))
    dm = intent("role_dm", incident=facts(inc, "ref", "title", "slack_channel_id", "slack_channel_name"), role=role)
    repo.enqueue(session, order_key=f"dm:{assignee}", method="chat.postMessage", incident_id=inc.id,
                 payload={"channel": assignee, **dm})
    remember_user(session, assignee)
    return Reply(f"{assignee} is now {role} of {inc.ref}.", ref=inc.ref)


def impact_started(session: Session, inc: Incident, *, user_id: str, when: datetime, shown: str) -> Reply:
    now = utcnow()
    tr = apply_signals(session, inc, [Signal("impact_started", at=now, when=when)], strict=True,
                       source="slack", actor=user_id)
    if tr.refused:
        return Reply(f"Impact start unchanged: {tr.refused}.", ok=False)
    post(session, inc, intent("impact_started", incident=facts(inc, *BADGE_FACTS), when=when.isoformat(),
                              user=user_id, shown=shown))
    return Reply(f"Impact start of {inc.ref} set to {shown}.", ref=inc.ref)


def status_update(session: Session, inc: Incident, *, user_id: str, text: str, announce: bool = True) -> Reply:
    """``text`` is mrkdwn from Slack (see slack/mrkdwn.py): stored and posted as it is."""
    now = utcnow()
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=now, source="slack", kind="status_update",
                      actor=user_id, text=text)
    said = intent("status_update", ref=inc.ref, user=user_id, text_md=text)
    post(session, inc, said)
    if not announce:
        return Reply("Status update posted to the channel.", ref=inc.ref)
    post(session, inc, said, thread_announce=True)
    return Reply("Status update posted to the channel and the announcement thread.", ref=inc.ref)


def note(session: Session, inc: Incident, *, user_id: str, text: str, at: datetime | None = None,
         source_event_id: str | None = None) -> Reply:
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=at or utcnow(), source="slack",
                      kind="note", actor=user_id, text=text, source_event_id=source_event_id)
    return Reply(f"Added to the {inc.ref} timeline.", ref=inc.ref)


def page(session: Session, settings: Settings, inc: Incident, *, user_id: str, service: str) -> Reply:
    if not settings.pagerduty_rest_enabled:
        return Reply("PagerDuty is not configured here (set PAGERDUTY_API_TOKEN and PAGERDUTY_FROM_EMAIL), "
                     "so I can't page anyone. Page them from PagerDuty directly.", ok=False)
    repo.enqueue(session, order_key=f"page:{inc.id}", method="pagerduty.page", incident_id=inc.id,
                 payload={"service": service, "requested_by": user_id})
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=utcnow(), source="slack", kind="page",
                      actor=user_id, text=stored("slack", f"Paging on-call of {service}"))
    return Reply(f"Paging the on-call of {service} through PagerDuty; responders are invited here "
                 "as they acknowledge.", ref=inc.ref)


def paged(session: Session, inc: Incident, *, pagerduty_id: str, url: str | None, service_name: str | None) -> None:
    """The page went out (the ``pagerduty.page`` job): its PagerDuty incident is linked to ours (once)."""
    if session.get(PagerDutyLink, pagerduty_id) is None:
        session.add(PagerDutyLink(pagerduty_incident_id=pagerduty_id, incident_id=inc.id or 0, primary=False,
                                  url=url, service_name=service_name))


def pin(session: Session, inc: Incident, *, channel_id: str, ts: str, reactor: str,
        author: str | None) -> Reply:
    """A :pushpin: reaction: fetch the message (outbox, a Web API read) and add it at its own ts, once."""
    repo.enqueue(session, order_key=f"pin:{inc.id}", method="timeline.pin", incident_id=inc.id,
                 payload={"channel": channel_id, "ts": ts, "reactor": reactor, "author": author},
                 dedup_key=f"pin:{channel_id}:{ts}")
    return Reply("pinned", ref=inc.ref)


def pinned(session: Session, inc: Incident, *, channel_id: str, ts: str, at: datetime, author: str | None,
           text: str) -> None:
    """The pinned message as the ``timeline.pin`` job read it: on the timeline at its own time, with its
    author (whose name is looked up for the RCA and the timeline), once per message."""
    repo.add_timeline(session, incident_id=inc.id or 0, occurred_at=at, source="slack", kind="pinned",
                      actor=author, text=text, source_event_id=f"pin:{channel_id}:{ts}")
    directory.remember_user(session, author)
