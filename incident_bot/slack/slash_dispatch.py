"""The ``/incident`` sub-commands in one table: name -> handler, with the rules each follows (members
only, locks the incident) and the help list. Nothing registers itself on import: a sub-command exists
because it is written here. The handlers live by concept (``slash_command``: during the fire;
``slash_postincident``: RCA, CAPA, close, merge; ``similar``); this module dispatches a stored command to
them inside the fold's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from incident_bot.core.text import clean
from incident_bot.runtime import Runtime
from incident_bot.slack import similar
from incident_bot.slack import slash_command as during
from incident_bot.slack import slash_postincident as after
from incident_bot.slack.mrkdwn import escape, from_slack
from incident_bot.slack.slash_command import TITLE_MAX, Handler, Invocation, Outcome, precheck
from incident_bot.usecases import incident_changes as svc
from incident_bot.usecases.runner import Session


@dataclass(frozen=True)
class Sub:
    run: Handler
    changes_state: bool = False  # members of the incident channel only
    locks_incident: bool = False  # the incident row is locked (notes and updates only add rows)


SUBCOMMANDS: dict[str, Sub] = {
    "status": Sub(during.status),
    **dict.fromkeys(("ack", "mitigated", "resolve", "reopen"), Sub(during.milestone, True, True)),
    "sev": Sub(during.sev, True, True),
    "role": Sub(during.role, True, True),
    "started": Sub(during.started, True, True),
    "update": Sub(during.post_text, True),
    "note": Sub(during.post_text, True),
    "timeline": Sub(during.timeline),
    "page": Sub(during.page, True),
    "rca": Sub(after.rca, True, True),  # uploads a file, and `rca edit` changes the narrative
    "action": Sub(after.action, True),
    "actions": Sub(after.actions),
    "close": Sub(after.close, True, True),
    "merge": Sub(after.merge, True),
    "unlink": Sub(after.unlink, True),
    "similar": Sub(similar.similar),
}

USAGE: list[tuple[str, str]] = [*during.COMMANDS[:-1], *after.USAGE, *similar.USAGE, during.COMMANDS[-1]]


def known(sub: str) -> bool:
    return sub == "declare" or sub in SUBCOMMANDS


def run_in_incident(s: Session, inv: Invocation) -> Outcome:
    """Find the channel's incident, check membership, run the handler: inside the fold's transaction."""
    sub = SUBCOMMANDS[inv.sub]
    # Lock the incident row only for commands that change it (notes and updates just add rows).
    inc = svc.incident_in_channel(s, inv.channel_id, lock=sub.locks_incident)
    if inc is None:
        return Outcome({"text": f"`{inv.command} {inv.sub}` works inside an incident channel. Declare one "
                                f"with `{inv.command} declare <title>`, or `{inv.command} help`."}, ok=False)
    if sub.changes_state and not svc.is_member(s, inv.channel_id, inv.user_id):
        return Outcome({"text": f"Only members of this channel can change {inc.ref}. Join the channel first "
                                "(if you just joined, try again in a few seconds)."}, ok=False)
    svc.remember_user(s, inv.user_id)
    out = sub.run(s, inv, inc)
    if isinstance(out, svc.Reply):
        return Outcome({"text": out.text}, ok=out.ok)
    return Outcome(out)


def declare_from_text(s: Session, inv: Invocation) -> Outcome:
    title = " ".join(inv.plain.split())  # a title is one line of plain text (escaping model: README)
    if len(title) > TITLE_MAX:
        return Outcome({"text": f"That title is {len(title)} characters; keep it under {TITLE_MAX} (it becomes "
                                f"the channel topic) and add the detail with `{inv.command} note` once the "
                                "channel is open."}, ok=False)
    inc = svc.declare(s, inv.rt.settings, reporter=inv.user_id, title=title)
    return Outcome({"text": f"Declared *{inc.ref}*: {escape(title)}. Its channel is being created and you "
                            "are invited; the announcement goes to the incidents channel."})


def run_command(s: Session, rt: Runtime, command: dict[str, Any]) -> Outcome:
    """A stored slash command, run by the fold worker."""
    # The one boundary for command text: control and bidi characters go, then Slack's escaped text
    # becomes safe mrkdwn (mass mentions neutralised); nothing after this escapes it again.
    text = clean(command.get("text")).strip()
    sub, _, args = text.partition(" ")
    inv = Invocation(rt, str(command.get("user_id", "")), str(command.get("channel_id", "")), sub.lower(),
                     from_slack(args.strip()), rt.settings.slack_command, command.get("trigger_id"))
    usage = precheck(inv.sub, inv.args, inv.command)
    if usage:
        return Outcome({"text": usage}, ok=False)
    if inv.sub == "declare":
        return declare_from_text(s, inv)
    if inv.sub not in SUBCOMMANDS:
        return Outcome({"text": f"I don't know `{from_slack(inv.sub[:40])}`. Try `{inv.command} help`."},
                       ok=False)
    return run_in_incident(s, inv)


