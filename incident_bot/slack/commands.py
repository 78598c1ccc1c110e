"""``/incident`` (name configurable): parse the sub-command, run it in one transaction, ack with the answer.

The ack carries the ephemeral answer and is sent as soon as the transaction commits (milliseconds);
every Slack write the command causes is in the outbox and goes out after the ack.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dateutil import tz as dtz
from slack_bolt.async_app import AsyncApp
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from incident_bot.core.severity import normalise_severity
from incident_bot.core.text import clean, units
from incident_bot.runtime import Runtime
from incident_bot.services import commands as svc
from incident_bot.slack import blocks
from incident_bot.slack.mrkdwn import escape, from_slack, to_plain
from storage import repo
from storage.db import session_scope
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
# Sub-commands that change state: only for members of the incident channel.
CHANGES_STATE = {"sev", "role", "ack", "mitigated", "resolve", "reopen", "started", "update", "note", "page"}
ANYWHERE = {"declare", "help", ""}
LOCKS_INCIDENT = {"sev", "role", "ack", "mitigated", "resolve", "reopen", "started", "close", "rca"}


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
HANDLERS: dict[str, Handler] = {}
EXTRA_COMMANDS: list[tuple[str, str]] = []  # other command families add their usage lines here


def handler(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn
    return deco


def all_commands() -> list[tuple[str, str]]:
    return COMMANDS[:-1] + EXTRA_COMMANDS + COMMANDS[-1:]


@handler("status")
def _status(s: Session, inv: Invocation, inc: Incident) -> dict[str, Any]:
    return {"text": f"{inc.ref} status", "blocks": blocks.status_card(inc, utcnow())}


@handler("ack", "mitigated", "resolve", "reopen")
def _milestone(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    return svc.milestone(s, inv.rt.settings, inc, user_id=inv.user_id, command=inv.sub, note=inv.args)


@handler("sev")
def _sev(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    sev = normalise_severity(inv.args.removeprefix("SEV").removeprefix("sev")) if inv.args else None
    if sev is None:
        return svc.Reply(f"Give a severity from 1 to 4, e.g. `{inv.command} sev 2`.", ok=False)
    return svc.severity(s, inv.rt.settings, inc, user_id=inv.user_id, sev=sev)


@handler("role")
def _role(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    parts = inv.args.split()
    if len(parts) != 2 or parts[0].lower() not in svc.ROLES or not USER_MENTION.match(parts[1]):
        return svc.Reply(f"Usage: `{inv.command} role commander|comms|scribe @user`.", ok=False)
    assignee = USER_MENTION.match(parts[1]).group(1)  # type: ignore[union-attr]
    return svc.assign_role(s, inc, user_id=inv.user_id, role=parts[0].lower(), assignee=assignee)


@handler("started")
def _started(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    from incident_bot.core.timeparse import TimeParseError, describe, parse_user_time

    zone_name = svc.user_tz_name(s, inv.user_id)
    zone = (dtz.gettz(zone_name) if zone_name else None) or inv.rt.settings.tzinfo
    try:
        when = parse_user_time(inv.plain, now=utcnow(), tz=zone)
    except TimeParseError as exc:
        return svc.Reply(escape(str(exc)), ok=False)  # it quotes the user's text: no <!channel> echo
    return svc.impact_started(s, inc, user_id=inv.user_id, when=when, shown=describe(when, zone))


@handler("update", "note")
def _text(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    if not inv.args:
        return svc.Reply(f"Usage: `{inv.command} {inv.sub} <text>`.", ok=False)
    if units(inv.args) > TEXT_MAX:
        return svc.Reply(f"That {inv.sub} is {units(inv.args)} characters; Slack shows at most {TEXT_MAX} "
                         "in one message. Split it, or put the detail in the RCA.", ok=False)
    if inv.sub == "update":
        return svc.status_update(s, inc, user_id=inv.user_id, text=inv.args,
                                 announce=bool(inv.rt.settings.incident_announce_channel))
    return svc.note(s, inc, user_id=inv.user_id, text=inv.args)


@handler("timeline")
def _timeline(s: Session, inv: Invocation, inc: Incident) -> dict[str, Any]:
    # ASCII digits only, and few of them: int() of 5,000 digits raises, and so does int("²").
    page = int(inv.args) if re.fullmatch(r"[0-9]{1,6}", inv.args) else 1
    text, bl = blocks.timeline_page(inc, repo.timeline(s, inc.id or 0), page, inv.command)
    return {"text": text, "blocks": bl}


@handler("page")
def _page(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    if not inv.args:
        return svc.Reply(f"Usage: `{inv.command} page <PagerDuty service>`.", ok=False)
    if len(inv.plain) > 255:
        return svc.Reply("That is not a PagerDuty service name (over 255 characters).", ok=False)
    return svc.page(s, inv.rt.settings, inc, user_id=inv.user_id, service=inv.plain)


def run_in_incident(inv: Invocation) -> dict[str, Any]:
    """One transaction: find the channel's incident, check membership, run the handler."""
    with session_scope(inv.rt.engine) as s:
        # Lock the incident row only for commands that change it (notes and updates just add rows).
        inc = repo.incident_by_channel(s, inv.channel_id, lock=inv.sub in LOCKS_INCIDENT)
        if inc is None:
            return {"text": f"`{inv.command} {inv.sub}` works inside an incident channel. "
                            f"Declare one with `{inv.command} declare <title>`, or `{inv.command} help`."}
        if inv.sub in CHANGES_STATE and not svc.is_member(s, inv.channel_id, inv.user_id):
            return {"text": f"Only members of this channel can change {inc.ref}. Join the channel first "
                            "(if you just joined, try again in a few seconds)."}
        svc.remember_user(s, inv.user_id)
        out = HANDLERS[inv.sub](s, inv, inc)
        if isinstance(out, svc.Reply):
            if not out.ok:
                s.rollback()  # a refused command writes nothing
            return {"text": out.text}
        return out


def declare_from_text(inv: Invocation) -> dict[str, Any]:
    title = " ".join(inv.plain.split())  # a title is one line of plain text (escaping model: README)
    if len(title) > TITLE_MAX:
        return {"text": f"That title is {len(title)} characters; keep it under {TITLE_MAX} (it becomes the "
                        f"channel topic) and add the detail with `{inv.command} note` once the channel is open."}
    with session_scope(inv.rt.engine) as s:
        inc = svc.declare(s, inv.rt.settings, reporter=inv.user_id, title=title)
        ref = inc.ref
    return {"text": f"Declared *{ref}*: {escape(title)}. Its channel is being created and you are "
                    "invited; the announcement goes to the incidents channel."}


_BACKGROUND: set[asyncio.Task[Any]] = set()


def open_view_soon(client: Any, trigger_id: str | None, view: dict[str, Any]) -> None:
    """Open a modal right after the ack, not before it: Bolt answers Slack when the listener returns
    (process_before_response), and trigger_id is only valid for 3 s, so this cannot wait for the outbox."""
    task = asyncio.get_running_loop().create_task(client.views_open(trigger_id=trigger_id, view=view))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def register(app: AsyncApp, rt: Runtime, on_committed: Callable[[], None]) -> None:
    name = rt.settings.slack_command

    async def on_command(ack: Callable[..., Awaitable[None]], command: dict[str, Any], client: Any) -> None:
        # The one boundary for command text: control and bidi characters go, then Slack's escaped text
        # becomes safe mrkdwn (mass mentions neutralised); nothing after this escapes it again.
        text = clean(command.get("text")).strip()
        sub, _, args = text.partition(" ")
        sub = sub.lower()
        inv = Invocation(rt, command.get("user_id", ""), command.get("channel_id", ""), sub,
                         from_slack(args.strip()), name, command.get("trigger_id"))
        if sub in ("", "help"):
            await ack(text=f"{name} commands", blocks=blocks.help_blocks(name, all_commands()),
                      response_type="ephemeral")
            return
        try:
            if sub == "declare" and not inv.args:
                # The modal needs trigger_id within 3 s of the command: open it right after the ack.
                await ack()
                open_view_soon(client, inv.trigger_id, blocks.declare_modal())
                return
            if sub == "declare":
                reply = await run_in_threadpool(declare_from_text, inv)
            elif sub in HANDLERS:
                reply = await run_in_threadpool(run_in_incident, inv)
            else:
                await ack(text=f"I don't know `{from_slack(sub[:40])}`. Try `{name} help`.",
                          response_type="ephemeral")
                return
        except OperationalError:
            log.warning("slack command %s: database unavailable", sub)
            await ack(text="The incident database is unavailable right now; try again in a moment.",
                      response_type="ephemeral")
            return
        except (DataError, IntegrityError) as exc:
            # The database is up and refused this input (a value it cannot store): the user's mistake or
            # a gap in validation, not an outage, so answer in words (200), log the class only.
            log.warning("slack command %s: input refused by the database (%s)", sub, exc.__class__.__name__)
            await ack(text=f"I could not store that `{name} {sub}`: a value in it is too long or not valid "
                           "text. Nothing was changed.", response_type="ephemeral")
            return
        view = reply.pop("_open_view", None)
        # JSON with response_type, so the answer is ephemeral and shaped the same for every command.
        await ack(response_type="ephemeral", **reply)
        on_committed()
        if view is not None:
            open_view_soon(client, inv.trigger_id, view)

    app.command(name)(on_command)
