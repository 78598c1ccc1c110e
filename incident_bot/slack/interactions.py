"""Interactivity: the "Declare incident" message shortcut, the declare modal, the channel buttons and the
RCA form. What needs no database runs on the accept path; the rest is applied by the fold worker."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from dateutil import tz as dtz
from starlette.concurrency import run_in_threadpool

from incident_bot.core.lifecycle import SEVERITIES
from incident_bot.core.text import clean, units
from incident_bot.core.timeparse import TimeParseError, parse_user_time
from incident_bot.runtime import Runtime
from incident_bot.slack import blocks, messages, slash_dispatch
from incident_bot.slack import slash_postincident as followup
from incident_bot.slack.mrkdwn import from_slack, to_plain
from incident_bot.slack.slash_command import TITLE_MAX, Invocation, Outcome
from incident_bot.usecases import incident_changes as svc
from incident_bot.usecases import runner
from incident_bot.usecases.runner import Session
from incident_bot.usecases.user_views import respond
from storage.models import utcnow

log = logging.getLogger(__name__)
SHORTCUT = "declare_incident_shortcut"
_SLACK_ID = re.compile(r"[CDG][A-Z0-9]{2,31}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,8}")
BUTTONS = {"incident_ack": "ack", "incident_mitigated": "mitigated", "incident_resolve": "resolve",
           "incident_status": "status"}


# What the declare form accepts: a forged or stale submission can carry anything, so each value is checked
# here, not trusted because the form's element limits it.
FORM_LIMITS = {"title": TITLE_MAX, "service": 255, "description": 2900, "impact_started": 64}


def _value(values: dict[str, Any], block: str) -> str | None:
    """A modal value: raw plain text (never Slack-escaped), cleaned at this boundary."""
    entry = values.get(block) if isinstance(values, dict) else None
    action = entry.get("value") if isinstance(entry, dict) else None
    if not isinstance(action, dict):
        return None
    if action.get("type") == "static_select":
        option = action.get("selected_option") or {}
        v = option.get("value") if isinstance(option, dict) else None
    else:
        v = action.get("value")
    v = clean(v).strip() if isinstance(v, str) else ""
    return v or None


def form_errors(values: dict[str, Any]) -> dict[str, str]:
    """Per-block errors for the declare form (shown under each field by ``response_action: errors``)."""
    errors: dict[str, str] = {}
    for block, limit in FORM_LIMITS.items():
        v = _value(values, block)
        if v is not None and units(v) > limit:
            errors[block] = f"At most {limit} characters (this is {units(v)})."
    sev = _value(values, "severity")
    if sev is not None and sev not in SEVERITIES:
        errors["severity"] = f"Pick one of {', '.join(SEVERITIES)}."
    return errors


def view_errors(rt: Runtime, view: dict[str, Any]) -> dict[str, str]:
    """Checks of a submitted form that need no database, answered in the ack (``response_action: errors``)."""
    state = view.get("state") if isinstance(view.get("state"), dict) else {}
    values = state.get("values") if isinstance(state.get("values"), dict) else {}
    if view.get("callback_id") == followup.RCA_EDIT_CALLBACK:
        return followup.rca_form_errors(values)
    if view.get("callback_id") != blocks.DECLARE_CALLBACK:
        return {}
    errors = form_errors(values)
    if not _value(values, "title"):
        errors["title"] = "Give the incident a title."
    impact_text = _value(values, "impact_started")
    if impact_text and "impact_started" not in errors:
        try:  # the syntax, in the workspace's zone; the fold parses again in the user's own zone
            parse_user_time(impact_text, now=utcnow(), tz=rt.settings.tzinfo)
        except TimeParseError as exc:
            errors["impact_started"] = str(exc)[:150]
    return errors


def submit_declare(s: Session, rt: Runtime, user_id: str, values: dict[str, Any], metadata: str) -> str:
    """Declare from the modal (already checked by :func:`view_errors`); returns the new incident's ref."""
    title = " ".join((_value(values, "title") or "(untitled incident)").split())[:TITLE_MAX]
    impact_text = _value(values, "impact_started")
    zone_name = svc.user_tz_name(s, user_id)
    zone = (dtz.gettz(zone_name) if zone_name else None) or rt.settings.tzinfo
    impact = None
    if impact_text:
        try:
            impact = parse_user_time(impact_text, now=utcnow(), tz=zone)
        except TimeParseError:
            impact = None  # valid in the workspace's zone, not in the user's (a DST gap): keep detection
    description = _value(values, "description")
    try:
        meta = json.loads(metadata) if metadata else {}
    except ValueError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    if _SLACK_ID.fullmatch(str(meta.get("channel"))) and _TS.fullmatch(str(meta.get("ts"))):
        # Plain text like the rest of the description: the channel is named, not linked.
        description = ((description or "") + f"\n\n(Declared from message {meta['ts']} in "
                       f"channel {meta['channel']})").strip()
    severity = _value(values, "severity")
    inc = svc.declare(s, rt.settings, reporter=user_id, title=title,
                      severity=severity if severity in SEVERITIES else "SEV3", service=_value(values, "service"),
                      description=description, impact_started_at=impact)
    return inc.ref


def shortcut_modal(shortcut: dict[str, Any]) -> dict[str, Any]:
    msg = shortcut.get("message") or {}
    channel = (shortcut.get("channel") or {}).get("id")
    meta = {"channel": channel, "ts": msg.get("ts")}
    # The message is Slack mrkdwn; the form shows plain text (it is submitted back as plain text).
    text = to_plain(from_slack(clean(msg.get("text")))).strip()
    return blocks.declare_modal(title=" ".join(text.split("\n", 1)[0].split()), description=text,
                                private_metadata=json.dumps(meta))


async def open_rca_form(rt: Runtime, client: Any, command: dict[str, Any]) -> None:
    """``/incident rca edit``: after the ack, read the incident (one read), then open the form, or say why
    not through response_url. trigger_id lives 3 s, so this cannot wait for the fold."""
    inv = Invocation(rt, str(command.get("user_id", "")), str(command.get("channel_id", "")), "rca", "edit",
                     rt.settings.slack_command)
    view, refusal = await run_in_threadpool(_rca_form_or_refusal, inv)
    if view is not None:
        await client.views_open(trigger_id=command.get("trigger_id"), view=view)
    elif refusal and command.get("response_url"):
        await run_in_threadpool(_respond_now, rt, command["response_url"], refusal)


def _rca_form_or_refusal(inv: Invocation) -> tuple[dict[str, Any] | None, str | None]:
    inc, member = runner.read(inv.rt.engine, svc.channel_incident, inv.channel_id, inv.user_id)
    if inc is None:
        return None, f"`{inv.command} rca edit` works inside an incident channel."
    if not member:
        return None, f"Only members of this channel can edit {inc.ref}'s RCA."
    return followup.rca_edit_modal(inc), None


def _respond_now(rt: Runtime, response_url: str, text: str) -> None:
    runner.run(rt.engine, respond, response_url, {"text": text})


def apply_action(s: Session, rt: Runtime, body: dict[str, Any]) -> Outcome:
    """A stored button click, run by the fold worker: the same rules as the command it stands for."""
    action = (body.get("actions") or [{}])[0]
    action_id = str(action.get("action_id", ""))
    user_id = str((body.get("user") or {}).get("id", ""))
    channel_id = str((body.get("channel") or {}).get("id", ""))
    if action_id == messages.NUDGE_SNOOZE_ACTION:
        return followup.snooze_nudge(s, rt, user_id, channel_id)
    if action_id.startswith(followup.STATUS_ACTION):
        return followup.change_status(s, user_id, channel_id, str(action.get("value", "")),
                                      tracker=rt.settings.capa_tracker)
    sub = BUTTONS.get(action_id)
    if sub is None:
        return Outcome({}, ok=True)  # a link button or an action we do not handle: nothing to do
    return slash_dispatch.run_in_incident(s, Invocation(rt, user_id, channel_id, sub, "", rt.settings.slack_command))


def apply_view(s: Session, rt: Runtime, body: dict[str, Any]) -> str:
    view = body.get("view") or {}
    user_id = str((body.get("user") or {}).get("id", ""))
    values = (view.get("state") or {}).get("values") or {}
    if view.get("callback_id") == blocks.DECLARE_CALLBACK:
        submit_declare(s, rt, user_id, values, view.get("private_metadata") or "")
        return "processed"
    if view.get("callback_id") == followup.RCA_EDIT_CALLBACK:
        return followup.save_rca(s, user_id, str(view.get("private_metadata", "")), values)
    return "ignored"
