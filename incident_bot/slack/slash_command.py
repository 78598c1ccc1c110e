"""``/incident`` (name configurable) during the fire: status, milestones, severity, roles, notes, timeline,
paging; run by the fold worker on a stored command (the table of sub-commands: ``slash_dispatch``).

The accept path (``slack.accept``) answers at once with what needs no database (help, usage errors);
the fold runs the handler inside its transaction and the answer goes back through ``response_url``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dateutil import tz as dtz

from incident_bot.core.severity import normalise_severity
from incident_bot.core.text import units
from incident_bot.runtime import Runtime
from incident_bot.slack import blocks
from incident_bot.slack.mrkdwn import escape, to_plain, user
from incident_bot.usecases import incident_changes as svc
from incident_bot.usecases.runner import Session
from storage.models import Incident, utcnow

log = logging.getLogger(__name__)
USER_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,31})(?:\|[^>]*)?>$")  # ids fit the 32-character columns
TITLE_MAX = 250  # characters of a declared title: it is a channel topic (250) and a header, not a report
TEXT_MAX = 2900  # UTF-16 units of a note or an update: one Slack section (3000) with its heading

COMMANDS: list[tuple[str, str]] = [
    ("declare [title]", "open an incident (no title: a form)"),
    ("status", "severity, status, roles, milestones, elapsed time"),
    ("sev <1-4>", "change the severity"),
    ("role commander|comms|scribe @user", "assign a role (the assignee gets a DM)"),
    ("ack", "acknowledge"),
    ("mitigated [note]", "user impact has ended"),
    ("resolve [summary]", "resolve (also resolves linked PagerDuty incidents)"),
    ("reopen", "reopen a resolved incident"),
    ("started <time>", "move the impact start earlier: 14:54, 2026-11-26 14:54, 25m ago"),
    ("update <text>", "status update to the channel and the announcement thread"),
    ("note <text>", "add a note to the timeline"),
    ("timeline [page]", "the timeline so far"),
    ("page <PagerDuty service>", "page that service's on-call"),
    ("help", "this list"),
]


@dataclass
class Invocation:
    """One sub-command. ``args`` is safe mrkdwn (slack/mrkdwn.py ``from_slack``): keep it for text shown
    in Slack as the user typed it (notes, updates); use :attr:`plain` for names, titles and parsing."""

    rt: Runtime
    user_id: str
    channel_id: str
    sub: str
    args: str
    command: str
    trigger_id: str | None = None

    @property
    def plain(self) -> str:
        return to_plain(self.args).strip()


Handler = Callable[[Session, Invocation, Incident], "svc.Reply | dict[str, Any]"]


def status(s: Session, inv: Invocation, inc: Incident) -> dict[str, Any]:
    return {"text": f"{inc.ref} status", "blocks": blocks.status_card(inc, utcnow())}


def milestone(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    return svc.milestone(s, inv.rt.settings, inc, user_id=inv.user_id, command=inv.sub, note=inv.args)


def sev(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    sev = normalise_severity(inv.args.removeprefix("SEV").removeprefix("sev")) if inv.args else None
    if sev is None:
        return svc.Reply(f"Give a severity from 1 to 4, e.g. `{inv.command} sev 2`.", ok=False)
    return svc.severity(s, inv.rt.settings, inc, user_id=inv.user_id, sev=sev)


def role(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    parts = inv.args.split()
    if len(parts) != 2 or parts[0].lower() not in svc.ROLES or not USER_MENTION.match(parts[1]):
        return svc.Reply(f"Usage: `{inv.command} role commander|comms|scribe @user`.", ok=False)
    assignee = USER_MENTION.match(parts[1]).group(1)  # type: ignore[union-attr]
    out = svc.assign_role(s, inc, user_id=inv.user_id, role=parts[0].lower(), assignee=assignee)
    return replace(out, text=f"{user(assignee)} is now {parts[0].lower()} of {inc.ref}.") if out.ok else out


def started(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    from incident_bot.core.timeparse import TimeParseError, describe, parse_user_time

    zone_name = svc.user_tz_name(s, inv.user_id)
    zone = (dtz.gettz(zone_name) if zone_name else None) or inv.rt.settings.tzinfo
    try:
        when = parse_user_time(inv.plain, now=utcnow(), tz=zone)
    except TimeParseError as exc:
        return svc.Reply(escape(str(exc)), ok=False)  # it quotes the user's text: no <!channel> echo
    return svc.impact_started(s, inc, user_id=inv.user_id, when=when, shown=describe(when, zone))


def post_text(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    if not inv.args:
        return svc.Reply(f"Usage: `{inv.command} {inv.sub} <text>`.", ok=False)
    if units(inv.args) > TEXT_MAX:
        return svc.Reply(f"That {inv.sub} is {units(inv.args)} characters; Slack shows at most {TEXT_MAX} "
                         "in one message. Split it, or put the detail in the RCA.", ok=False)
    if inv.sub == "update":
        return svc.status_update(s, inc, user_id=inv.user_id, text=inv.args,
                                 announce=bool(inv.rt.settings.incident_announce_channel))
    return svc.note(s, inc, user_id=inv.user_id, text=inv.args)


def timeline(s: Session, inv: Invocation, inc: Incident) -> dict[str, Any]:
    # ASCII digits only, and few of them: int() of 5,000 digits raises, and so does int("²").
    page = int(inv.args) if re.fullmatch(r"[0-9]{1,6}", inv.args) else 1
    text, bl = blocks.timeline_page(inc, svc.timeline_of(s, inc), page, inv.command)
    return {"text": text, "blocks": bl}


def page(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    if not inv.args:
        return svc.Reply(f"Usage: `{inv.command} page <PagerDuty service>`.", ok=False)
    if len(inv.plain) > 255:
        return svc.Reply("That is not a PagerDuty service name (over 255 characters).", ok=False)
    out = svc.page(s, inv.rt.settings, inc, user_id=inv.user_id, service=inv.plain)
    return replace(out, text=f"Paging the on-call of *{escape(inv.plain)}* through PagerDuty; responders are "
                             "invited here as they acknowledge.") if out.ok else out


def precheck(sub: str, args: str, command: str) -> str | None:
    """A usage error that needs no database, answered in the ack itself; None when the fold must decide."""
    if sub in ("update", "note", "page", "started") and not args:
        what = {"update": "<text>", "note": "<text>", "page": "<PagerDuty service>", "started": "<time>"}[sub]
        return f"Usage: `{command} {sub} {what}`."
    if sub == "sev" and normalise_severity(args.removeprefix("SEV").removeprefix("sev")) is None:
        return f"Give a severity from 1 to 4, e.g. `{command} sev 2`."
    if sub == "role":
        parts = args.split()
        if len(parts) != 2 or parts[0].lower() not in svc.ROLES or not USER_MENTION.match(parts[1]):
            return f"Usage: `{command} role commander|comms|scribe @user`."
    return None


@dataclass(frozen=True)
class Outcome:
    """What a command did: the answer for the user, and whether its writes stand (a refusal writes nothing)."""

    reply: dict[str, Any]
    ok: bool = True
